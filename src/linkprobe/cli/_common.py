"""What every command shares: exit codes, safe output, signals (the argument parser: :mod:`linkprobe.cli._parser`)."""

from __future__ import annotations

import errno
import os
import sys

from linkprobe.errors import LinkprobeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Final, TextIO
else:
    # The functions and numbers of the signal module without its enums: importing signal
    # builds Signals, Handlers and Sigmasks from _signal's names, ~0.4 ms of every start
    # of the command line. signal.py is "from _signal import *" plus those wrappers.
    try:
        import _signal as signal
    except ImportError:  # an interpreter without the _signal module
        import signal

__all__ = [
    "DEFAULT_ENV",
    "EXIT_BROKEN_PIPE",
    "EXIT_NO_MODE",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_USAGE",
    "Terminated",
    "UsageError",
    "default_signal_actions",
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


class _SignalsAsExceptions:
    # A class, not contextlib.contextmanager: importing contextlib is ~0.4 ms of the
    # command line's start-up, which has nothing else to use it for.

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGTERM, _raise_terminated)
        if sys.platform != "win32":  # Windows has no signal masks; Ctrl-C still unwinds through finally
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def __exit__(self, *exc_info: object) -> None:
        try:
            if sys.platform != "win32":
                # A held signal fires inside this call (KeyboardInterrupt or Terminated);
                # the handler must still be put back, or a later SIGTERM would raise
                # Terminated in whatever code runs after main() returns.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        finally:
            signal.signal(signal.SIGTERM, self.previous)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def signals_as_exceptions() -> _SignalsAsExceptions:
    """SIGTERM unwinds like SIGINT, and neither lands while a scratch file is unaccounted for.

    Both signals are blocked inside the ``with`` block (a probe: a few milliseconds) and
    delivered right after, when every scratch file has been removed.
    """
    return _SignalsAsExceptions()


def default_signal_actions() -> None:
    """SIGINT and SIGTERM back to the kernel's default action: the process ends at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
