"""``linkprobe [COMMAND] ...``: pick the command, run it, turn its outcome into an exit code.

Each command is one module, ``linkprobe.cli.<name>``, with ``configure(parser)`` and
``run(args) -> int``; it is imported only when it runs, so the default command (the probe a
CI job runs at every start) pays for no other. Without a command name, the arguments are
the probe command's: ``linkprobe SOURCE TARGET`` is ``linkprobe probe SOURCE TARGET``.

A command may also have ``fast_parse(arguments)``: the namespace argparse would make of a
common command line, or None for anything else (``--help``, an error, a form it does not
know), which argparse then parses and reports as always. Importing argparse and building
the parser is most of the start-up of a probe; a CI job pays it at every start.
"""

from __future__ import annotations

import os
import sys

from linkprobe.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_NO_MODE,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    Terminated,
    default_signal_actions,
    one_line,
)
from linkprobe.errors import LinkprobeError, TargetNotDirectoryError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Final

    from linkprobe.cli._parser import Parser

__all__ = ["COMMANDS", "DEFAULT_COMMAND", "EXIT_NO_MODE", "EXIT_OK", "EXIT_USAGE", "exit_status", "main", "main_exit"]

#: Every command: name -> one-line summary (for ``--help``, without importing the module).
COMMANDS: Final[dict[str, str]] = {
    "probe": "which mode works from SOURCE to TARGET (the default command)",
    "audit": "what an installer did: hardlinks, clones, copies under TARGET",
    "bench": "time each working mode from SOURCE to TARGET, and its disk use",
}
DEFAULT_COMMAND: Final[str] = "probe"


def exit_status(exc: BaseException) -> tuple[int, str | None]:
    """The exit code for an exception out of a command, and the one line to print (None: silent).

    The only place that maps outcomes to exit codes (documented in docs/cli.md):
    bad input is 2, a refusal of the filesystem or machine is 1, signals are 128 + N.
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT, None
    if isinstance(exc, Terminated):
        return EXIT_SIGTERM, None
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE, None
    if isinstance(exc, (ValueError, TargetNotDirectoryError)) and isinstance(exc, LinkprobeError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, LinkprobeError):
        return EXIT_NO_MODE, str(exc)
    if isinstance(exc, OSError):  # a failure of the machine itself, e.g. /proc unreadable
        where = f" ({os.fspath(exc.filename)})" if exc.filename else ""
        return EXIT_NO_MODE, f"{exc.strerror or exc}{where}"
    raise exc


def _epilog() -> str:
    commands = "\n".join(f"  {name:<8} {summary}" for name, summary in COMMANDS.items())
    return (
        f"commands (linkprobe COMMAND --help for each):\n{commands}\n\n"
        "Without a command, the arguments are the probe command's.\n\n"
        "exit status:\n"
        "  0        success\n"
        "  1        the chosen mode (or every mode) does not work here, or I/O failed\n"
        "  2        bad usage or input\n"
        "  130, 143 interrupted by SIGINT, SIGTERM\n"
        "  141      stdout was closed"
    )


def _command(command: str) -> ModuleType:
    """The module of ``command``, imported now, not before."""
    return __import__(f"linkprobe.cli.{command}", fromlist=["run"])


def _parser(command: str, module: ModuleType, *, named: bool, arguments: Sequence[str] = ()) -> Parser:
    """The argparse parser of ``command`` (its ``module``)."""
    from linkprobe.cli._parser import Parser

    description = (module.__doc__ or "").split("\n\n")[0]
    if named:
        parser = Parser(prog=f"linkprobe {command}", description=description)
    else:
        parser = Parser(prog="linkprobe", description=description, epilog=_epilog())
        misplaced = next((word for word in arguments if word in COMMANDS), None)
        if misplaced is not None:  # ``linkprobe --mode copy probe A B``
            parser.hint = f" (a command name comes first: linkprobe {misplaced} [options] ...)"
    from linkprobe import __version__

    parser.add_argument("-V", "--version", action="version", version=f"linkprobe {__version__}")
    module.configure(parser)
    if not named:  # show both forms: the default command's arguments, and a named command
        parser.more_usage = f"       linkprobe {{{','.join(COMMANDS)}}} ..."
    return parser


def _silence_stdout() -> None:
    """After EPIPE on stdout: point fd 1 at /dev/null, so that the interpreter's own flush
    at exit does not fail a second time (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):  # stdout is not a real file (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    named = bool(arguments) and arguments[0] in COMMANDS
    command = arguments.pop(0) if named else DEFAULT_COMMAND
    try:
        module = _command(command)
        fast_parse = getattr(module, "fast_parse", None)
        args = fast_parse(arguments) if fast_parse is not None else None
        if args is None:  # not a command line the command knows without argparse
            args = _parser(command, module, named=named, arguments=arguments).parse_args(arguments)
        status: int = module.run(args)
    except BaseException as exc:  # every outcome becomes an exit code here
        if isinstance(exc, SystemExit):  # argparse: --help, --version, usage errors
            raise
        status, message = exit_status(exc)
        if isinstance(exc, BrokenPipeError) and sys.stdout is not None:
            _silence_stdout()
        if message is not None:
            sys.stderr.write(f"linkprobe: error: {one_line(message)}\n")
    return status


