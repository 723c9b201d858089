"""``LinkBackend.make_many``: the generic loop and Linux's fast path (directory descriptors)
must make the same files, stop at the same failure and clean up the same way."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

import pytest
from _extents import shares_extents
from _fs_build import ScratchMounts
from _marks import NEEDS_LINUX_SYSCALLS

from linkprobe import LinkMode
from linkprobe import linux as linux_module
from linkprobe.api import KEPT_MODE_BITS, LinkBackend, SourceHints
from linkprobe.generic import GenericBackend
from linkprobe.linux import LinuxBackend

NAMES = ("a.py", "b.bin", "tool", "empty", "big.dat")


def make_source(directory: Path) -> list[tuple[str, SourceHints]]:
    """Files of several sizes and modes, and their hints as link_tree builds them: readdir
    said "regular file", and the umask is known; mode bits and sizes are not looked at."""
    directory.mkdir()
    contents = {"a.py": b"print(1)\n", "b.bin": os.urandom(5000), "tool": b"#!/bin/sh\n", "empty": b""}
    contents["big.dat"] = os.urandom(3 << 20)  # more than one copy_file_range step
    modes = {"tool": 0o755, "b.bin": 0o600}
    files = []
    for name in NAMES:
        path = directory / name
        path.write_bytes(contents[name])
        path.chmod(modes.get(name, 0o644))
        files.append((name, SourceHints(None, None, 0o022)))
    return files


def scanned(directory: Path, files: list[tuple[str, SourceHints]]) -> list[tuple[str, SourceHints]]:
    """The same files with the mode bits and sizes an lstat gives (a caller that has them)."""
    looked = []
    for name, hints in files:
        info = (directory / name).lstat()
        looked.append((name, SourceHints(stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size, hints.umask)))
    return looked


def sizes(directory: Path, names: tuple[str, ...] | list[str] = NAMES) -> int:
    return sum((directory / name).stat().st_size for name in names)


class PlainLoop(LinuxBackend):
    """LinuxBackend forced onto the base class's per-file loop (the reference)."""

    def make_many(self, *args: object, **kwargs: object) -> tuple[int, OSError | None, int]:
        return LinkBackend.make_many(self, *args, **kwargs)  # type: ignore[arg-type]


def outcome(source: Path, target: Path) -> list[tuple[str, bytes, int, bool]]:
    """(name, bytes, permission bits, same inode as the source) for each made file."""
    return [
        (
            name,
            (target / name).read_bytes(),
            stat.S_IMODE((target / name).stat().st_mode),
            (target / name).stat().st_ino == (source / name).stat().st_ino,
        )
        for name in NAMES
        if (target / name).exists()
    ]


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK])
@pytest.mark.parametrize("looked", [False, True], ids=["readdir", "scanned"])
def test_fast_path_makes_what_the_per_file_loop_makes(tmp_path: Path, mode: LinkMode, looked: bool) -> None:
    files = make_source(tmp_path / "src")
    if looked:
        files = scanned(tmp_path / "src", files)
    made = 0 if mode is LinkMode.HARDLINK else sizes(tmp_path / "src")
    results = {}
    for label, backend in (("fast", LinuxBackend()), ("loop", PlainLoop())):
        target = tmp_path / label
        target.mkdir()
        assert backend.make_many(mode, str(tmp_path / "src"), str(target), files) == (len(files), None, made)
        results[label] = outcome(tmp_path / "src", target)
    assert results["fast"] == results["loop"]
    assert len(results["fast"]) == len(NAMES)
    linked = {row[3] for row in results["fast"]}
    assert linked == ({True} if mode is LinkMode.HARDLINK else {False})
    if mode is LinkMode.COPY:  # permission bits exactly, whatever the umask
        assert {row[0]: row[2] for row in results["fast"]} == {
            "a.py": 0o644,
            "b.bin": 0o600,
            "tool": 0o755,
            "empty": 0o644,
            "big.dat": 0o644,
        }


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK, LinkMode.CLONE])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_stops_at_the_first_failure_and_resumes_from_start(
    tmp_path: Path, mode: LinkMode, backend: LinkBackend
) -> None:
    files = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    (target / "tool").write_bytes(b"somebody's")  # index 2 exists already
    source = tmp_path / "src"
    done, error, made = backend.make_many(mode, str(source), str(target), files)
    if mode is LinkMode.CLONE and isinstance(error, OSError) and error.errno in (errno.EOPNOTSUPP, errno.EXDEV):
        # tmp_path's filesystem cannot clone: the first file fails, and leaves nothing.
        assert (done, made, sorted(os.listdir(target))) == (0, 0, ["tool"])
        return
    counted = mode is not LinkMode.HARDLINK
    assert (done, made) == (2, sizes(source, ["a.py", "b.bin"]) if counted else 0)
    assert isinstance(error, FileExistsError)
    assert (target / "tool").read_bytes() == b"somebody's"  # never replaced
    assert sorted(os.listdir(target)) == ["a.py", "b.bin", "tool"]
    # The caller handles the failed file, then continues after it.
    rest = sizes(source, ["empty", "big.dat"]) if counted else 0
    assert backend.make_many(mode, str(source), str(target), files, done + 1) == (len(files), None, rest)
    assert sorted(os.listdir(target)) == sorted(NAMES)


