"""What every command shares: exit codes, the argument parser, safe output, signals."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from linkprobe.errors import LinkprobeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NoReturn, TextIO

__all__ = [
    "DEFAULT_ENV",
    "EXIT_BROKEN_PIPE",
    "EXIT_NO_MODE",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_USAGE",
    "Parser",
    "Terminated",
    "UsageError",
    "help_formatter",
    "one_line",
    "signals_as_exceptions",
    "write",
]

EXIT_OK: Final[int] = 0
#: The explicit mode does not work here, no mode works, or the machine failed (I/O).
EXIT_NO_MODE: Final[int] = 1
#: Usage or bad input: a bad mode word, an empty path, a target that is a file.
EXIT_USAGE: Final[int] = 2
EXIT_SIGINT: Final[int] = 128 + signal.SIGINT
EXIT_SIGTERM: Final[int] = 128 + signal.SIGTERM
#: stdout was closed by its reader (``linkprobe … | true``): 128 + SIGPIPE, what a shell
#: reports for a C tool that the kernel's SIGPIPE stopped (Windows has no SIGPIPE: 13).
EXIT_BROKEN_PIPE: Final[int] = 128 + getattr(signal, "SIGPIPE", 13)
DEFAULT_ENV: Final[str] = "LINKPROBE_MODE"


def one_line(message: str) -> str:
    """``message`` on one line, whatever the paths hold: a newline in a directory name
    must not split an error into two."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


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


def write(stream: TextIO | None, text: str) -> None:
    """Write ``text``, escaping what ``stream`` cannot encode instead of raising.

    A path that is not valid in the locale's encoding reaches us as lone surrogates
    (PEP 383); a strict stdout (a UTF-8 locale other than C, PYTHONIOENCODING=ascii)
    would raise UnicodeEncodeError, a traceback. Escape it as stderr does.

    :raises BrokenPipeError: the stream is gone: its reader closed the pipe, or the
        process started with that descriptor closed (``>&-``; Python sets it to None).
    :raises OSError: writing failed otherwise (``>/dev/full``), naming the stream.
    """
    if stream is None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
    encoding = getattr(stream, "encoding", None)
    if encoding:
        try:
            text.encode(encoding, getattr(stream, "errors", None) or "strict")
        except UnicodeEncodeError:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
    try:
        stream.write(text)
        stream.flush()  # a full disk or a closed pipe shows here, not in the exit's flush
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, getattr(stream, "name", "output")) from exc


class UsageError(LinkprobeError, ValueError):
    """Arguments that argparse accepts but that cannot work together (exit 2)."""


class Terminated(BaseException):
    """SIGTERM, raised as an exception so that every ``finally`` removes its scratch files."""


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM unwinds like SIGINT, and neither lands while a scratch file is unaccounted for.

    Both signals are blocked inside the block (a probe: a few milliseconds) and delivered
    right after, when every scratch file has been removed.
    """

    def on_term(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    if sys.platform == "win32":  # no signal masks; Ctrl-C still unwinds through finally
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        try:
            # A held signal fires inside this call (KeyboardInterrupt or Terminated);
            # the handler must still be put back, or a later SIGTERM would raise
            # Terminated in whatever code runs after main() returns.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        finally:
            signal.signal(signal.SIGTERM, previous)
