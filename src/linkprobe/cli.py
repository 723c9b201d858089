"""``python -m linkprobe`` / ``linkprobe``: print the mode to use, or why none works.

Exit codes: 0 success; 1 the explicit mode does not work here, or no mode works;
2 usage or bad input. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from linkprobe.errors import InvalidModeError, LinkprobeError, NoUsableModeError, UnsupportedModeError
from linkprobe.modes import AUTO_ORDER, VALID_WORDS, LinkMode
from linkprobe.probe import probe, requested_choice
from linkprobe.result import Probe

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, NoReturn, TextIO

__all__ = ["EXIT_NO_MODE", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK: Final[int] = 0
#: The explicit mode does not work here, or no mode works at all.
EXIT_NO_MODE: Final[int] = 1
#: Usage or bad input: a bad mode word, an empty path, a target that is a file.
EXIT_USAGE: Final[int] = 2
DEFAULT_ENV: Final[str] = "LINKPROBE_MODE"
_FORMATS: Final[tuple[str, ...]] = ("mode", "text", "json", "env")


def _one_line(message: str) -> str:
    # One line, whatever the paths hold: a newline in a directory name must not split it.
    return message.replace("\r", "\\r").replace("\n", "\\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse quotes the offending argument, which may hold a line break too.
        self.exit(EXIT_USAGE, f"linkprobe: error: {_one_line(message)}\n")


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's default formatter, but its width read without importing shutil.

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
    return argparse.HelpFormatter(prog, width=max(columns - 2, 20))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="linkprobe",
        formatter_class=_help_formatter,
        description="Find the best way to put files from SOURCE into TARGET: clone, hardlink, symlink or copy.",
        epilog="Exit status: 0 success, 1 the chosen mode (or every mode) does not work here, 2 bad usage or input.",
    )
    parser.add_argument("source", metavar="SOURCE", help="directory (or file) files come from, e.g. a cache")
    parser.add_argument("target", metavar="TARGET", help="directory files go to; may not exist yet")
    parser.add_argument(
        "--mode",
        metavar="MODE",
        help=f"verify this mode instead of choosing one ({', '.join(VALID_WORDS)}; aliases reflink, cow, "
        "softlink; pnpm's clone-or-copy: the first of clone, copy that works)",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        default=DEFAULT_ENV,
        help=f"read an explicit mode from environment variable NAME (default {DEFAULT_ENV}); --mode wins",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up waiting for a filesystem that does not answer (a hung FUSE or network mount) after "
        "SECONDS: unanswered modes count as timed out, auto answers copy, an explicit mode fails",
    )
    parser.add_argument(
        "--format", choices=_FORMATS, default="mode", help="mode word (default), text, json, or env (NAME=mode)"
    )
    from linkprobe import __version__

    parser.add_argument("--version", action="version", version=f"linkprobe {__version__}")
    return parser


def _render_text(result: Probe, mode: LinkMode | None, explicit: bool, out: TextIO) -> None:
    lines = [f"mode: {mode.value if mode else 'none'} ({'explicit' if explicit else 'auto'})"]
    for verdict in result.verdicts:
        errno_name = f" [{verdict.errno_name}]" if verdict.errno_name else ""
        lines.append(f"  {verdict.mode.value:<9} {verdict.status.value:<12}{errno_name} {verdict.reason}")
    for role, side in (("source", result.source), ("target", result.target)):
        lines.append(
            f"{role}: {side.given}\n  probed {side.probed}\n"
            f"  st_dev {'unknown (no answer)' if side.st_dev is None else side.st_dev}, "
            f"mount {side.mount_point} ({side.fstype}{', read-only' if side.read_only else ''})"
        )
    lines.append(
        f"same device: {'yes' if result.same_device else 'no'}, same mount: {'yes' if result.same_mount else 'no'}"
    )
    if result.linked_from_existing:
        lines.append(f"linked from existing file {result.linked_from}")
    if result.timed_out:
        lines.append("timed out: modes marked timed-out were not verified")
    out.write("\n".join(lines) + "\n")


def _write(stream: TextIO, text: str) -> None:
    """Write ``text``, escaping what ``stream`` cannot encode instead of raising.

    A path that is not valid in the locale's encoding reaches us as lone surrogates
    (PEP 383); a strict stdout (a UTF-8 locale other than C, PYTHONIOENCODING=ascii)
    would raise UnicodeEncodeError, a traceback. Escape it as stderr does.
    """
    encoding = getattr(stream, "encoding", None)
    if encoding:
        try:
            text.encode(encoding, getattr(stream, "errors", None) or "strict")
        except UnicodeEncodeError:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
    stream.write(text)


def _env_name_ok(name: str) -> bool:
    """``--format env`` writes ``NAME=mode`` lines (into GITHUB_ENV, say): a NAME that is
    empty or holds ``=`` or a line break would write a different variable or a second line."""
    return name.splitlines() == [name] and "=" not in name and "\0" not in name


def _emit(fmt: str, env: str, result: Probe, mode: LinkMode | None, explicit: bool, error: str | None) -> None:
    out = io.StringIO()  # rendered whole, then written once through _write
    if fmt == "text":
        _render_text(result, mode, explicit, out)
    elif fmt == "json":
        document = {"mode": mode.value if mode else None, "explicit": explicit, **result.to_dict()}
        if error is not None:
            document["error"] = error
        import json  # only here: ~2 ms of start-up that the other formats do not need

        out.write(json.dumps(document, indent=2) + "\n")
    elif mode is not None:
        out.write(f"{env}={mode.value}\n" if fmt == "env" else f"{mode.value}\n")
    _write(sys.stdout, out.getvalue())


class _Terminated(BaseException):
    """SIGTERM, raised as an exception so that every ``finally`` removes its scratch files."""


@contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """SIGTERM unwinds like SIGINT, and neither lands while a scratch file is unaccounted for.

    Both signals are blocked during the probe (a few milliseconds) and delivered right
    after, when every scratch file has been removed.
    """

    def on_term(signum: int, frame: object) -> None:
        raise _Terminated

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
            # A held signal fires inside this call (KeyboardInterrupt or _Terminated);
            # the handler must still be put back, or a later SIGTERM would raise
            # _Terminated in whatever code runs after main() returns.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        finally:
            signal.signal(signal.SIGTERM, previous)


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"linkprobe: error: {_one_line(message)}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.format == "env" and not _env_name_ok(args.env):
            return _fail(EXIT_USAGE, f"--format env needs a variable name without '=' or line breaks, got {args.env!r}")
        # pnpm's "clone-or-copy" names an order, not a mode: the user's own fallback rule.
        chosen = requested_choice(args.mode, args.env or None, mode_source="--mode")
        explicit_mode = chosen if isinstance(chosen, LinkMode) else None
        order = chosen if isinstance(chosen, tuple) else AUTO_ORDER
        explicit = explicit_mode is not None
        try:
            with _signals_as_exceptions():
                result = probe(args.source, args.target, cache=False, timeout=args.timeout)
        except _Terminated:
            return 128 + signal.SIGTERM
        try:
            mode = result.require(explicit_mode, order=order)
        except (UnsupportedModeError, NoUsableModeError) as exc:
            _emit(args.format, args.env, result, None, explicit, str(exc))
            return _fail(EXIT_NO_MODE, str(exc))
        _emit(args.format, args.env, result, mode, explicit, None)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except InvalidModeError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except LinkprobeError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except OSError as exc:  # a failure of the machine itself, e.g. /proc unreadable
        return _fail(EXIT_NO_MODE, f"{exc.strerror or exc} ({os.fspath(exc.filename or '')})")
    return EXIT_OK


def main_exit() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    try:
        status = main()
    except KeyboardInterrupt:  # Ctrl-C while parsing arguments, before main()'s own handler
        status = 128 + signal.SIGINT
    sys.exit(status)