@NEEDS_LINUX_SYSCALLS
def test_a_copy_failing_midway_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    real = linux_module._copy_range
    assert real is not None

    def fails_on_big(source_fd: int, target_fd: int, count: int) -> int:
        if os.fstat(source_fd).st_size > 1 << 20:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return int(real(source_fd, target_fd, count))

    monkeypatch.setattr(linux_module, "_copy_range", fails_on_big)
    done, error, made = LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    assert done == NAMES.index("big.dat")
    assert made == sizes(tmp_path / "src", list(NAMES[:done]))
    assert isinstance(error, OSError)
    assert error.errno == errno.EIO
    assert "big.dat" not in os.listdir(target)


@NEEDS_LINUX_SYSCALLS
def test_umask_unknown_still_keeps_the_bits(tmp_path: Path) -> None:
    files = [(name, hints._replace(umask=None)) for name, hints in make_source(tmp_path / "src")]
    target = tmp_path / "dst"
    target.mkdir()
    previous = os.umask(0o077)  # would strip 0o755 down to 0o700
    try:
        result = LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
        assert result == (len(files), None, sizes(tmp_path / "src"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "a.py").stat().st_mode) == 0o644


@NEEDS_LINUX_SYSCALLS
def test_a_directory_that_cannot_be_opened_fails_the_first_file(tmp_path: Path) -> None:
    files = make_source(tmp_path / "src")
    done, error, made = LinuxBackend().make_many(
        LinkMode.HARDLINK, str(tmp_path / "src"), str(tmp_path / "missing"), files, 1
    )
    assert (done, made) == (1, 0)
    assert isinstance(error, FileNotFoundError)


