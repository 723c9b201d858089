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
import stat
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _litter import find_litter

from linkprobe.benchmarking import _remove_by_descriptor, _remove_tree, bench
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
    (0: never) has really closed its descriptor, and notes every close that failed EBADF.
    With ``masked`` False it raises KeyboardInterrupt itself instead: what the main thread
    gets when another thread, which does not block SIGINT, took the signal."""

    def __init__(self, interrupt_at: int, *, masked: bool = True) -> None:
        self.interrupt_at = interrupt_at
        self.masked = masked
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
                if not self.masked:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(os, "close", close)


@contextlib.contextmanager
def watching(interrupt_at: int, *, masked: bool = True) -> Iterator[CloseWatch]:
    watch = CloseWatch(interrupt_at, masked=masked)
    with pytest.MonkeyPatch.context() as patch:
        watch.install(patch)
        yield watch


def _sigint_blocked() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, ())


def _interrupted(run: Callable[[], object], interrupt_at: int, *, masked: bool = True) -> tuple[str, CloseWatch]:
    """Run ``run`` with the ``interrupt_at``-th close interrupted; its outcome in a word."""
    with watching(interrupt_at, masked=masked) as watch:
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
    """The removal is one step that signals wait for. With shutil.rmtree, 3.10 and 3.11
    gave EBADF instead of KeyboardInterrupt (it closes a directory, is interrupted before
    noting that, and closes it again), 3.12 a TypeError (its error handler was given
    os.close and the path), 3.13 a KeyboardInterrupt with the tree half there."""
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


def test_removal_interrupted_after_each_close_even_unmasked_closes_each_descriptor_once(tmp_path: Path) -> None:
    """Without the signal mask (another thread took the SIGINT): the interrupt goes on, the
    tree may be half there, but no descriptor is closed twice or left open."""
    before = open_descriptors()
    tree = _tree(tmp_path)
    with watching(0) as count:
        _remove_by_descriptor(str(tree))
    failures = []
    for interrupt_at in range(1, count.calls + 1):
        tree = _tree(tmp_path)
        outcome, watch = _interrupted(functools.partial(_remove_by_descriptor, str(tree)), interrupt_at, masked=False)
        now = open_descriptors()
        if (outcome, watch.closed_twice, now) != ("KeyboardInterrupt", [], before):
            failures.append((interrupt_at, outcome, watch.closed_twice, now ^ before, watch.where))
    assert failures == []
    _remove_tree(str(tree))


def test_remove_tree_reports_a_directory_it_cannot_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error of the open is the one reported, and nothing stays open. (shutil.rmtree
    passed ``os.open`` and the path to the error handler, which called it again with the
    path alone: a TypeError, as os.open needs flags, and a traceback.)"""
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


def test_remove_tree_removes_a_symlink_inside_without_following_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    (outside / "deeper" / "keep").write_bytes(b"not bench's")
    tree = _tree(tmp_path)
    (tree / "a" / "to-a-directory").symlink_to(outside)
    (tree / "a" / "x" / "to-a-file").symlink_to(outside / "deeper" / "keep")
    _remove_tree(str(tree))
    assert not tree.exists()
    assert (outside / "deeper" / "keep").read_bytes() == b"not bench's"


def test_remove_tree_never_enters_a_directory_swapped_for_a_symlink_after_it_was_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"not bench's")
    tree = _tree(tmp_path)
    real_open = os.open

    def swapping(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and path == "b" and (tree / "b").is_dir():
            (tree / "b").rename(tmp_path / "moved")
            (tree / "b").symlink_to(outside)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", swapping)
    _remove_tree(str(tree))
    monkeypatch.undo()
    assert not tree.exists()
    assert [path.name for path in outside.iterdir()] == ["keep"]
    _remove_tree(str(tmp_path / "moved"))


def test_remove_tree_leaves_the_mode_of_the_directory_it_is_in_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """That directory is the user's (bench's scratch trees sit in the source and target
    directories): a failure to remove the tree's top is reported, and its mode kept."""
    users = tmp_path / "cache"
    users.mkdir()
    users.chmod(0o755)
    tree = _tree(users)
    real_rmdir = os.rmdir

    def busy(path: str, *, dir_fd: int | None = None) -> None:
        if dir_fd is None and path == str(tree):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", busy)
    with pytest.raises(OSError, match="resource busy") as raised:
        _remove_tree(str(tree))
    monkeypatch.undo()
    assert raised.value.errno == errno.EBUSY
    assert oct(users.stat().st_mode & 0o777) == oct(0o755)
    assert list(tree.iterdir()) == []  # all below it was removed
    tree.rmdir()


def test_remove_tree_makes_its_own_directories_writable_to_empty_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A umask without the owner's write bit (0o2xx) leaves the directories link_tree
    makes at 0o500: their owner, unless root, gets EACCES removing what is in them. As
    root here, the owner's rule is played by wrappers that refuse as the kernel would."""
    tree = _tree(tmp_path)
    for directory in sorted(tree.rglob("*"), reverse=True):
        if directory.is_dir():
            directory.chmod(0o500)
    users_mode = stat.S_IMODE(tmp_path.stat().st_mode)
    real_unlink, real_rmdir = os.unlink, os.rmdir

    def as_owner(real: Callable[..., None]) -> Callable[..., None]:
        def call(path: str, *, dir_fd: int | None = None) -> None:
            parent = os.fstat(dir_fd) if dir_fd is not None else os.stat(os.path.dirname(path))
            if not parent.st_mode & stat.S_IWUSR:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            real(path, dir_fd=dir_fd)

        return call

    monkeypatch.setattr(os, "unlink", as_owner(real_unlink))
    monkeypatch.setattr(os, "rmdir", as_owner(real_rmdir))
    _remove_tree(str(tree))
    monkeypatch.undo()
    assert not tree.exists()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == users_mode  # only the tree's own were changed
