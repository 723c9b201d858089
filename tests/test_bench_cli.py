"""``linkprobe bench``: the JSON contract, the text layout, exit codes, progress on a
terminal, and signals at random moments (nothing left behind, no traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import run_main as run
from _fs_build import ScratchMounts
from _litter import find_litter
from _stderr import error_line

from linkprobe.cli.main import COMMANDS

#: Replay a failing storm with LINKPROBE_SIGNAL_SEED=<seed>.
SIGNAL_SEED = int(os.environ.get("LINKPROBE_SIGNAL_SEED", "12"))
MODE_KEYS = {"status", "reason", "seconds", "median_seconds", "files_per_second", "disk_bytes"}


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LINKPROBE_MODE", None)
    return env


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "cache"
    source.mkdir()
    return source, tmp_path / "project" / ".venv"


def test_bench_is_a_registered_command_and_the_api_name_stays_the_function() -> None:
    assert "bench" in COMMANDS
    import linkprobe.benchmarking  # the submodule is not named bench: this must not shadow it

    assert callable(linkprobe.bench)
    assert linkprobe.bench is linkprobe.benchmarking.bench
    assert linkprobe.BenchResult is linkprobe.benchmarking.BenchResult


def test_json_contract(pair: tuple[Path, Path]) -> None:
    source, target = pair
    code, out, err = run(["bench", str(source), str(target), "--files", "40", "--rounds", "2", "--format", "json"])
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["schema_version"] == 1
    assert (document["source"], document["target"]) == (str(source), str(target))
    assert document["sample"]["files"] == 40
    assert document["sample"]["from"] == "synthetic"
    assert document["sample"]["bytes"] > 0
    assert set(document["modes"]) == {"clone", "hardlink", "symlink", "copy"}
    for name, mode in document["modes"].items():
        assert set(mode) >= MODE_KEYS, name
        if mode["status"] == "timed":
            assert len(mode["round_seconds"]) == 2
            assert mode["seconds"] == min(mode["round_seconds"])
            assert mode["files_per_second"] == pytest.approx(40 / mode["seconds"])
            assert mode["files"] == 40
        else:
            assert mode["seconds"] is None
            assert mode["median_seconds"] is None
            assert mode["reason"]
    assert document["modes"]["clone"]["status"] == "unsupported"  # ext4 under /tmp here
    assert document["modes"]["clone"]["errno"] == "EOPNOTSUPP"  # as the probe command names it
    assert document["modes"]["hardlink"]["status"] == "timed"
    assert document["best"] == "hardlink"
    timed_seconds = {name: mode["seconds"] for name, mode in document["modes"].items() if mode["seconds"] is not None}
    assert document["fastest"] == min(timed_seconds, key=timed_seconds.__getitem__)
    machine = document["machine"]
    assert {"os", "kernel", "cpus", "date", "filesystems"} <= set(machine)
    assert machine["filesystems"] == {"source": "ext4", "target": "ext4"}
    assert machine["cpus"] == os.cpu_count()
    assert document["advice"].startswith("hardlink is ")
    assert document["scale"] is None
    assert not target.parent.exists()
    assert os.listdir(source) == []


def test_text_layout(pair: tuple[Path, Path]) -> None:
    source, target = pair
    code, out, err = run(["bench", str(source), str(target), "--files", "40", "--rounds", "1"])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"source: {source} (ext4, mount /)"
    assert lines[2].startswith("sample: 40 files, ")
    header = next(index for index, line in enumerate(lines) if line.split()[:2] == ["mode", "min"])
    rows = lines[header + 1 : header + 5]
    assert [row.split()[0] for row in rows] == ["hardlink", "copy", "symlink", "clone"]
    assert "not timed (unsupported) [EOPNOTSUPP]: ext4 has no reflink support" in rows[3]
    bars = [line for line in lines if "█" in line]
    assert [line.split()[0] for line in bars] == ["hardlink", "copy", "symlink"]
    # Scaled to the slowest: its bar is the longest, 30 cells.
    assert max(line.count("█") for line in bars) == 30
    assert lines[-2].startswith("machine: Linux ")
    # 40 files and one round: which mode is faster is the noise's to say here; the shape is not.
    speed = r"is [\d.]+\N{MULTIPLICATION SIGN} (faster|slower) than|is as fast as"
    advice = rf"hardlink ({speed}) copy here (and|but) saves [\d.]+ [kMG]?B per 1,000 files"
    assert re.fullmatch(advice, lines[-1]), lines[-1]


def test_scale_to_in_text_and_json(pair: tuple[Path, Path]) -> None:
    source, target = pair
    cache = source / "real"
    cache.mkdir()
    for index in range(12):
        (cache / f"f{index}").write_bytes(b"x" * 1000)
    argv = ["bench", str(source), str(target), "--files", "6", "--rounds", "1", "--scale-to", str(cache)]
    code, out, _ = run([*argv, "--format", "json"])
    assert code == 0
    scale = json.loads(out)["scale"]
    assert (scale["path"], scale["files"], scale["bytes"]) == (str(cache), 12, 12_000)
    assert set(scale["modes"]) == {"hardlink", "copy", "symlink"}
    code, out, _ = run(argv)
    assert code == 0
    assert f"scaled to {cache} (12 files, 12 kB; a straight line from this sample, not a measurement):" in out
    assert sorted(os.listdir(source)) == ["real"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--files", "0"], "argument --files: expected a whole number of at least 1, got '0'"),
        (["--files", "many"], "argument --files: expected a whole number of at least 1, got 'many'"),
        (["--rounds", "-2"], "argument --rounds: expected a whole number of at least 1, got '-2'"),
        (["--files", "3", "--sample", "/"], "argument --sample: not allowed with argument --files"),
        (["--format", "yaml"], "argument --format: invalid choice: 'yaml' (choose from 'text', 'json')"),
        (["--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
    ],
)
def test_usage_errors_exit_2(pair: tuple[Path, Path], extra: list[str], words: str) -> None:
    source, target = pair
    code, out, err = run(["bench", str(source), str(target), *extra])
    assert (code, out) == (2, "")
    assert error_line(err) == f"linkprobe: error: {words}"


def test_unusable_sample_exits_2_with_one_line(pair: tuple[Path, Path]) -> None:
    source, target = pair
    missing = source.parent / "missing"
    code, out, err = run(["bench", str(source), str(target), "--sample", str(missing)])
    assert (code, out) == (2, "")
    assert error_line(err) == f"linkprobe: error: cannot sample {missing}: not a directory"
    assert os.listdir(source) == []


@pytest.mark.realfs
def test_read_only_target_exits_1(mounts: ScratchMounts) -> None:
    source = mounts.tmpfs()
    target = mounts.ro_bind(mounts.ext4())
    try:
        code, out, err = run(["bench", str(source), str(target / "venv"), "--files", "5"])
    finally:
        mounts.release(target)
    assert (code, out) == (1, "")
    assert error_line(err).startswith(f"linkprobe: error: no mode works from {source} to {target / 'venv'}: ")
    assert "read-only" in err
    assert os.listdir(source) == []


def test_progress_goes_to_a_terminal_on_stderr_only(pair: tuple[Path, Path]) -> None:
    source, target = pair
    controller, terminal = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "linkprobe", "bench", str(source), str(target), "--files", "20", "--rounds", "2"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=environment(),
        )
        os.close(terminal)
        terminal = -1
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(controller, 4096):
                seen += chunk
        out, _ = child.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert child.returncode == 0
    progress = seen.decode()
    assert "linkprobe bench: writing a sample of 20 files" in progress
    assert "linkprobe bench: copy: round 2 of 2" in progress
    assert progress.endswith("\r\x1b[K")  # the line is cleared before the report
    assert b"linkprobe bench:" not in out
    assert out.decode().splitlines()[-1].startswith("hardlink is ")


def test_no_progress_when_stderr_is_not_a_terminal(pair: tuple[Path, Path]) -> None:
    source, target = pair
    done = subprocess.run(
        [sys.executable, "-m", "linkprobe", "bench", str(source), str(target), "--files", "5", "--rounds", "1"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def _wait_for_sample(source: Path, child: subprocess.Popen[str], limit: float = 60.0) -> bool:
    """Wait until the run has made its sample directory (linkprobe's own code is running,
    past Python's start-up, where Ctrl-C is Python's to report); False if it ended first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        with contextlib.suppress(FileNotFoundError):
            if any(name.startswith(".linkprobe-bench-sample-") for name in os.listdir(source)):
                return True
        time.sleep(0.002)
    raise AssertionError("the sample directory never appeared")