def test_a_subclass_overriding_one_file_methods_sees_every_file(tmp_path: Path) -> None:
    """Counting backends in tests (and anyone's wrapper) must not be bypassed."""

    class Counting(LinuxBackend if sys.platform == "linux" else GenericBackend):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seen: list[str] = []

        def hardlink(self, source: str, target: str) -> None:
            self.seen.append(os.path.basename(target))
            super().hardlink(source, target)

    files = make_source(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    backend = Counting()
    assert backend.make_many(LinkMode.HARDLINK, str(tmp_path / "src"), str(tmp_path / "dst"), files) == (5, None, 0)
    assert backend.seen == list(NAMES)


@NEEDS_LINUX_SYSCALLS
def test_a_subclass_overriding_copy_data_sees_every_copy(tmp_path: Path) -> None:
    """The copy fast path writes copy_data's common case out; a backend that overrides
    copy_data (to count, or to copy another way) gets the per-file loop instead."""

    class Counting(LinuxBackend):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
            self.sizes.append(size)
            super().copy_data(source_fd, target_fd, size)

    files = make_source(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    backend = Counting()
    result = backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(tmp_path / "dst"), files)
    assert result == (5, None, sizes(tmp_path / "src"))
    assert backend.sizes == [(tmp_path / "src" / name).stat().st_size for name in NAMES]
    for name in NAMES:
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name


def test_symlink_mode_links_to_absolute_paths(tmp_path: Path) -> None:
    files = make_source(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    relative_source = os.path.relpath(tmp_path / "src")
    result = LinuxBackend().make_many(LinkMode.SYMLINK, relative_source, str(tmp_path / "dst"), files[:1])
    assert result == (1, None, len(b"print(1)\n"))
    assert os.readlink(tmp_path / "dst" / "a.py") == str(tmp_path / "src" / "a.py")


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_stale_size_hint_still_copies_to_end_of_file(tmp_path: Path, backend: LinkBackend) -> None:
    """The cache file grew (or was replaced) after the scan: every byte is still copied."""
    files = scanned(tmp_path / "src", make_source(tmp_path / "src"))
    stale = [(name, hints._replace(size=100)) for name, hints in files]
    (tmp_path / "dst").mkdir()
    # The bytes counted are the sizes as hinted: nothing looks at the files again.
    assert backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(tmp_path / "dst"), stale) == (5, None, 500)
    for name in NAMES:
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("looked", [False, True], ids=["readdir", "scanned"])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_name_swapped_for_a_symlink_after_the_scan_is_never_followed(
    tmp_path: Path, backend: LinkBackend, looked: bool
) -> None:
    files = make_source(tmp_path / "src")
    if looked:
        files = scanned(tmp_path / "src", files)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours\n")
    secret.chmod(0o600)
    os.unlink(tmp_path / "src" / "a.py")
    os.symlink(secret, tmp_path / "src" / "a.py")  # after the scan: the hints say 0o644 regular file
    source, target = str(tmp_path / "src"), tmp_path / "dst"
    target.mkdir()

    done, error, made = backend.make_many(LinkMode.COPY, source, str(target), files[:1])
    assert (done, made) == (0, 0)
    assert isinstance(error, OSError)
    assert error.errno == errno.ELOOP
    assert not os.path.lexists(target / "a.py")

    assert backend.make_many(LinkMode.HARDLINK, source, str(target), files[:1]) == (1, None, 0)
    assert (target / "a.py").is_symlink()  # the symlink itself, as link(2) does
    assert (target / "a.py").lstat().st_ino != secret.stat().st_ino


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_an_error_at_close_is_a_failure_and_removes_the_file(
    tmp_path: Path, backend: LinkBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS may report ENOSPC or EDQUOT only when the file is closed."""
    files = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    real_close = os.close

    def close(fd: int) -> None:
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        real_close(fd)
        if name == str(target / "b.bin"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "close", close)
    done, error, made = backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    monkeypatch.undo()
    assert (done, made) == (NAMES.index("b.bin"), sizes(tmp_path / "src", ["a.py"]))
    assert isinstance(error, OSError)
    assert error.errno == errno.EDQUOT
    assert sorted(os.listdir(target)) == ["a.py"]


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_as_source_fails_or_finishes_never_hangs(tmp_path: Path) -> None:
    """open(2) of a FIFO for reading waits for a writer; the backend opens with O_NONBLOCK."""
    fifo = tmp_path / "swapped"
    os.mkfifo(fifo)
    backend = LinuxBackend() if sys.platform.startswith("linux") else GenericBackend()
    with pytest.raises(OSError, match="not a regular file"):
        backend.copy(str(fifo), str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()
    # With hints the caller saw a regular file: the swapped name fails (copy_file_range:
    # ESPIPE) and leaves no file, instead of blocking in open().
    with pytest.raises(OSError, match=r"Illegal seek|Invalid argument") as raised:
        backend.copy(str(fifo), str(tmp_path / "hinted"), SourceHints(0o644, 0, None))
    assert raised.value.errno in (errno.ESPIPE, errno.EINVAL)
    assert not (tmp_path / "hinted").exists()
    # Hints without mode bits and size (readdir said "regular file"): the fstat of what
    # was opened refuses it before anything is created.
    with pytest.raises(OSError, match="not a regular file") as raised:
        backend.copy(str(fifo), str(tmp_path / "readdir"), SourceHints(None, None, 0o022))
    assert raised.value.errno == errno.EINVAL
    assert not (tmp_path / "readdir").exists()


@NEEDS_LINUX_SYSCALLS
@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_name_swapped_for_a_fifo_after_readdir_is_refused_and_leaves_nothing(
    tmp_path: Path, backend: LinkBackend
) -> None:
    files = make_source(tmp_path / "src")
    os.unlink(tmp_path / "src" / "b.bin")
    os.mkfifo(tmp_path / "src" / "b.bin")  # readdir said "regular file"
    target = tmp_path / "dst"
    target.mkdir()
    done, error, made = backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    assert (done, made) == (1, sizes(tmp_path / "src", ["a.py"]))
    assert isinstance(error, OSError)
    assert error.errno == errno.EINVAL
    assert sorted(os.listdir(target)) == ["a.py"]


def count_copy_range(monkeypatch: pytest.MonkeyPatch, piece: int | None = None) -> list[int]:
    """What each copy_file_range call of the backend returned, in order. With ``piece``, no
    call copies more than that: a filesystem that copies in pieces (NFS server-side copy,
    SMB copychunk), whose short returns are not the end of the file."""
    real = linux_module._copy_range
    assert real is not None
    returned: list[int] = []

    def counted(source_fd: int, target_fd: int, count: int, *args: object) -> int:
        copied = int(real(source_fd, target_fd, count if piece is None else min(count, piece)))
        returned.append(copied)
        return copied

    monkeypatch.setattr(linux_module, "_copy_range", counted)
    return returned


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("piece", [None, 4096], ids=["whole", "in-pieces"])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
@pytest.mark.parametrize(
    ("scanned", "now"),
    [
        (5000, 5000),  # unchanged
        (5000, 9000),  # grew
        (5000, (3 << 20) + 7),  # grew by more than one copy_file_range step
        (5000, 3000),  # shrank
        (5000, 0),  # emptied
        (0, 5000),  # was empty
        (4096, 4096),  # a page: the size alone does not say the copy is at the end
        (4096, 10000),  # grew from a page; in pieces, the first one ends at the old size
        (8192, 5000),
    ],
)
def test_a_file_changed_between_scan_and_copy_is_copied_as_it_is_at_copy_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: LinkBackend, piece: int | None, scanned: int, now: int
) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    (source / "f").write_bytes(os.urandom(scanned))
    files = [("f", SourceHints(0o644, (source / "f").stat().st_size, 0o022))]  # the scan
    data = os.urandom(now)
    (source / "f").write_bytes(data)  # the same inode, changed before the copy
    returned = count_copy_range(monkeypatch, piece)
    assert backend.make_many(LinkMode.COPY, str(source), str(target), files) == (1, None, scanned)
    assert (target / "f").read_bytes() == data
    assert sum(returned) == now
    # The call that returns 0 is made unless the copy ended exactly at the scanned size.
    assert (returned[-1] == 0) == (now != scanned or scanned % 4096 == 0)


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("looked", [False, True], ids=["readdir", "scanned"])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
@pytest.mark.parametrize(("size", "calls"), [(1, 1), (5000, 1), ((3 << 20) + 1, 1), (0, 1), (4096, 2), (8192, 2)])
def test_one_copy_file_range_when_it_ends_the_file_at_the_scanned_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: LinkBackend, size: int, calls: int, looked: bool
) -> None:
    """A file unchanged since the scan: one call copies it (each asks for the scanned size
    and 1 MiB more), and only at a multiple of the page size, where /proc, /sys and copies
    in pieces could end early, the call that returns 0 confirms the end."""
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    (source / "f").write_bytes(os.urandom(size))
    files = [("f", SourceHints(0o644, size, 0o022) if looked else SourceHints(None, None, 0o022))]
    returned = count_copy_range(monkeypatch)
    assert backend.make_many(LinkMode.COPY, str(source), str(target), files) == (1, None, size)
    assert len(returned) == calls, returned
    assert (target / "f").read_bytes() == (source / "f").read_bytes()


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("looked", [False, True], ids=["readdir", "scanned"])
def test_a_known_umask_that_takes_bits_away_still_keeps_them(tmp_path: Path, looked: bool) -> None:
    """A umask that cuts bits of the source's mode: the new file is fchmod'ed to them."""
    source = tmp_path / "src"
    files = make_source(source)
    if looked:
        files = scanned(source, files)
    files = [(name, hints._replace(umask=0o077)) for name, hints in files]
    target = tmp_path / "dst"
    target.mkdir()
    previous = os.umask(0o077)
    try:
        result = LinuxBackend().make_many(LinkMode.COPY, str(source), str(target), files)
        assert result == (len(files), None, sizes(source))
    finally:
        os.umask(previous)
    modes = {name: stat.S_IMODE((source / name).stat().st_mode) for name in NAMES}
    assert {name: stat.S_IMODE((target / name).stat().st_mode) for name in NAMES} == modes
    assert outcome(source, target) == [(name, (source / name).read_bytes(), modes[name], False) for name in NAMES]


@NEEDS_LINUX_SYSCALLS
def test_copy_file_range_refused_falls_back_without_asking_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXDEV (a copy between two filesystem types): sendfile copies each file, and the
    refusal costs one call per file, not two."""
    files = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    refused: list[int] = []

    def cross_device(source_fd: int, target_fd: int, count: int, *args: object) -> int:
        refused.append(source_fd)
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(linux_module, "_copy_range", cross_device)
    result = LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    assert result == (len(files), None, sizes(tmp_path / "src"))
    assert len(refused) == len(files)
    for name in NAMES:
        assert (target / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name


@NEEDS_LINUX_SYSCALLS
def test_an_interrupted_copy_leaves_no_file_and_no_open_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()

    def interrupted(source_fd: int, target_fd: int, count: int, *args: object) -> int:
        raise KeyboardInterrupt

    open_before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(linux_module, "_copy_range", interrupted)
    with pytest.raises(KeyboardInterrupt):
        LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    assert os.listdir(target) == []
    assert sorted(os.listdir("/proc/self/fd")) == open_before


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.CLONE, LinkMode.HARDLINK])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_budget_stops_once_the_files_made_hold_it(tmp_path: Path, mode: LinkMode, backend: LinkBackend) -> None:
    """With a budget, make_many stops without an error after the file that reaches it, and
    the caller goes on from there; hard links make no bytes, so nothing stops them."""
    files = make_source(tmp_path / "src")
    source, target = tmp_path / "src", tmp_path / "dst"
    target.mkdir()
    done, error, made = backend.make_many(mode, str(source), str(target), files, 0, budget=5000)
    if mode is LinkMode.CLONE and isinstance(error, OSError) and error.errno in (errno.EOPNOTSUPP, errno.EXDEV):
        assert (done, made, os.listdir(target)) == (0, 0, [])
        return
    assert error is None
    if mode is LinkMode.HARDLINK:
        assert (done, made) == (len(files), 0)
        return
    assert (done, made) == (2, sizes(source, ["a.py", "b.bin"]))  # 9 + 5,000 bytes: the budget is reached
    assert sorted(os.listdir(target)) == ["a.py", "b.bin"]
    assert backend.make_many(mode, str(source), str(target), files, done, budget=5000) == (
        len(files),
        None,
        sizes(source, ["tool", "empty", "big.dat"]),
    )
    assert outcome(source, target) == [
        (name, (source / name).read_bytes(), stat.S_IMODE((source / name).stat().st_mode), False) for name in NAMES
    ]


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("filesystem", ["btrfs", "xfs"])
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_clones_from_readdir_hints_share_extents_and_keep_the_bits(
    mounts: ScratchMounts, filesystem: str, backend: LinkBackend
) -> None:
    """Clones on filesystems that make them: the bits and sizes come from the opened file,
    the budget stops them like copies, and FIEMAP (not linkprobe) says the blocks are shared."""
    top = mounts.btrfs("a") if filesystem == "btrfs" else mounts.xfs(reflink=True)
    source, target = top / "src", top / "dst"
    files = make_source(source)
    target.mkdir()
    done, error, made = backend.make_many(LinkMode.CLONE, str(source), str(target), files, 0, budget=5000)
    assert (done, error, made) == (2, None, sizes(source, ["a.py", "b.bin"]))
    assert backend.make_many(LinkMode.CLONE, str(source), str(target), files, done) == (
        len(files),
        None,
        sizes(source, ["tool", "empty", "big.dat"]),
    )
    modes = {name: stat.S_IMODE((source / name).stat().st_mode) for name in NAMES}
    assert outcome(source, target) == [(name, (source / name).read_bytes(), modes[name], False) for name in NAMES]
    assert shares_extents(source / "big.dat", target / "big.dat")
