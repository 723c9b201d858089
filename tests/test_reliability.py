"""Reliability: no litter and no surprises under concurrency, signals, planted names and bad input.

Everything here runs as ``python -m linkprobe`` (or ``linkprobe.cli.main`` where argv must
carry what a real argv cannot, such as a NUL byte) on tmp_path, so it needs neither root
nor mounts; the btrfs variant of the concurrency test is the one exception (realfs).
Tests that need root, ``nobody`` or scratch filesystems are in test_reliability_realfs.py.
The figures printed with ``-s`` are the ones recorded in docs/reliability.md.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import importlib
import io
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _fs_build import ScratchMounts
from _litter import find_litter
from _stderr import error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkprobe import probe
from linkprobe.api import FileIdentity
from linkprobe.cli import main
from linkprobe.linux import LinuxBackend

ENV = "LINKPROBE_MODE"
#: Fixed so that a failure reproduces (timing still varies); override to explore.
SIGNAL_SEED = int(os.environ.get("LINKPROBE_SIGNAL_SEED", "20261125"))
CLEAN_EXITS = {0, 1, 2}
TRACEBACK = "Traceback (most recent call last)"
#: What CPython prints, with no traceback and exit status 1, for a Ctrl-C in its own start-up
#: code: during any ``init_*`` step such as ``import site`` (3.13: "Fatal Python error:
#: init_import_site ... <no Python frame>"), or during ``import runpy`` for ``-m``
#: (Modules/main.c, pymain_run_module: "Could not import runpy module", then
#: "KeyboardInterrupt"; seen in CI on 3.10).
START_UP_FATAL = re.compile(
    r"^(Fatal Python error: init_\w+|Could not import runpy module|Could not access runpy\._run_module_as_main)",
    re.MULTILINE,
)
#: A Ctrl-C that lands in a weakref callback of the import system (the clean-up of a module's
#: import lock, importlib's _get_module_lock.<locals>.cb): CPython cannot raise it there, so it
#: prints it as an unraisable exception ("Exception ignored in: ...") and goes on, and the run
#: ends as if it had not been interrupted. Only importlib's own frames; seen in CI on 3.10.
IGNORED_IN_IMPORT = re.compile(
    r"^Exception ignored in: <function _get_module_lock\.<locals>\.cb at 0x[0-9a-f]+>\n"
    r"Traceback \(most recent call last\):\n"
    r'(?:  File "<frozen importlib\._bootstrap>", line \d+, in \w+\n)+'
    r"KeyboardInterrupt: ?\n",
    re.MULTILINE,
)
#: The module, not the function that ``linkprobe.probe`` names once the package is imported.
probe_module = importlib.import_module("linkprobe.probe")
scratch_module = importlib.import_module("linkprobe._scratch")


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != ENV}
    env.update(extra)
    return env


def unmeasured_environment() -> dict[str, str]:
    """environment() without coverage's subprocess measurement.

    With those variables set, coverage's .pth file starts coverage inside ``import site``; a
    signal landing there makes ``site`` print "Error processing line 1 of ...coverage.pth" and
    carry on, a start-up phase that exists only under coverage. The signal storm is about the
    start-up users run, so its children go unmeasured.
    """
    env = environment()
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        env.pop(name, None)
    return env


def run_module(argv: Sequence[str], cwd: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=environment(**extra_env),
        timeout=60,
        check=False,
    )


def assert_one_error_line(stderr: str) -> None:
    assert TRACEBACK not in stderr
    error_line(stderr)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "cache", tmp_path / "project"
    source.mkdir()
    target.mkdir()
    (source / "pkg.whl").write_bytes(b"wheel\n")
    return source, target


# ------------------------------------------------------------------------ concurrency

#: One worker: imports first, waits at the barrier (a line on stdin), then runs
#: ``python -m linkprobe`` N times in this process through runpy, exactly as ``-m`` does.
_WORKER = """
import runpy, sys
source, target, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
import linkprobe.cli
print("ready", flush=True)
sys.stdin.readline()
for _ in range(runs):
    sys.argv = ["linkprobe", "--format", "json", source, target]
    try:
        runpy.run_module("linkprobe", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        print(f"exit {exc.code}", file=sys.stderr)
    print("\\x1e", flush=True)
"""


def _concurrent_probes(source: Path, target: Path, processes: int, runs: int) -> list[str]:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(source), str(target), str(runs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:  # the barrier: every worker has imported linkprobe
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()  # communicate() closes it
        documents: list[str] = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            assert err.splitlines() == ["exit 0"] * runs, err
            documents.extend(part.strip() for part in out.split("\x1e") if part.strip())
        return documents
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.parametrize("where", ["tmp_path", pytest.param("btrfs", marks=pytest.mark.realfs)])
def test_16_processes_probing_one_pair_agree_and_leave_nothing(where: str, request: pytest.FixtureRequest) -> None:
    """16 processes x 25 probes of one pair, all started at once (the CLI never caches)."""
    if where == "btrfs":  # every mode succeeds there: the most scratch files per probe
        mounts: ScratchMounts = request.getfixturevalue("mounts")
        source, target = mounts.btrfs("a"), mounts.btrfs("a")
        (source / "cache").mkdir()
        source = source / "cache"
    else:
        base: Path = request.getfixturevalue("tmp_path")
        source, target = base / "cache", base / "project"
        source.mkdir()
        target.mkdir()
    started = time.monotonic()
    documents = _concurrent_probes(source, target, processes=16, runs=25)
    elapsed = time.monotonic() - started
    assert len(documents) == 16 * 25
    answers = collections.Counter(documents)
    assert len(answers) == 1, f"{len(answers)} different answers: {list(answers)[:2]}"
    answer = json.loads(documents[0])
    litter = find_litter([source, target])
    print(
        f"\nconcurrency [{where}]: 16 processes x 25 probes = {len(documents)} probes in {elapsed:.1f} s, "
        f"1 answer ({answer['mode']}), litter found: {len(litter)}"
    )
    assert litter == []
    if where == "btrfs":
        assert answer["mode"] == "clone"
        assert all(mode["supported"] for mode in answer["modes"].values())


# ---------------------------------------------------------------------------- signals


def _start_up_traceback(stderr: str) -> bool:
    """A KeyboardInterrupt traceback from Python's start-up, before linkprobe code runs.

    Python imports ``site``, then (runpy, before ``__main__.py`` can catch anything) the
    ``linkprobe`` package: a Ctrl-C in those ~40 ms gets Python's default, a traceback.
    Nothing has been created yet then. linkprobe's own code only ever runs below
    ``linkprobe/__main__.py``, which catches KeyboardInterrupt: a traceback through it fails.
    """
    frames = re.findall(r'File "([^"]+)", line \d+, in ', stderr)
    # The exception line itself: Python 3.13 may add a note after it (interrupted while
    # creating an enum class: "Error calling __set_name__ on '_proto_member' ...").
    interrupted = re.search(r"^KeyboardInterrupt$", stderr, re.MULTILINE) is not None
    return interrupted and not any(path.endswith(os.path.join("linkprobe", "__main__.py")) for path in frames)


Outcome = str


def _classify(returncode: int, stdout: str, stderr: str, sig: int) -> Outcome:
    """What one signalled run did; raises AssertionError for anything not allowed."""
    if sig == signal.SIGINT:
        stderr, ignored = IGNORED_IN_IMPORT.subn("", stderr)
        if ignored:
            return f"{_classify(returncode, stdout, stderr, sig)}, after a Ctrl-C Python ignored in an import"
    if TRACEBACK in stderr or START_UP_FATAL.search(stderr) is not None:
        assert sig == signal.SIGINT, stderr
        # -SIGINT: uncaught KeyboardInterrupt; 1: a START_UP_FATAL message.
        assert returncode in (-signal.SIGINT, 1), (returncode, stderr)
        assert _start_up_traceback(stderr), stderr
        return "KeyboardInterrupt in Python's start-up (site, import linkprobe): Python's default"
    if returncode == -sig:
        if stdout:  # the answer was out: killed while Python was shutting down
            assert stdout.strip() in {"clone", "hardlink", "copy"}, stdout
            return "killed by the signal after the answer was printed"
        return "killed by the signal before the probe started"
    if returncode == 128 + sig:
        assert stdout == "", stdout  # the interrupted answer is never printed
        assert stderr == "", stderr
        return f"exit {128 + sig} (linkprobe caught it)"
    assert returncode in CLEAN_EXITS, (returncode, stderr)
    assert stderr == "", stderr
    assert stdout.strip() in {"clone", "hardlink", "copy"}
    return "finished first (exit 0)"


@pytest.mark.parametrize(
    ("returncode", "stderr"),
    [
        # 3.10, seen in CI: SIGINT while -m imports runpy.
        (1, "Could not import runpy module\nKeyboardInterrupt\n"),
        # 3.13, seen in CI: SIGINT during import site.
        (
            1,
            "Fatal Python error: init_import_site: Failed to import the site module\n"
            "Python runtime state: initialized\nKeyboardInterrupt\n\nCurrent thread 0x1 (most recent call first):\n"
            "  <no Python frame>\n",
        ),
        (
            -signal.SIGINT,
            'Traceback (most recent call last):\n  File "<frozen runpy>", line 189, in _run_module_as_main\n'
            "KeyboardInterrupt\n",
        ),
    ],
)
def test_start_up_interrupts_are_python_s_default(returncode: int, stderr: str) -> None:
    assert _classify(returncode, "", stderr, signal.SIGINT).startswith("KeyboardInterrupt in Python's start-up")


#: Seen in CI on 3.10: SIGINT in importlib's module-lock callback; the run then answered.
_IGNORED_IN_IMPORTLIB = (
    "Exception ignored in: <function _get_module_lock.<locals>.cb at 0x7f124c9d64d0>\n"
    "Traceback (most recent call last):\n"
    '  File "<frozen importlib._bootstrap>", line 198, in cb\n'
    "KeyboardInterrupt: \n"
)


def test_a_ctrl_c_python_ignores_in_an_import_is_then_judged_as_the_run() -> None:
    outcome = _classify(0, "hardlink\n", _IGNORED_IN_IMPORTLIB, signal.SIGINT)
    assert outcome == "finished first (exit 0), after a Ctrl-C Python ignored in an import"
    assert _classify(130, "", _IGNORED_IN_IMPORTLIB, signal.SIGINT).startswith("exit 130")
    with pytest.raises(AssertionError):  # what follows is still judged: no answer, exit 0
        _classify(0, "", _IGNORED_IN_IMPORTLIB, signal.SIGINT)


@pytest.mark.parametrize(
    ("sig", "stderr"),
    [
        (signal.SIGTERM, _IGNORED_IN_IMPORTLIB),  # SIGTERM is never turned into a KeyboardInterrupt
        (signal.SIGINT, _IGNORED_IN_IMPORTLIB.replace("<frozen importlib._bootstrap>", "/x/linkprobe/probe.py")),
        (signal.SIGINT, _IGNORED_IN_IMPORTLIB.replace("_get_module_lock.<locals>.cb", "Linker.__del__")),
    ],
)
def test_other_ignored_interrupts_are_refused(sig: int, stderr: str) -> None:
    with pytest.raises(AssertionError):
        _classify(0, "hardlink\n", stderr, sig)


@pytest.mark.parametrize(
    "stderr",
    [
        # A traceback through linkprobe's own entry point is a linkprobe bug, never start-up.
        'Traceback (most recent call last):\n  File "/x/linkprobe/__main__.py", line 3, in <module>\n'
        "KeyboardInterrupt\n",
        "Could not import runpy module\nKeyboardInterrupt\n",
        "linkprobe: error: Bad file descriptor\n",
    ],
)
def test_other_interrupted_output_is_refused(stderr: str) -> None:
    sig = signal.SIGTERM if stderr.startswith("Could not") else signal.SIGINT  # start-up text, wrong signal
    with pytest.raises(AssertionError):
        _classify(1, "", stderr, sig)


def _median_run_time(argv: list[str]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=unmeasured_environment(), timeout=60, check=False)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
    return statistics.median(times)


#: A long-lived child that runs ``main()`` in a loop, so that a signal very likely lands
#: while a probe is mid-way. Exit 130/143 returned by main() means linkprobe held the
#: signal until its scratch files were gone; 3 means Ctrl-C landed in this loop's own code.
_LOOP = """
import sys
from linkprobe.cli import main
argv = sys.argv[1:]
print("ready", flush=True)
try:
    for _ in range(100_000):
        code = main(argv)
        if code in (130, 143):
            sys.exit(code)
except KeyboardInterrupt:
    sys.exit(3)
"""


def test_signal_storm_leaves_no_scratch_file(pair: tuple[Path, Path]) -> None:
    """SIGINT and SIGTERM at random moments, to whole runs and to probes mid-way."""
    source, target = pair
    rng = random.Random(SIGNAL_SEED)
    print(f"\nsignal storm: seed {SIGNAL_SEED} (set LINKPROBE_SIGNAL_SEED to replay)")
    argv = [sys.executable, "-m", "linkprobe", str(source), str(target)]
    run_time = _median_run_time(argv)
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    trials = 0
    # Phase 1: whole `python -m linkprobe` runs, signalled after 0..run time.
    for _ in range(40):
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        delay = rng.uniform(0, run_time)
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=unmeasured_environment()
        )
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        out, err = child.communicate(timeout=60)
        trials += 1
        assert find_litter([source, target]) == [], f"seed {SIGNAL_SEED}, trial {trials}, delay {delay:.4f}"
        outcomes[("whole run", f"{sig.name}: {_classify(child.returncode, out, err, sig)}")] += 1
    # Phase 2: a loop of probes in one process, signalled 0..50 ms after it is ready.
    for _ in range(40):
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        delay = rng.uniform(0, 0.05)
        child = subprocess.Popen(
            [sys.executable, "-c", _LOOP, str(source), str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=unmeasured_environment(),
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(delay)
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
        trials += 1
        assert find_litter([source, target]) == [], f"seed {SIGNAL_SEED}, trial {trials}, delay {delay:.4f}"
        assert TRACEBACK not in err, err
        if child.returncode == 128 + sig:
            what = f"exit {128 + sig} from main() (held, then delivered)"
        elif child.returncode == -sig:
            what = "killed by the signal (between probes)"
        else:
            assert (sig, child.returncode) == (signal.SIGINT, 3), (sig, child.returncode, err)
            what = "KeyboardInterrupt between probes"
        outcomes[("probe loop", f"{sig.name}: {what}")] += 1
    print(f"signal storm: {trials} trials (run time {run_time * 1000:.0f} ms), litter found: 0")
    for (phase, what), count in sorted(outcomes.items()):
        print(f"  {phase:<10} {count:>3}  {what}")
    held = sum(count for (phase, what), count in outcomes.items() if "held" in what)
    assert held > 0, "no signal landed mid-probe: the storm tested nothing"


def _hold_signal_mid_probe(monkeypatch: pytest.MonkeyPatch, sig: signal.Signals) -> None:
    """Make the probe send ``sig`` to this process half-way through its attempts."""

    class Signalling(LinuxBackend):
        def hardlink(self, source: str, target: str) -> None:
            super().hardlink(source, target)
            os.kill(os.getpid(), sig)  # blocked: lands when the probe is done

    real_find = probe_module.find

    def probing(*args: Any, **kwargs: Any) -> Any:
        return real_find(*args, **{**kwargs, "backend": Signalling()})

    monkeypatch.setattr("linkprobe.cli.probe.find", probing)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_probe_restores_the_sigterm_handler(
    pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """A held signal fires as the mask is lifted; main() must still put SIGTERM's handler back.

    Before the fix it left its own handler installed, so any later SIGTERM raised an
    internal exception in whatever code called main() in-process.
    """
    _hold_signal_mid_probe(monkeypatch, sig)
    previous = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(pair[0]), str(pair[1])])
    assert code == 128 + sig
    assert (out.getvalue(), err.getvalue()) == ("", "")
    assert signal.getsignal(signal.SIGTERM) == previous
    assert find_litter(pair) == []


@pytest.mark.skipif(not getattr(os, "O_PATH", 0), reason="scratch files are pinned by O_PATH descriptors")
def test_clean_interrupted_after_a_pin_is_closed_closes_every_pin_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt right after close(2) of the first pin returned (where a signal's
    handler runs): the other pins stayed open, the list kept the closed number, and a
    second clean() closed it again (EBADF, or the file another thread got that number for)."""
    backend = LinuxBackend()
    attempts = scratch_module.Attempts(backend, lambda: None)
    for tag in ("a", "b", "c", "d"):
        name = scratch_module.scratch_name(str(tmp_path), tag)
        attempts.record(name, backend.create_scratch(name))
    pins = list(attempts.pins)
    assert len(pins) == 4
    real_close = os.close
    closed: list[int] = []

    def close(fd: int) -> None:
        real_close(fd)
        closed.append(fd)
        if len(closed) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", close)
    with pytest.raises(KeyboardInterrupt):
        attempts.clean()
    attempts.clean()  # nothing is left to close
    monkeypatch.undo()
    assert sorted(closed) == sorted(pins)
    assert attempts.pins == []
    assert find_litter([tmp_path]) == []


# ------------------------------------------------------- planted names and identity


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file outside the probed directories that a planted symlink points at."""
    path = tmp_path / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(b"precious\n")
    path.chmod(0o640)
    before = path.stat()
    yield path
    after = path.stat()
    assert path.read_bytes() == b"precious\n"
    assert (after.st_nlink, after.st_mode, after.st_mtime_ns, after.st_ino) == (
        before.st_nlink,
        before.st_mode,
        before.st_mtime_ns,
        before.st_ino,
    )


@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_every_scratch_name_already_planted(
    pair: tuple[Path, Path], victim: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """Each name the probe picks is already taken (a symlink to a victim, or someone's file).

    The name generator is patched to plant first, which no racer could do for real
    (64 random bits). Every create must fail with EEXIST, nothing may be followed,
    and nothing planted may be removed.
    """
    planted_names: dict[str, FileIdentity] = {}
    real_name = scratch_module.scratch_name

    def planting_name(directory: str, tag: str) -> str:
        name: str = real_name(directory, tag)
        if planted == "symlink":
            os.symlink(victim, name)
        else:
            Path(name).write_bytes(b"not yours\n")
        info = os.lstat(name)
        planted_names[name] = (info.st_dev, info.st_ino)
        return name

    monkeypatch.setattr(scratch_module, "scratch_name", planting_name)
    result = probe(pair[0], pair[1], cache=False)
    assert len(planted_names) == 5  # src, copy, clone, hardlink, symlink
    for verdict in result.verdicts:
        assert verdict.errno in (errno.EEXIST, None) or verdict.status.value == "not-probed", verdict
        assert verdict.status.value != "supported", verdict
    for name, identity in planted_names.items():
        info = os.lstat(name)
        assert (info.st_dev, info.st_ino) == identity, name
        os.unlink(name)


def test_name_swapped_between_create_and_remove_is_left_alone(pair: tuple[Path, Path], victim: Path) -> None:
    """Somebody replaces each scratch name just before the probe removes it.

    Removal checks (st_dev, st_ino) first, so the replacement (a symlink to a victim, or
    a regular file) must survive. The swap happens in the backend, between the create
    (identity recorded) and remove_if_same.
    """
    swapped: dict[str, FileIdentity] = {}

    class Swapping(LinuxBackend):
        def remove_if_same(self, path: str, identity: FileIdentity | None) -> bool:
            os.unlink(path)  # what the attacker does: our file goes...
            if len(swapped) % 2:  # ...and a name of theirs takes its place
                os.symlink(victim, path)
            else:
                Path(path).write_bytes(b"theirs\n")
            info = os.lstat(path)
            swapped[path] = (info.st_dev, info.st_ino)
            removed = super().remove_if_same(path, identity)
            assert not removed, path
            return removed

    result = probe(pair[0], pair[1], cache=False, backend=Swapping())
    assert result.best is not None
    assert len(swapped) >= 4  # the source scratch file and every attempt that succeeded
    for name, identity in swapped.items():
        info = os.lstat(name)
        assert (info.st_dev, info.st_ino) == identity, name
        os.unlink(name)


# ------------------------------------------------------------------------- bad input


def _loops(base: Path) -> Path:
    (base / "loopA").symlink_to(base / "loopB")
    (base / "loopB").symlink_to(base / "loopA")
    return base / "loopA"


BAD_INPUT: list[tuple[str, str]] = [
    # (case, expected words on stderr); the argv is built in test_bad_input_exits_2
    ("symlink loop as source", "source path has a symlink loop"),
    ("symlink loop as target", "target path has a symlink loop"),
    ("symlink loop in a parent of the target", "target path has a symlink loop"),
    ("symlink loop in a parent of the source", "source path has a symlink loop"),
    ("target name over NAME_MAX", "target path is too long"),
    ("source name over NAME_MAX", "source path is too long"),
    ("target path over PATH_MAX", "target path is too long"),
    ("source path over PATH_MAX", "source path is too long"),
    ("a parent of the source is a file", "a parent of the source is not a directory"),
    ("a parent of the target is a file", "a parent of the target is not a directory"),
    ("--format env with an empty --env", "--format env needs a variable name"),
    ("--format env with '=' in --env", "--format env needs a variable name"),
    ("--format env with a newline in --env", "--format env needs a variable name"),
]


def _bad_argv(case: str, source: Path, target: Path) -> list[str]:
    base = source.parent
    loop = _loops(base)
    afile = base / "afile"
    afile.write_text("x")
    long_name = "n" * 300
    deep = "/".join(["abcdefgh"] * 600)
    table = {
        "symlink loop as source": [str(loop), str(target)],
        "symlink loop as target": [str(source), str(loop)],
        "symlink loop in a parent of the target": [str(source), f"{loop}/x/.venv"],
        "symlink loop in a parent of the source": [f"{loop}/cache", str(target)],
        "target name over NAME_MAX": [str(source), str(base / long_name)],
        "source name over NAME_MAX": [str(base / long_name), str(target)],
        "target path over PATH_MAX": [str(source), f"{base}/{deep}"],
        "source path over PATH_MAX": [f"{base}/{deep}", str(target)],
        "a parent of the source is a file": [f"{afile}/cache", str(target)],
        "a parent of the target is a file": [str(source), f"{afile}/.venv"],
        "--format env with an empty --env": ["--format", "env", "--env", "", str(source), str(target)],
        "--format env with '=' in --env": ["--format", "env", "--env", "A=B", str(source), str(target)],
        "--format env with a newline in --env": ["--format", "env", "--env", "A\nB", str(source), str(target)],
    }
    return table[case]


@pytest.mark.parametrize(("case", "words"), BAD_INPUT, ids=[case for case, _ in BAD_INPUT])
def test_bad_input_exits_2(pair: tuple[Path, Path], case: str, words: str) -> None:
    done = run_module(_bad_argv(case, *pair))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert_one_error_line(done.stderr)
    assert words in done.stderr
    assert find_litter(pair) == []


@pytest.mark.parametrize("which", ["source", "target"])
def test_nul_byte_in_a_path_exits_2(pair: tuple[Path, Path], which: str) -> None:
    """argv cannot carry a NUL, so this goes through main() (the API path)."""
    argv = [f"{pair[0]}\0x", str(pair[1])] if which == "source" else [str(pair[0]), f"{pair[1]}\0"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert (code, out.getvalue()) == (2, "")
    assert_one_error_line(err.getvalue())
    assert f"{which} path contains a NUL byte" in err.getvalue()


def test_target_too_deep_for_any_scratch_name_exits_1(tmp_path: Path) -> None:
    """A target that exists but whose scratch names would pass PATH_MAX: nothing can be
    created there (exit 1, ENAMETOOLONG, with that reason), unlike a given path that is
    itself too long (bad input, exit 2)."""
    fd = os.open(tmp_path, os.O_RDONLY)
    depth = 0
    path = str(tmp_path)
    try:
        while len(path) < 4070:  # PATH_MAX is 4096 with the NUL
            name = "d" * min(200, 4070 - len(path) - 1)
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, path, depth = inner, f"{path}/{name}", depth + 1
    finally:
        os.close(fd)
    source = tmp_path / "cache"
    source.mkdir()
    done = run_module([str(source), path])
    assert done.returncode == 1, done.stderr
    assert_one_error_line(done.stderr)
    assert "path too long in target" in done.stderr
    assert find_litter([tmp_path]) == []


def test_undecodable_path_with_a_strict_stdout(pair: tuple[Path, Path]) -> None:
    """A directory name that is not UTF-8, printed to a strict UTF-8 stdout (the default
    outside the C locale): escaped, never a UnicodeEncodeError traceback."""
    source = os.fsencode(pair[0].parent) + b"/caf\xe9"
    os.mkdir(source)
    for fmt in ("text", "mode", "json"):
        done = run_module(
            ["--format", fmt, os.fsdecode(source), str(pair[1])], PYTHONIOENCODING="utf-8:strict", LC_ALL="C.UTF-8"
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        if fmt == "text":
            assert "caf\\udce9" in done.stdout


# --------------------------------------------------------------------------- property

#: Words the CLI knows, mixed with anything at all.
_OPTION = st.sampled_from(["--mode", "--env", "--format", "--version", "-h", "--help", "--", "-x", "--timeout"])
_MODE_WORD = st.sampled_from(["auto", "copy", "clone", "reflink", "cow", "hardlink", "softlink", "symlink", "", " X "])
_FORMAT = st.sampled_from(["mode", "text", "json", "env", "yaml", ""])
#: Any code point, NUL and lone surrogates included; never absolute and never ``..``, so
#: that as a path (relative to the fixture's base, the cwd) it stays inside that base.
_ANY_TEXT = st.text(max_size=12).filter(lambda text: not text.startswith("/") and ".." not in text)
_COMPONENT = st.text(max_size=12).filter(lambda part: "/" not in part and part != "..")


@st.composite
def _argv(draw: st.DrawFn, places: tuple[str, ...]) -> list[str]:
    """An argv that mixes options, option values, fixture paths and random paths.

    Random paths stay under the fixture's base directory (no ``..``, relative ones are
    run with that base as cwd), so a probe never writes scratch files anywhere else.
    """
    base = places[0]
    path = st.one_of(
        st.sampled_from(places),
        st.lists(_COMPONENT, min_size=1, max_size=3).map(lambda parts: os.path.join(base, *parts)),
    )
    token = st.one_of(_OPTION, _MODE_WORD, _FORMAT, path, _ANY_TEXT, st.just("--mode=" + "copy"))
    return draw(st.lists(token, max_size=8))


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    base = tmp_path_factory.mktemp("cli-property")
    for name in ("cache", "project"):
        (base / name).mkdir()
    (base / "cache" / "pkg.whl").write_bytes(b"wheel")
    (base / "afile").write_text("x")
    _loops(base)
    return (
        str(base),
        str(base / "cache"),
        str(base / "project"),
        str(base / "afile"),
        str(base / "loopA"),
        str(base / "project" / "missing" / ".venv"),
    )


def _os_string(text: str) -> bool:
    """Can a real argv or environment hold ``text``? (bytes: no NUL, and only the lone
    surrogates that PEP 383 makes of undecodable bytes)"""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def _check_run(code: int, out: str, err: str) -> None:
    assert code in CLEAN_EXITS, (code, err)
    assert TRACEBACK not in err
    if code != 0:
        error_line(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), env_value=st.one_of(st.none(), _ANY_TEXT.filter(lambda v: "\0" not in v), _MODE_WORD))
def test_property_any_argv_and_env_in_process(
    places: tuple[str, ...], data: st.DataObject, env_value: str | None
) -> None:
    argv = data.draw(_argv(places))
    environ = {key: value for key, value in os.environ.items() if key != ENV}
    if env_value is not None:
        environ[ENV] = env_value
    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        patch.setattr(os, "environ", environ)
        patch.chdir(places[0])
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    _check_run(code, out.getvalue(), err.getvalue())
    assert find_litter([places[0]]) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), env_value=st.one_of(st.none(), _MODE_WORD, _ANY_TEXT))
def test_property_any_argv_and_env_as_a_process(
    places: tuple[str, ...], data: st.DataObject, env_value: str | None
) -> None:
    """The same through a real argv and environment, with a strict UTF-8 stdout."""
    argv = data.draw(_argv(places).filter(lambda args: all(map(_os_string, args))))
    extra = {"PYTHONIOENCODING": "utf-8:strict"}
    if env_value is not None and _os_string(env_value):
        extra[ENV] = env_value
    done = run_module(argv, cwd=places[0], **extra)
    _check_run(done.returncode, done.stdout, done.stderr)
    assert find_litter([places[0]]) == []
