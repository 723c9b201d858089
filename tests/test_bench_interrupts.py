"""``linkprobe.bench`` interrupted at each descriptor it closes, in turn: a real SIGINT sent
right after a close(2) returned, where Python runs the handler (at the next check for
pending signals, before the line that records the close), deterministically instead of
at a random moment as in the signal storm of test_bench_cli.py.

Each interrupted run must end in KeyboardInterrupt (never an EBADF of a descriptor closed
twice), leave every descriptor as it was before the run, and leave no ``.linkprobe-`` name.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _litter import find_litter

from linkprobe.benchmarking import _remove_tree, bench
from linkprobe.mounts import mount_table

pytestmark = [
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc/self/fd"),
    pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="bench holds signals with signal masks"),
]


def open_descriptors() -> set[int]:
    gc.collect()  # a scandir iterator nobody closed holds its descriptor until collected
    return {int(name) for name in os.listdir("/proc/self/fd")}


class CloseWatch:
    """``os.close`` that sends SIGINT to this process after the ``interrupt_at``-th call
    (0: never) has really closed its descriptor, and notes every close that failed EBADF."""

    def __init__(self, interrupt_at: int) -> None:
        self.interrupt_at = interrupt_at
        self.calls = 0
        self.closed_twice: list[int] = []
        #: Where the interrupted close was called from.
        self.where = ""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_close = os.close

        def close(fd: int) -> None:
            try:
                real_close(fd)
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    self.closed_twice.append(fd)
                raise
            self.calls += 1
            if self.calls == self.interrupt_at:
                self.where = "".join(traceback.format_stack(limit=5)[:-1])
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(os, "close", close)


@contextlib.contextmanager
def watching(interrupt_at: int) -> Iterator[CloseWatch]:
    watch = CloseWatch(interrupt_at)
    with pytest.MonkeyPatch.context() as patch:
        watch.install(patch)
        yield watch


def _sigint_blocked() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, ())


def _interrupted(run: Callable[[], object], interrupt_at: int) -> tuple[str, CloseWatch]:
    """Run ``run`` with the ``interrupt_at``-th close interrupted; its outcome in a word."""
    with watching(interrupt_at) as watch:
        try:
            run()
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        except Exception as exc:  # what an interrupted close must never turn into
            outcome = repr(exc)
        else:
            outcome = "finished"
    return outcome, watch


def _tree(root: Path) -> Path:
    """A scratch tree with nested directories, as bench removes them."""
    tree = root / ".linkprobe-bench-tree"
    for first in ("a", "b", "c"):
        for second in ("x", "y"):
            directory = tree / first / second
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "file").write_bytes(b"data")
    return tree


def test_remove_tree_interrupted_after_each_close_removes_everything_and_raises_keyboard_interrupt(
    tmp_path: Path,
) -> None:
    """The removal is one step that signals wait for. Python 3.10 and 3.11: EBADF instead
    of KeyboardInterrupt, and the tree half there (shutil.rmtree closes a directory, is
    interrupted before noting it, closes it again); 3.12: the EBADF goes to the error
    handler, which called os.close with the path (TypeError); 3.13: KeyboardInterrupt
    with the tree half there."""
    before = open_descriptors()
    tree = _tree(tmp_path)
    with watching(0) as count:
        _remove_tree(str(tree))
    closes = count.calls
    assert closes >= 1 + 3 + 6  # the top directory, then each directory below it
    failures = []
    for interrupt_at in range(1, closes + 1):
        tree = _tree(tmp_path)
        outcome, watch = _interrupted(functools.partial(_remove_tree, str(tree)), interrupt_at)
        if (outcome, watch.closed_twice, tree.exists()) != ("KeyboardInterrupt", [], False):
            failures.append((interrupt_at, outcome, watch.closed_twice, tree.exists(), watch.where))
        assert not _sigint_blocked()
    assert failures == []
    assert open_descriptors() == before


def test_remove_tree_reports_a_directory_it_cannot_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shutil.rmtree reports a failed open of a directory to the error handler as
    ``os.open``. Calling that again with the path alone raised TypeError (os.open needs
    flags): a traceback instead of the error. Its error is the one to report."""
    tree = _tree(tmp_path)
    real_open = os.open

    def refusing(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and path == "b":  # rmtree opens each directory relative to its parent
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    before = open_descriptors()
    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(PermissionError) as raised:
        _remove_tree(str(tree))
    monkeypatch.undo()
    assert open_descriptors() == before
    assert raised.value.errno == errno.EACCES
    assert (tree / "b" / "x" / "file").exists()  # left alone, reported
    _remove_tree(str(tree))
    assert not tree.exists()


def test_bench_interrupted_after_each_close_raises_keyboard_interrupt_and_leaves_nothing(tmp_path: Path) -> None:
    """Every close of a whole run, in turn: writing the sample, the probes' pinned scratch
    files, the Linker's directory descriptors, the audit's walk, the removal of each round."""
    source, target = tmp_path / "cache", tmp_path / "project" / ".venv"
    source.mkdir()
    mount_table()  # opens the mount watch, a descriptor kept for the process's lifetime

    def run() -> object:
        return bench(source, target, files=12, rounds=1)

    before = open_descriptors()
    with watching(0) as count:
        run()
    closes = count.calls
    assert closes > 100  # files, pins, directories: every kind above is in there
    failures = []
    for interrupt_at in range(1, closes + 1):
        outcome, watch = _interrupted(run, interrupt_at)
        now = open_descriptors()
        litter = find_litter([tmp_path])
        if (outcome, watch.closed_twice, now, litter) != ("KeyboardInterrupt", [], before, []):
            failures.append((interrupt_at, outcome, watch.closed_twice, now ^ before, litter, watch.where))
        assert not _sigint_blocked()
    assert not target.parent.exists()
    assert failures == []