def test_signals_at_random_moments_leave_nothing_and_print_no_traceback(pair: tuple[Path, Path]) -> None:
    source, target = pair
    rng = random.Random(SIGNAL_SEED)
    print(f"\nbench signal storm: seed {SIGNAL_SEED} (set LINKPROBE_SIGNAL_SEED to replay)")
    argv = [sys.executable, "-m", "linkprobe", "bench", str(source), str(target), "--files", "200", "--rounds", "2"]
    started = time.perf_counter()
    first = subprocess.run(argv, capture_output=True, text=True, env=environment(), timeout=300, check=False)
    run_time = time.perf_counter() - started
    assert first.returncode == 0, first.stderr
    outcomes: dict[str, int] = {}
    for trial in range(10):
        sig = signal.SIGTERM if trial % 3 == 2 else signal.SIGINT
        # Within the first half of a whole run's time after the sample appeared: on a loaded
        # machine a later signal often finds the run finished, and the storm tests nothing.
        delay = rng.uniform(0, run_time / 2)
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
        if _wait_for_sample(source, child):
            time.sleep(delay)
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
        out, err = child.communicate(timeout=300)
        where = f"seed {SIGNAL_SEED}, trial {trial}, {sig.name} after {delay:.3f} s"
        assert "Traceback" not in err, where
        assert find_litter([source, source.parent]) == [], where
        assert not target.parent.exists(), where
        if child.returncode == 128 + sig:
            assert (out, err) == ("", ""), where
            what = f"{sig.name}: exit {128 + sig}"
        elif child.returncode == -sig:
            # The run had finished and its report was written; the signal landed while the
            # interpreter was shutting down, after it restored the default action (the
            # kernel then ends the process). Nothing may be left behind, checked above.
            assert err == "", where
            assert out.strip(), where  # the report was written
            what = f"{sig.name}: killed while exiting"
        else:
            assert (child.returncode, err) == (0, ""), where
            what = "finished first (exit 0)"
        outcomes[what] = outcomes.get(what, 0) + 1
    print(f"bench signal storm: 10 trials, run time {run_time:.2f} s: {outcomes}")
    assert outcomes.get("SIGINT: exit 130", 0) >= 3, outcomes
    assert outcomes.get("SIGTERM: exit 143", 0) >= 1, outcomes


