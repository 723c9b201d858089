"""The argument parser every command's ``--help``, usage errors and uncommon command lines go through.

Apart from :mod:`linkprobe.cli._common` because argparse costs ~4 ms of start-up (it imports
re and gettext, and gettext imports locale at the first message): a command line that the
command's own ``fast_parse`` understands is run without it.
"""

from __future__ import annotations

import argparse
import os
import sys

from linkprobe.cli._common import EXIT_USAGE, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["Parser", "help_formatter"]


class Parser(argparse.ArgumentParser):
    """argparse with abbreviations off (a new option must never change what an old
    script's ``--form`` meant) and errors as the usage, then one ``linkprobe: error:`` line."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, formatter_class=help_formatter, **kwargs)

    #: Added to an "unrecognized arguments" error: e.g. that a command name comes first.
    hint: str = ""
    #: A further usage line shown below the one argparse makes (the named commands); that
    #: one is made only when a usage is shown, not at every start.
    more_usage: str = ""

    @property
    def usage(self) -> str | None:
        if self._usage is None and self.more_usage:
            formatter = self._get_formatter()
            formatter.add_usage(None, self._actions, self._mutually_exclusive_groups)
            made = formatter.format_help().removeprefix("usage: ").rstrip()
            return f"{made}\n{self.more_usage}"
        return self._usage

    @usage.setter
    def usage(self, value: str | None) -> None:
        self._usage = value

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python before 3.13 drops "--" from the values of an option, even from "--for=--",
        # and leaves an option of one value holding an empty list (a traceback further on).
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected one argument")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        hint = self.hint if message.startswith("unrecognized arguments") else ""
        # argparse quotes the offending argument, which may hold a line break too.
        self.exit(EXIT_USAGE, f"{self.format_usage()}linkprobe: error: {one_line(message)}{hint}\n")


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter that keeps the description's and epilog's line breaks (the
    list of commands), its width read without importing shutil.

    argparse makes a formatter for every add_argument() and the default one imports
    shutil (~3 ms, with bz2, lzma and zlib) only to call get_terminal_size().
    """
    try:
        columns = int(os.environ["COLUMNS"])
        if columns <= 0:  # as shutil.get_terminal_size: not a width, ask the terminal
            raise ValueError(columns)
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 80
        except (AttributeError, ValueError, OSError):  # not a terminal, or no real stdout
            columns = 80
    return argparse.RawDescriptionHelpFormatter(prog, width=max(columns - 2, 20))
