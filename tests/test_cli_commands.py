"""The command layer: dispatch to commands, one table of exit codes, the CLI contract
(no abbreviations, ``-V``, usage on usage errors, a closed stdout, the JSON keys)."""

from __future__ import annotations

import atexit
import errno
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import pytest
from _cli import run_main as run
from _stderr import error_line

import linkprobe
from linkprobe import (
    InvalidModeError,
    InvalidPathError,
    LinkFailedError,
    LinkMode,
    NoUsableModeError,
    TargetNotDirectoryError,
    UnsupportedModeError,
    __version__,
)
from linkprobe.cli._common import EXIT_BROKEN_PIPE, Terminated, UsageError
from linkprobe.cli.main import COMMANDS, exit_status
from linkprobe.cli.probe import SCHEMA_VERSION

#: The module (``linkprobe.cli.main`` as an attribute is the function of that name).
main_module = importlib.import_module("linkprobe.cli.main")


def run_module(argv: list[str], stdout: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LINKPROBE_MODE", None)
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.delenv("LINKPROBE_MODE", raising=False)
    monkeypatch.delenv("UV_LINK_MODE", raising=False)
    (tmp_path / "cache").mkdir()
    return str(tmp_path / "cache"), str(tmp_path / "project" / ".venv")


# -- one table of exit codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "silent"),
    [
        (KeyboardInterrupt(), 130, True),
        (Terminated(), 143, True),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), EXIT_BROKEN_PIPE, True),
        (InvalidModeError("x", source="--mode", valid=("copy",)), 2, False),
        (InvalidPathError("", "source path is empty"), 2, False),
        (TargetNotDirectoryError("/etc/passwd"), 2, False),
        (UsageError("--format env needs a name"), 2, False),
        (UnsupportedModeError(LinkMode.HARDLINK, "/a", "/b", errno.EXDEV, "different mounts"), 1, False),
        (NoUsableModeError("/a", "/b", {LinkMode.COPY: "read-only"}, errno.EROFS), 1, False),
        (LinkFailedError(LinkMode.COPY, "/a", "/b", errno.ENOSPC, "no space"), 1, False),
        (PermissionError(errno.EACCES, "Permission denied", "/proc/self/mountinfo"), 1, False),
    ],
)
def test_exit_status_table(exc: BaseException, code: int, silent: bool) -> None:
    status, message = exit_status(exc)
    assert status == code
    assert (message is None) is silent


def test_exit_status_lets_a_bug_through() -> None:
    with pytest.raises(ZeroDivisionError):
        exit_status(ZeroDivisionError("a bug is a traceback, not an exit code"))


# -- commands ---------------------------------------------------------------------------


def test_named_probe_command_is_the_default_command(pair: tuple[str, str]) -> None:
    plain = run(["--format", "json", *pair])
    named = run(["probe", "--format", "json", *pair])
    assert plain[0] == named[0] == 0
    assert json.loads(plain[1])["modes"] == json.loads(named[1])["modes"]


def test_help_lists_every_command() -> None:
    code, out, _ = run(["--help"])
    assert code == 0
    for name, summary in COMMANDS.items():
        assert f"  {name:<8} {summary}" in out
    assert "linkprobe {" in out  # the usage shows the named form too


def test_command_help_names_the_command() -> None:
    code, out, _ = run(["probe", "--help"])
    assert code == 0
    assert out.startswith("usage: linkprobe probe ")


