"""``probe(..., timeout=)`` and ``--timeout``: a filesystem that never answers.

Unit part: a backend that blocks on cue (the pure rules and the thread hand-over).
Real part: an exFAT FUSE mount whose daemon is stopped with SIGSTOP -- every request
to it waits for ever, as with a hung FUSE daemon or an unreachable network mount.
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _mounts import SCRATCH_PREFIX, ScratchMounts, find_litter, fuse_daemon_pid
from _stderr import error_line

from linkprobe import LinkMode, Status, UnsupportedModeError, probe
from linkprobe.cli import main
from linkprobe.errors import TargetNotDirectoryError
from linkprobe.linux import LinuxBackend
from linkprobe.result import Verdict, best_mode

# Start-up of `python -m linkprobe` is ~60 ms here; CI machines may be slower.  The
# point of the limit is "returns near the timeout", not "blocks until SIGCONT".
_SLACK_SECONDS = 2.0


def _probe_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "linkprobe-probe"]


def _join_probe_threads(limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    for thread in _probe_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not _probe_threads(), "an abandoned probe thread did not finish"


class BlockingBackend(LinuxBackend):
    """Hard links, then waits until released: a filesystem stuck mid-probe, with one of
    our scratch names already on disk."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.symlinks = 0

    def hardlink(self, source: str, target: str) -> None:
        super().hardlink(source, target)
        self.blocked.set()
        self.release.wait(30)

    def symlink(self, source: str, target: str) -> None:
        self.symlinks += 1
        super().symlink(source, target)


# -- pure rules -------------------------------------------------------------


def _verdicts(**status: Status) -> tuple[Verdict, ...]:
    return tuple(Verdict(mode, status.get(mode.value, Status.UNSUPPORTED), "why") for mode in LinkMode)


def test_best_mode_is_copy_when_copy_timed_out() -> None:
    everything_timed_out = _verdicts(**{mode.value: Status.TIMED_OUT for mode in LinkMode})
    assert best_mode(everything_timed_out) is LinkMode.COPY


def test_best_mode_prefers_a_verified_mode_to_a_timed_out_copy() -> None:
    assert best_mode(_verdicts(copy=Status.TIMED_OUT, hardlink=Status.SUPPORTED)) is LinkMode.HARDLINK


