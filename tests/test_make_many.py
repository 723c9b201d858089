"""``LinkBackend.make_many``: the generic loop and Linux's fast path (directory descriptors)
must make the same files, stop at the same failure and clean up the same way."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

import pytest
from _marks import NEEDS_LINUX_SYSCALLS

from linkprobe import LinkMode
from linkprobe import linux as linux_module
from linkprobe.api import KEPT_MODE_BITS, LinkBackend, SourceHints
from linkprobe.generic import GenericBackend
from linkprobe.linux import LinuxBackend

NAMES = ("a.py", "b.bin", "tool", "empty", "big.dat")


def make_source(directory: Path) -> list[tuple[str, SourceHints]]:
    """Files of several sizes and modes, and their hints as link_tree builds them."""
    directory.mkdir()
    contents = {"a.py": b"print(1)\n", "b.bin": os.urandom(5000), "tool": b"#!/bin/sh\n", "empty": b""}
    contents["big.dat"] = os.urandom(3 << 20)  # more than one copy_file_range step
    modes = {"tool": 0o755, "b.bin": 0o600}
    files = []
    for name in NAMES:
        path = directory / name
        path.write_bytes(contents[name])
        path.chmod(modes.get(name, 0o644))
        info = path.stat()
        files.append((name, SourceHints(stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size, 0o022)))
    return files


class PlainLoop(LinuxBackend):
    """LinuxBackend forced onto the base class's per-file loop (the reference)."""

    def make_many(self, *args: object, **kwargs: object) -> tuple[int, OSError | None]:
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
def test_fast_path_makes_what_the_per_file_loop_makes(tmp_path: Path, mode: LinkMode) -> None:
    files = make_source(tmp_path / "src")
    results = {}
    for label, backend in (("fast", LinuxBackend()), ("loop", PlainLoop())):
        target = tmp_path / label
        target.mkdir()
        assert backend.make_many(mode, str(tmp_path / "src"), str(target), files) == (len(files), None)
        results[label] = outcome(tmp_path / "src", target)
    assert results["fast"] == results["loop"]
    assert len(results["fast"]) == len(NAMES)
    linked = {row[3] for row in results["fast"]}
    assert linked == ({True} if mode is LinkMode.HARDLINK else {False})
    if mode is LinkMode.COPY:  # permission bits exactly, whatever the umask
        assert {row[0]: row[2] for row in results["fast"]}["tool"] == 0o755


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
    done, error = backend.make_many(mode, str(tmp_path / "src"), str(target), files)
    if mode is LinkMode.CLONE and isinstance(error, OSError) and error.errno in (errno.EOPNOTSUPP, errno.EXDEV):
        # tmp_path's filesystem cannot clone: the first file fails, and leaves nothing.
        assert (done, sorted(os.listdir(target))) == (0, ["tool"])
        return
    assert done == 2
    assert isinstance(error, FileExistsError)
    assert (target / "tool").read_bytes() == b"somebody's"  # never replaced
    assert sorted(os.listdir(target)) == ["a.py", "b.bin", "tool"]
    # The caller handles the failed file, then continues after it.
    assert backend.make_many(mode, str(tmp_path / "src"), str(target), files, done + 1) == (len(files), None)
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
    done, error = LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    assert done == NAMES.index("big.dat")
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
        assert LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files) == (len(files), None)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "a.py").stat().st_mode) == 0o644


@NEEDS_LINUX_SYSCALLS
def test_a_directory_that_cannot_be_opened_fails_the_first_file(tmp_path: Path) -> None:
    files = make_source(tmp_path / "src")
    done, error = LinuxBackend().make_many(
        LinkMode.HARDLINK, str(tmp_path / "src"), str(tmp_path / "missing"), files, 1
    )
    assert done == 1
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
    assert backend.make_many(LinkMode.HARDLINK, str(tmp_path / "src"), str(tmp_path / "dst"), files) == (5, None)
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
    assert backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(tmp_path / "dst"), files) == (5, None)
    assert backend.sizes == [hints.size for _, hints in files]
    for name in NAMES:
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name