def test_plain_probe_imports_no_other_command(pair: tuple[str, str]) -> None:
    code = (
        "import sys, linkprobe.cli\n"
        f"status = linkprobe.cli.main(['--format', 'mode', {pair[0]!r}, {pair[1]!r}])\n"
        "others = sorted(m for m in sys.modules if m.startswith('linkprobe.cli.') and m not in "
        "('linkprobe.cli.main', 'linkprobe.cli._common', 'linkprobe.cli.probe'))\n"
        "print(status, others)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "0 []"


# -- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flags(flag: str) -> None:
    code, out, _ = run([flag])
    assert (code, out) == (0, f"linkprobe {__version__}\n")


@pytest.mark.parametrize("flag", ["--for", "--mode", "--env", "--timeout", "--format"])
def test_double_dash_is_no_option_value(pair: tuple[str, str], flag: str) -> None:
    """``--mode=--``: argparse before Python 3.13 drops the "--" and leaves an empty list
    where one word goes (a traceback further on); it is a usage error on every version."""
    code, out, err = run([f"{flag}=--", *pair])
    assert (code, out) == (2, "")
    assert error_line(err) == f"linkprobe: error: argument {flag}: expected one argument"


@pytest.mark.parametrize("abbreviation", ["--form", "--mod", "--tim", "--en"])
def test_abbreviations_are_refused(pair: tuple[str, str], abbreviation: str) -> None:
    code, out, err = run([abbreviation, "text", *pair])
    assert code == 2
    assert out == ""
    assert "unrecognized arguments" in error_line(err)


def test_usage_error_prints_the_usage_then_one_line(pair: tuple[str, str]) -> None:
    code, _, err = run(["--format", "yaml", *pair])
    assert code == 2
    assert err.startswith("usage: linkprobe ")
    assert "invalid choice: 'yaml'" in error_line(err)


def test_bad_env_name_is_a_usage_error_without_usage(pair: tuple[str, str]) -> None:
    code, out, err = run(["--format", "env", "--env", "A=B", *pair])
    assert (code, out) == (2, "")
    assert err == "linkprobe: error: --format env needs a variable name without '=' or line breaks, got 'A=B'\n"


@pytest.mark.parametrize("fmt", ["mode", "json", "text"])
def test_closed_stdout_is_silent(pair: tuple[str, str], fmt: str) -> None:
    """``linkprobe … | true``: the reader is gone before we write; no "Broken pipe" line."""
    os.makedirs(pair[1])  # an existing target: no note on stderr
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = run_module(["--format", fmt, *pair], stdout=writer)
    finally:
        os.close(writer)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert done.stderr == ""


def test_json_says_what_was_requested_and_from_where(pair: tuple[str, str]) -> None:
    code, out, _ = run(["--format", "json", *pair])
    document = json.loads(out)
    assert code == 0
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert (document["requested"], document["requested_from"], document["explicit"]) == (None, None, False)

    code, out, _ = run(["--format", "json", "--mode", " Copy ", *pair])
    document = json.loads(out)
    assert (document["requested"], document["requested_from"], document["explicit"]) == ("Copy", "--mode", True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UV_LINK_MODE", "copy")
        code, out, _ = run(["--format", "json", "--env", "UV_LINK_MODE", *pair])
    document = json.loads(out)
    assert (document["requested"], document["requested_from"]) == ("copy", "environment variable UV_LINK_MODE")
    assert document["mode"] == "copy"


def test_json_keeps_an_order_word(pair: tuple[str, str]) -> None:
    code, out, _ = run(["--format", "json", "--mode", "clone-or-copy", *pair])
    assert code == 0
    document = json.loads(out)
    assert (document["requested"], document["explicit"]) == ("clone-or-copy", False)
    assert document["mode"] in ("clone", "copy")


@pytest.mark.parametrize(
    ("argv", "env", "first_line"),
    [
        (["--mode", "copy"], {}, "mode: copy (explicit, from --mode)"),
        (
            ["--env", "UV_LINK_MODE"],
            {"UV_LINK_MODE": "copy"},
            "mode: copy (explicit, from environment variable UV_LINK_MODE)",
        ),
        ([], {}, "mode: "),
    ],
)
def test_text_says_where_an_explicit_mode_came_from(
    pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], first_line: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, _ = run(["--format", "text", *argv, *pair])
    assert code == 0
    assert out.splitlines()[0].startswith(first_line)
    if not argv:
        assert out.splitlines()[0].endswith("(auto)")


def test_text_names_an_order_word(pair: tuple[str, str]) -> None:
    code, out, _ = run(["--format", "text", "--mode", "clone-or-copy", *pair])
    assert code == 0
    assert out.splitlines()[0].endswith("(auto, in the order clone-or-copy from --mode)")


def test_a_misplaced_command_name_gets_a_hint(pair: tuple[str, str]) -> None:
    code, _, err = run(["--mode", "copy", "probe", *pair])
    assert code == 2
    assert error_line(err).endswith("(a command name comes first: linkprobe probe [options] ...)")


def test_an_empty_env_name_is_named_as_empty(pair: tuple[str, str]) -> None:
    code, out, err = run(["--format", "env", "--env", "", *pair])
    assert (code, out) == (2, "")
    assert err == "linkprobe: error: --format env needs a variable name (--env NAME), got an empty one\n"


def test_help_fits_in_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(["--help"])
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80, out


@pytest.mark.parametrize("fmt", ["mode", "env"])
def test_a_missing_source_gets_one_note(pair: tuple[str, str], fmt: str) -> None:
    source, target = pair
    code, out, err = run(["--format", fmt, source + "/missing", target])
    assert code == 0
    assert out.count("\n") == 1
    assert err == f"linkprobe: note: source {source}/missing does not exist yet; probed {source}\n"
    assert run(["--format", fmt, source, target])[2] == ""  # a missing target is the usual case


def test_no_note_on_failure_only_the_error(pair: tuple[str, str]) -> None:
    code, out, err = run(["--mode", "symlink", "--format", "env", pair[0], "/proc/missing/x"])
    assert (code, out) == (1, "")
    error_line(err)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_text_and_json_say_a_side_is_missing(pair: tuple[str, str], fmt: str) -> None:
    source, target = pair
    code, out, err = run(["--format", fmt, source, target])
    assert (code, err) == (0, "")
    if fmt == "json":
        document = json.loads(out)
        assert (document["source"]["exists"], document["target"]["exists"]) == (True, False)
    else:
        assert f"target: {target}\n  does not exist yet; probed {os.path.dirname(os.path.dirname(target))}\n" in out


def test_a_signal_during_the_interpreters_exit_prints_no_traceback() -> None:
    """After the answer is out, a Ctrl-C can only land in Python's teardown (atexit, module
    clean-up), which would print "Exception ignored in ..." with a traceback."""
    code = (
        "import atexit, importlib, os, signal, time\n"
        "cli = importlib.import_module('linkprobe.cli.main')\n"
        "cli.main = lambda argv=None: 0\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(1)))\n"
        "cli.main_exit()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == -signal.SIGINT, (done.returncode, done.stderr)


#: Imported by site at the start of the child: an atexit function, and an object whose
#: __del__ runs only in the interpreter's teardown.
_SITECUSTOMIZE = """
import atexit, sys
class Teardown:
    def __del__(self):
        sys.stderr.write("teardown\\n")
kept = Teardown()
atexit.register(lambda: print("atexit ran"))
"""
#: Ways to run the command: python -m; the console script's code (pip's wrapper), alone and
#: in a program that imported threading; runpy.run_module inside a program that may go on.
_HOW = {
    "-m": ["-m", "linkprobe"],
    "script": ["-c", "import sys; from linkprobe.cli import main_exit; sys.exit(main_exit())"],
    "threads": ["-c", "import sys, threading; from linkprobe.cli import main_exit; sys.exit(main_exit())"],
    "run_module": ["-c", "import runpy; runpy.run_module('linkprobe', run_name='__main__', alter_sys=True)"],
}


@pytest.mark.parametrize(
    ("how", "argv", "status", "teardown"),
    [
        ("-m", [], 0, False),
        ("-m", ["--format", "json"], 0, False),
        ("-m", ["--format", "env", "--env", ""], 2, False),
        ("script", [], 0, False),
        ("threads", [], 0, True),  # a thread may have work left: the usual exit
        ("-m", ["--help"], 0, True),  # argparse's SystemExit: the usual exit
        ("run_module", [], 0, True),  # the caller may go on after the SystemExit
    ],
)
def test_exit_skips_only_the_teardown(
    pair: tuple[str, str], tmp_path: Path, how: str, argv: list[str], status: int, teardown: bool
) -> None:
    """main_exit() ends the process without the interpreter's teardown (os._exit) once the
    answer is out, when the program itself called it: atexit functions still run after the
    answer, stdout is flushed whole, the exit status is the command's. With threads, after
    a SystemExit, or called from code that may go on, Python exits as usual."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    # Coverage measuring the child (CI) imports threading there: the usual exit, always.
    env = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    env.pop("LINKPROBE_MODE", None)
    done = subprocess.run(
        [sys.executable, *_HOW[how], *argv, *pair], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == status, done.stderr
    assert done.stdout.endswith("atexit ran\n")
    answer = done.stdout.removesuffix("atexit ran\n")
    if argv[:2] == ["--format", "json"]:
        assert json.loads(answer)["mode"] is not None
    elif status == 0 and not argv:
        assert answer.strip() in {mode.value for mode in LinkMode}
    assert ("teardown\n" in done.stderr) is teardown, done.stderr


#: The real check, before the fixture below stands in for it.
_CALLED_BY_THE_PROGRAM = main_module._called_by_the_program


class ExitCalledError(Exception):
    """Raised by the stand-in for os._exit: the process would have ended here."""


@pytest.fixture
def exit_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """_exit_without_teardown in this process: no threading module (as in a plain CLI run),
    called as by the program itself, atexit functions and os._exit recorded instead of run."""
    calls: list[str] = []

    def fake_exit(status: int) -> None:
        calls.append(f"_exit {status}")
        raise ExitCalledError

    monkeypatch.delitem(sys.modules, "threading")
    monkeypatch.setattr(main_module, "_called_by_the_program", lambda frames_up=3: True)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    monkeypatch.setattr(os, "_exit", fake_exit)
    return calls


@pytest.mark.parametrize(("how", "frozen"), [("script", True), ("-m", True), ("run_module", False)])
def test_the_program_freezes_what_its_imports_made(
    pair: tuple[str, str], tmp_path: Path, how: str, frozen: bool
) -> None:
    """Called by the program itself, main_exit() takes what the imports made out of the
    cyclic collector's sight (gc.freeze) until it ends the process; called by code that goes
    on, it leaves the collector alone. The child says so from an atexit function, against the
    count at its start (3.12 starts with a few hundred static tuples counted as frozen)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, gc\nstart = gc.get_freeze_count()\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > start))\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    env.pop("LINKPROBE_MODE", None)
    done = subprocess.run(
        [sys.executable, *_HOW[how], *pair], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"frozen {frozen}"


def test_exit_without_teardown_runs_atexit_then_ends(exit_calls: list[str]) -> None:
    with pytest.raises(ExitCalledError):
        main_module._exit_without_teardown(3)
    assert exit_calls == ["atexit", "_exit 3"]


def test_exit_without_teardown_returns_when_a_flush_fails(
    exit_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout cannot take what is left (a full disk): the usual exit says so."""

    class Full(io.StringIO):
        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    main_module._exit_without_teardown(0)
    assert exit_calls == ["atexit"]


def test_exit_without_teardown_returns_without_run_exitfuncs(
    exit_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(atexit, "_run_exitfuncs")
    main_module._exit_without_teardown(0)
    assert exit_calls == []


@pytest.mark.parametrize("reason", ["threading", "inspect", "caller", "no _getframe", "shallow stack"])
def test_exit_without_teardown_returns_with_threads_or_i_or_another_caller(
    exit_calls: list[str], monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    if reason == "threading":
        monkeypatch.setitem(sys.modules, "threading", threading)
    elif reason == "inspect":
        monkeypatch.setattr(sys, "flags", mock.Mock(inspect=1))
    else:  # called from this test function, not from a program's top level
        monkeypatch.setattr(main_module, "_called_by_the_program", _CALLED_BY_THE_PROGRAM)
        if reason == "no _getframe":
            monkeypatch.delattr(sys, "_getframe")
        elif reason == "shallow stack":
            monkeypatch.setattr(sys, "_getframe", mock.Mock(side_effect=ValueError("call stack is not deep enough")))
    main_module._exit_without_teardown(0)
    assert exit_calls == []


def test_the_audit_command_imports_no_dataclasses(tmp_path: Path) -> None:
    """The audit command races ``du -s`` (benchmarks/bench_audit.py): dataclasses (with
    inspect) alone cost it ~7 ms of start-up."""
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    # -I -S: no site, so no .pth file (coverage's, in CI) imports anything before us.
    package_parent = os.path.dirname(os.path.dirname(linkprobe.__file__))
    code = (
        f"import sys; sys.path.insert(0, {package_parent!r}); import linkprobe.cli\n"
        f"status = linkprobe.cli.main(['audit', {str(tmp_path / 's')!r}, {str(tmp_path / 't')!r}])\n"
        "print(status, 'dataclasses' in sys.modules, 'inspect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 False False"