def main_exit() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    import gc

    frozen = _called_by_the_program(frames_up=2)
    if frozen:
        # What the imports made lives until the process ends: gc.freeze() moves it out of the
        # collector's sight, so that a full collection (which the command's own imports and
        # probe may trigger) does not walk ~50,000 objects to free none of them: ~0.8 ms of a
        # 16 ms command line (docs/benchmarks.md). Cycles made from here on are collected.
        gc.freeze()
    try:
        try:
            status = main()
        except KeyboardInterrupt:  # Ctrl-C while parsing arguments, before main()'s own handler
            status = EXIT_SIGINT
        # The command is done and its output written. A signal from here on can only land in the
        # interpreter's own teardown, where Python reports a KeyboardInterrupt as "Exception
        # ignored in ..." with a traceback: let the kernel's default action end the process.
        default_signal_actions()
        _exit_without_teardown(status)
    finally:
        if frozen:  # the usual exit after all (threads, -i, argparse's SystemExit): as usual
            gc.unfreeze()
    sys.exit(status)


def _exit_without_teardown(status: int) -> None:
    """End the process with ``status`` now, when the interpreter's teardown has nothing
    left to do but free memory that the kernel frees anyway; else return.

    Python's exit joins threads, runs the atexit functions, flushes stdout and stderr, then
    tears down every module: ~2.5 ms of a 20 ms command line (as much again as ``import
    enum``). The first three are done here (in that order), the last is skipped:
    ``os._exit``. Not with threads (a probe with ``--timeout`` may have one to wait for),
    nor ``-i``, nor when a flush fails: the usual exit reports that as always; nor when
    main_exit() was called by code that may go on (see _called_by_the_program).
    """
    if "threading" in sys.modules or sys.flags.inspect or not _called_by_the_program():
        return
    import atexit

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is None:  # an interpreter without it: exit the usual way
        return
    run_exit_functions()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(status)


#: The frames of ``python -m``: runpy's _run_module_as_main, which runs the module's code.
_RUNPY_MAIN: Final[frozenset[str]] = frozenset({"_run_module_as_main", "_run_code"})


def _called_by_the_program(frames_up: int = 3) -> bool:
    """Whether main_exit() was called by the top level of the program itself: a console
    script, ``python -c``, or ``python -m linkprobe`` (through runpy's own frames only).
    ``frames_up``: how far up main_exit's caller is from here (3: this function,
    _exit_without_teardown, main_exit, then its caller; 2 from main_exit itself).

    Called by anything else (a profiler or debugger running the module, runpy.run_module
    in a test), the caller may still have work to do after the SystemExit: no os._exit.
    """
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:
        return False
    try:
        frame = getframe(frames_up)
    except ValueError:  # main_exit called with no Python code above it
        return False
    if frame.f_code.co_name != "<module>":
        return False
    frame = frame.f_back
    while frame is not None:
        if frame.f_globals.get("__name__") != "runpy" or frame.f_code.co_name not in _RUNPY_MAIN:
            return False
        frame = frame.f_back
    return True