def test_symlink_mode_links_to_absolute_paths(tmp_path: Path) -> None:
    files = make_source(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    relative_source = os.path.relpath(tmp_path / "src")
    done, error = LinuxBackend().make_many(LinkMode.SYMLINK, relative_source, str(tmp_path / "dst"), files[:1])
    assert (done, error) == (1, None)
    assert os.readlink(tmp_path / "dst" / "a.py") == str(tmp_path / "src" / "a.py")


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_stale_size_hint_still_copies_to_end_of_file(tmp_path: Path, backend: LinkBackend) -> None:
    """The cache file grew (or was replaced) after the scan: every byte is still copied."""
    files = make_source(tmp_path / "src")
    stale = [(name, hints._replace(size=100)) for name, hints in files]
    (tmp_path / "dst").mkdir()
    assert backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(tmp_path / "dst"), stale) == (5, None)
    for name in NAMES:
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
def test_a_name_swapped_for_a_symlink_after_the_scan_is_never_followed(tmp_path: Path, backend: LinkBackend) -> None:
    files = make_source(tmp_path / "src")
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours\n")
    secret.chmod(0o600)
    os.unlink(tmp_path / "src" / "a.py")
    os.symlink(secret, tmp_path / "src" / "a.py")  # after the scan: the hints say 0o644 regular file
    source, target = str(tmp_path / "src"), tmp_path / "dst"
    target.mkdir()

    done, error = backend.make_many(LinkMode.COPY, source, str(target), files[:1])
    assert done == 0
    assert isinstance(error, OSError)
    assert error.errno == errno.ELOOP
    assert not os.path.lexists(target / "a.py")

    assert backend.make_many(LinkMode.HARDLINK, source, str(target), files[:1]) == (1, None)
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
    done, error = backend.make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files)
    monkeypatch.undo()
    assert done == NAMES.index("b.bin")
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
    assert backend.make_many(LinkMode.COPY, str(source), str(target), files) == (1, None)
    assert (target / "f").read_bytes() == data
    assert sum(returned) == now
    # The call that returns 0 is made unless the copy ended exactly at the scanned size.
    assert (returned[-1] == 0) == (now != scanned or scanned % 4096 == 0)


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("backend", [LinuxBackend(), PlainLoop()], ids=["fast", "loop"])
@pytest.mark.parametrize(("size", "calls"), [(1, 1), (5000, 1), ((3 << 20) + 1, 1), (0, 1), (4096, 2), (8192, 2)])
def test_one_copy_file_range_when_it_ends_the_file_at_the_scanned_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: LinkBackend, size: int, calls: int
) -> None:
    """A file unchanged since the scan: one call copies it (each asks for the scanned size
    and 1 MiB more), and only at a multiple of the page size, where /proc, /sys and copies
    in pieces could end early, the call that returns 0 confirms the end."""
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    (source / "f").write_bytes(os.urandom(size))
    files = [("f", SourceHints(0o644, size, 0o022))]
    returned = count_copy_range(monkeypatch)
    assert backend.make_many(LinkMode.COPY, str(source), str(target), files) == (1, None)
    assert len(returned) == calls, returned
    assert (target / "f").read_bytes() == (source / "f").read_bytes()


@NEEDS_LINUX_SYSCALLS
def test_a_known_umask_that_takes_bits_away_still_keeps_them(tmp_path: Path) -> None:
    """The fast path creates with the hinted mode only when the umask cuts none of its
    bits; otherwise the general way (create, then fchmod) keeps them."""
    files = [(name, hints._replace(umask=0o077)) for name, hints in make_source(tmp_path / "src")]
    target = tmp_path / "dst"
    target.mkdir()
    previous = os.umask(0o077)
    try:
        assert LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files) == (len(files), None)
    finally:
        os.umask(previous)
    assert {name: stat.S_IMODE((target / name).stat().st_mode) for name in NAMES} == {
        name: hints.mode for name, hints in files
    }
    assert outcome(tmp_path / "src", target) == [
        (name, (tmp_path / "src" / name).read_bytes(), hints.mode, False) for name, hints in files
    ]


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
    assert LinuxBackend().make_many(LinkMode.COPY, str(tmp_path / "src"), str(target), files) == (len(files), None)
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