def test_bars_fall_back_to_hash_signs_on_a_stdout_that_cannot_encode_blocks(pair: tuple[Path, Path]) -> None:
    source, target = pair
    done = subprocess.run(
        [sys.executable, "-m", "linkprobe", "bench", str(source), str(target), "--files", "5", "--rounds", "1"],
        capture_output=True,
        text=True,
        env={**environment(), "PYTHONIOENCODING": "ascii"},
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    bars = [line for line in done.stdout.splitlines() if "#" in line]
    assert [line.split()[0] for line in bars] == ["hardlink", "copy", "symlink"]
    assert "█" not in done.stdout
    assert "\\u" not in done.stdout.split("\n\n")[1]  # the table and bars are not escaped


def test_unknown_disk_use_is_a_question_mark() -> None:
    from linkprobe.benchmarking import ModeBench
    from linkprobe.cli.bench import _row
    from linkprobe.modes import LinkMode

    row = _row(ModeBench(LinkMode.CLONE, "timed", "nfs", None, (0.5, 0.7), None, 10, 1000))
    assert row.split() == ["clone", "0.5", "s", "0.6", "s", "20", "0.0", "?"]


def test_help_fits_in_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for argv in (["--help"], ["bench", "--help"]):
        code, out, _ = run(argv)
        assert code == 0
        assert max(len(line) for line in out.splitlines()) <= 80, out