def test_best_mode_is_none_when_copy_failed_and_the_rest_timed_out() -> None:
    verdicts = _verdicts(clone=Status.TIMED_OUT, hardlink=Status.TIMED_OUT, copy=Status.UNSUPPORTED)
    assert best_mode(verdicts) is None


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_timeout_must_be_positive(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        probe(tmp_path, tmp_path / "t", timeout=bad)


@pytest.mark.parametrize("bad", ["0", "-2", "nan", "inf", "soon", ""])
def test_cli_rejects_a_bad_timeout_with_exit_2(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--timeout", bad, str(tmp_path), str(tmp_path / "t")])
    assert raised.value.code == 2
    err = error_line(capsys.readouterr().err)
    assert "--timeout" in err


# -- the thread hand-over, on an ordinary filesystem ---------------------------


def test_a_probe_within_its_timeout_is_the_same_probe(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    plain = probe(tmp_path / "src", tmp_path / "dst", cache=False)
    timed = probe(tmp_path / "src", tmp_path / "dst", cache=False, timeout=30)
    assert timed.verdicts == plain.verdicts
    assert not timed.timed_out
    _join_probe_threads()


def test_errors_inside_the_timed_probe_reach_the_caller(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TargetNotDirectoryError):
        probe(tmp_path, tmp_path / "file", cache=False, timeout=30)
    _join_probe_threads()


def test_a_stuck_mode_times_out_and_the_thread_cleans_up_later(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    backend = BlockingBackend()
    started = time.monotonic()
    result = probe(source, target, cache=False, backend=backend, timeout=0.3)
    elapsed = time.monotonic() - started
    try:
        assert 0.3 <= elapsed < 0.3 + _SLACK_SECONDS
        assert result.timed_out
        # Attempted in the order copy, clone, hardlink, symlink: the first two answered.
        assert result.verdict(LinkMode.COPY).status is Status.SUPPORTED
        # (Clone answers either way, depending on the filesystem under tmp_path.)
        assert result.verdict(LinkMode.CLONE).status in (Status.SUPPORTED, Status.UNSUPPORTED)
        for mode in (LinkMode.HARDLINK, LinkMode.SYMLINK):
            verdict = result.verdict(mode)
            assert verdict.status is Status.TIMED_OUT
            assert verdict.errno == errno.ETIMEDOUT
            assert "no answer from the filesystem within 0.3 s" in verdict.reason
        assert result.best is LinkMode.COPY
        with pytest.raises(UnsupportedModeError) as refused:
            result.require(LinkMode.HARDLINK)
        assert refused.value.errno == errno.ETIMEDOUT
        # The stuck call has already made its name: litter, until the thread goes on.
        assert backend.blocked.is_set()
        assert find_litter([source, target])
    finally:
        backend.release.set()
        _join_probe_threads()
    assert find_litter([source, target]) == []
    assert backend.symlinks == 0  # abandoned: no attempt after the one that was stuck


def test_a_timed_out_result_is_not_cached(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    backend = BlockingBackend()
    try:
        assert probe(source, target, backend=backend, timeout=0.2).timed_out
    finally:
        backend.release.set()
        _join_probe_threads()
    # Neither the timed-out result nor the abandoned thread's partial one was cached: the
    # next probe runs afresh, with the backend unblocked, and attempts every mode.
    again = probe(source, target, backend=backend)
    assert not again.timed_out
    assert again.verdict(LinkMode.HARDLINK).status is Status.SUPPORTED
    assert again.verdict(LinkMode.SYMLINK).status is Status.SUPPORTED
    assert backend.symlinks == 1


# -- a real hung filesystem ---------------------------------------------------------


@contextmanager
def _stopped_daemon(mountpoint: Path) -> Iterator[int]:
    pid = fuse_daemon_pid(mountpoint)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        # Always: a stopped daemon would hang the unmount at teardown too.
        os.kill(pid, signal.SIGCONT)


def _linkprobe(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "linkprobe", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.realfs
def test_stopped_fuse_daemon_cli_and_library(mounts: ScratchMounts, tmp_path: Path) -> None:
    target_dir = mounts.own_exfat()
    mountpoint = target_dir.parent
    source = tmp_path / "cache"
    source.mkdir()
    (source / "wheel.py").write_text("x = 1\n")
    target = target_dir / ".venv"
    try:
        with _stopped_daemon(mountpoint):
            # FUSE caches attributes and names for ~1 s (libfuse's default timeouts):
            # wait them out, so that even the first stat() has to ask the daemon.
            time.sleep(1.5)

            auto, auto_seconds = _linkprobe("--timeout", "1", "--format", "json", str(source), str(target))
            assert auto.returncode == 0, auto.stderr
            assert auto_seconds < 1 + _SLACK_SECONDS
            document = json.loads(auto.stdout)
            assert document["mode"] == "copy"
            assert document["timed_out"] is True
            assert {mode["status"] for mode in document["modes"].values()} == {"timed-out"}

            word, _ = _linkprobe("--timeout", "1", str(source), str(target))
            assert (word.returncode, word.stdout) == (0, "copy\n")

            explicit, explicit_seconds = _linkprobe("--timeout", "1", "--mode", "hardlink", str(source), str(target))
            assert explicit.returncode == 1
            assert explicit_seconds < 1 + _SLACK_SECONDS
            assert explicit.stdout == ""
            assert explicit.stderr.count("\n") == 1
            assert "no answer from the filesystem within 1 s" in explicit.stderr
            assert "Traceback" not in explicit.stderr + auto.stderr

            started = time.monotonic()
            result = probe(source, target, cache=False, timeout=0.5)
            assert time.monotonic() - started < 0.5 + _SLACK_SECONDS
            assert result.timed_out
            assert result.best is LinkMode.COPY
            assert result.target.fstype == "fuseblk"
            assert result.target.st_dev is None
        # The daemon runs again: the abandoned thread finishes and removes what it made.
        _join_probe_threads(limit=30)
        assert find_litter([source, mountpoint]) == []
        # And the filesystem answers for real now (exFAT: no links at all).
        assert probe(source, target, cache=False, timeout=10).best is LinkMode.COPY
        assert not any(name.startswith(SCRATCH_PREFIX) for name in os.listdir(target_dir))
    finally:
        _join_probe_threads(limit=30)
        assert mounts.release(target_dir) == []
