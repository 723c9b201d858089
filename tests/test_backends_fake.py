"""Backends with fakes at the OS-call boundary (macOS clonefile, Windows DeviceIoControl),
and the Linux backend on tmp_path. Runs on Linux; no mounts, no root-only operations."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _marks import NEEDS_LINUX_SYSCALLS

from linkprobe import LinkMode, SideFacts
from linkprobe import linux as linux_module
from linkprobe.api import CREATE_FLAGS, LinkBackend
from linkprobe.backends import backend_for, default_backend
from linkprobe.generic import GenericBackend
from linkprobe.linux import LinuxBackend
from linkprobe.macos import CLONE_NOOWNERCOPY, MacOSBackend
from linkprobe.reasons import ReasonContext, errno_of, explain_failure
from linkprobe.windows import FSCTL_DUPLICATE_EXTENTS_TO_FILE, DuplicateExtentsData, WindowsBackend


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would strip group/other bits from anything open() creates."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def clean_ctypes_errno() -> Iterator[None]:
    ctypes.set_errno(0)
    try:
        yield
    finally:
        ctypes.set_errno(0)


def write(path: Path, data: bytes, mode: int = 0o644) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


# ------------------------------------------------------------------------- macOS (fake)


def test_macos_clone_calls_clonefile_with_fsencoded_paths(tmp_path: Path, clean_ctypes_errno: None) -> None:
    source = str(tmp_path / "caf\udce9 src")  # an undecodable byte, as os.fsdecode gives it
    target = str(tmp_path / "ziel \u00fc")
    calls: list[tuple[bytes, bytes, int]] = []

    def clonefile(src: bytes, dst: bytes, flags: int) -> int:
        calls.append((src, dst, flags))
        # clonefile(2) creates the target itself and fails with EEXIST if it exists:
        # the backend must not have created it first.
        assert not os.path.lexists(dst)
        return 0

    MacOSBackend(clonefile=clonefile).clone(source, target)
    assert calls == [(os.fsencode(source), os.fsencode(target), CLONE_NOOWNERCOPY)]
    assert calls[0][0].endswith(b"caf\xe9 src")
    assert calls[0][1].endswith("ziel \u00fc".encode())
    assert CLONE_NOOWNERCOPY == 0x0002


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOTSUP, errno.EEXIST])
def test_macos_clone_failure_raises_errno_from_ctypes(code: int, clean_ctypes_errno: None) -> None:
    # ctypes.set_errno/get_errno read and write ctypes' private, thread-local copy of errno
    # (the one a use_errno=True foreign call swaps in), so this fake is exact: nothing runs
    # between the fake's set_errno and the backend's get_errno.
    def clonefile(src: bytes, dst: bytes, flags: int) -> int:
        ctypes.set_errno(code)
        return -1

    with pytest.raises(OSError, match=os.strerror(code)) as info:
        MacOSBackend(clonefile=clonefile).clone("/cache/a", "/proj/a")
    exc = info.value
    assert exc.errno == code
    assert exc.strerror == os.strerror(code)
    assert exc.filename == "/cache/a"
    assert exc.filename2 == "/proj/a"
    assert errno_of(exc) == code


def test_macos_clone_errno_is_read_after_the_call(clean_ctypes_errno: None) -> None:
    ctypes.set_errno(errno.EPERM)  # stale from before the call: must not be reported

    def clonefile(src: bytes, dst: bytes, flags: int) -> int:
        ctypes.set_errno(errno.EXDEV)
        return -1

    with pytest.raises(OSError, match=os.strerror(errno.EXDEV)) as info:
        MacOSBackend(clonefile=clonefile).clone("/a", "/b")
    assert info.value.errno == errno.EXDEV


@NEEDS_LINUX_SYSCALLS
def test_macos_backend_without_clonefile_reports_enotsup(tmp_path: Path) -> None:
    # On Linux libc has no clonefile(): the lazily loaded call reports ENOTSUP and creates nothing.
    source = write(tmp_path / "src", b"data")
    target = str(tmp_path / "dst")
    backend = backend_for("darwin")
    with pytest.raises(OSError, match="clonefile") as info:
        backend.clone(source, target)
    assert info.value.errno == errno.ENOTSUP
    assert not os.path.lexists(target)


# ----------------------------------------------------------------------- Windows (fake)

HANDLE_BASE = 1000


class FakeWindowsError(OSError):
    """What CPython raises on Windows: errno (mostly EINVAL) plus the Win32 ``winerror``."""

    def __init__(self, code: int, message: str, *, winerror: int) -> None:
        super().__init__(code, message)
        self.winerror = winerror


class FakeDeviceIoControl:
    """Records every call and what the target looked like at that moment."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, int]] = []

    def handle_of(self, fd: int) -> int:
        return HANDLE_BASE + fd

    def __call__(self, handle: int, code: int, data: DuplicateExtentsData) -> None:
        target_fd = handle - HANDLE_BASE
        self.calls.append(
            {
                "code": code,
                "source_handle": int(data.FileHandle),
                "target_handle": handle,
                "source_offset": int(data.SourceFileOffset),
                "target_offset": int(data.TargetFileOffset),
                "byte_count": int(data.ByteCount),
                "target_size": os.fstat(target_fd).st_size,
            }
        )
        if self.error is not None:
            raise self.error


def windows_backend(fake: FakeDeviceIoControl) -> WindowsBackend:
    return WindowsBackend(duplicate_extents=fake, handle_of=fake.handle_of)


@pytest.mark.parametrize(
    ("size", "byte_count"),
    [(1, 65536), (4096, 65536), (65536, 65536), (65537, 131072), (100_000, 131072), (3 * 65536 + 5, 4 * 65536)],
)
def test_windows_clone_presizes_and_rounds_to_cluster(tmp_path: Path, size: int, byte_count: int) -> None:
    source = write(tmp_path / "src", os.urandom(size), 0o755)
    target = str(tmp_path / "dst")
    fake = FakeDeviceIoControl()
    windows_backend(fake).clone(source, target)
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["code"] == FSCTL_DUPLICATE_EXTENTS_TO_FILE == 0x00098344
    assert call["byte_count"] == byte_count
    assert call["source_offset"] == 0
    assert call["target_offset"] == 0
    assert call["target_size"] == size  # presized before the FSCTL
    assert call["source_handle"] != call["target_handle"]
    assert call["source_handle"] >= HANDLE_BASE
    assert os.path.getsize(target) == size
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


def test_windows_clone_of_empty_file_makes_no_fsctl(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"")
    target = str(tmp_path / "dst")
    fake = FakeDeviceIoControl()
    windows_backend(fake).clone(source, target)
    assert fake.calls == []
    assert os.path.getsize(target) == 0


def test_windows_clone_failure_removes_target_and_maps_winerror(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"x" * 5000)
    target = str(tmp_path / "dst")
    error = FakeWindowsError(errno.EINVAL, "Incorrect function", winerror=1)  # ERROR_INVALID_FUNCTION
    fake = FakeDeviceIoControl(error)
    with pytest.raises(FakeWindowsError) as info:
        windows_backend(fake).clone(source, target)
    assert info.value is error
    assert len(fake.calls) == 1
    assert fake.calls[0]["target_size"] == 5000  # it existed during the call ...
    assert not os.path.lexists(target)  # ... and is gone afterwards
    assert os.path.getsize(source) == 5000
    assert errno_of(info.value) == errno.EOPNOTSUPP
    ntfs = SideFacts("C:\\p", "C:\\p", 1, "C:\\", "NTFS")
    ctx = ReasonContext(ntfs, ntfs)
    assert explain_failure(LinkMode.CLONE, errno_of(info.value), ctx) == "NTFS has no reflink support"


def test_windows_clone_refuses_existing_target(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"new")
    target = write(tmp_path / "dst", b"old")
    fake = FakeDeviceIoControl()
    with pytest.raises(FileExistsError):
        windows_backend(fake).clone(source, target)
    assert fake.calls == []
    assert Path(target).read_bytes() == b"old"


# ------------------------------------------------------------------ generic and choice


def test_generic_clone_is_eopnotsupp(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"data")
    target = str(tmp_path / "dst")
    with pytest.raises(OSError, match="no clone call known") as info:
        GenericBackend().clone(source, target)
    assert info.value.errno == errno.EOPNOTSUPP
    assert info.value.filename == source
    assert info.value.filename2 == target
    assert not os.path.lexists(target)


def test_generic_backend_links_and_copies_with_posix_calls(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"data", 0o640)
    backend = GenericBackend()
    backend.hardlink(source, str(tmp_path / "hard"))
    backend.symlink(source, str(tmp_path / "soft"))
    backend.copy(source, str(tmp_path / "copy"))
    assert os.path.samefile(source, tmp_path / "hard")
    assert os.readlink(tmp_path / "soft") == source
    assert (tmp_path / "copy").read_bytes() == b"data"
    assert not os.path.samefile(source, tmp_path / "copy")


@pytest.mark.parametrize(
    ("platform", "cls", "name"),
    [
        ("linux", LinuxBackend, "linux"),
        ("darwin", MacOSBackend, "macos"),
        ("win32", WindowsBackend, "windows"),
        ("freebsd13", GenericBackend, "generic"),
        ("cygwin", GenericBackend, "generic"),
    ],
)
def test_backend_for(platform: str, cls: type[LinkBackend], name: str) -> None:
    backend = backend_for(platform)
    assert type(backend) is cls
    assert backend.name == name


def test_default_backend_is_made_once() -> None:
    assert default_backend() is default_backend()
    if sys.platform == "linux":
        assert type(default_backend()) is LinuxBackend


def test_every_backend_module_imports_in_a_fresh_interpreter() -> None:
    code = (
        "import linkprobe.api, linkprobe.backends, linkprobe.generic, linkprobe.linux, "
        "linkprobe.macos, linkprobe.windows\n"
        "from linkprobe.backends import backend_for\n"
        "print(sorted(type(backend_for(p)).__name__ for p in ('linux', 'darwin', 'win32', 'sunos5')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['GenericBackend', 'LinuxBackend', 'MacOSBackend', 'WindowsBackend']"


# -------------------------------------------------------------------- Linux on tmp_path


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("mode", [0o755, 0o644, 0o700, 0o640])
def test_linux_copy_keeps_bytes_and_permission_bits(tmp_path: Path, strict_umask: None, mode: int) -> None:
    data = os.urandom(70_000)
    source = write(tmp_path / "src", data, mode)
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert Path(target).read_bytes() == data
    assert stat.S_IMODE(os.stat(target).st_mode) == mode


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_keeps_bits_with_zero_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        source = write(tmp_path / "src", b"x", 0o775)
        LinuxBackend().copy(source, str(tmp_path / "dst"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == 0o775


@NEEDS_LINUX_SYSCALLS
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0])
def test_linux_backend_reads_the_umask_without_changing_it(umask: int) -> None:
    previous = os.umask(umask)
    try:
        assert LinuxBackend().umask() == umask
        assert os.umask(umask) == umask  # still set as it was
    finally:
        os.umask(previous)


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_keeps_bits_after_the_process_changes_its_umask(tmp_path: Path) -> None:
    backend = LinuxBackend()
    source = write(tmp_path / "src", b"#!/bin/sh\n", 0o755)
    previous = os.umask(0)
    try:
        backend.copy(source, str(tmp_path / "first"))
        os.umask(0o077)
        backend.copy(source, str(tmp_path / "second"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "first").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "second").st_mode) == 0o755


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_drops_setuid(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"#!/bin/sh\n", 0o4755)
    if not os.stat(source).st_mode & stat.S_ISUID:
        pytest.skip("this filesystem does not keep the setuid bit")
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_of_empty_file(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"")
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert Path(target).read_bytes() == b""


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_to_existing_name_leaves_it_untouched(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"new contents")
    target = write(tmp_path / "dst", b"old", 0o600)
    with pytest.raises(FileExistsError):
        LinuxBackend().copy(source, target)
    assert Path(target).read_bytes() == b"old"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@NEEDS_LINUX_SYSCALLS
def test_linux_copy_does_not_follow_a_symlink_at_the_target(tmp_path: Path) -> None:
    source = write(tmp_path / "src", b"new contents")
    victim = write(tmp_path / "victim", b"precious")
    target = tmp_path / "dst"
    target.symlink_to(victim)
    with pytest.raises(FileExistsError):
        LinuxBackend().copy(source, str(target))
    assert Path(victim).read_bytes() == b"precious"
    assert target.is_symlink()


@NEEDS_LINUX_SYSCALLS
def test_linux_clone_succeeds_or_leaves_nothing(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    source = write(tmp_path / "src", data, 0o755)
    target = str(tmp_path / "dst")
    failure: OSError | None = None
    try:
        LinuxBackend().clone(source, target)
    except OSError as exc:
        failure = exc
    if failure is not None:
        # ext4, tmpfs, ...: no FICLONE. The half-made target must be gone.
        assert failure.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS)
        assert not os.path.lexists(target)
    else:
        assert Path(target).read_bytes() == data
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


@NEEDS_LINUX_SYSCALLS
def test_create_scratch(tmp_path: Path) -> None:
    name = str(tmp_path / ".linkprobe-test-src")
    identity = LinuxBackend().create_scratch(name)
    info = os.lstat(name)
    assert identity == (info.st_dev, info.st_ino)
    assert Path(name).read_bytes() == b"linkprobe\n"
    assert stat.S_ISREG(info.st_mode)
    os.unlink(name)


@NEEDS_LINUX_SYSCALLS
def test_create_scratch_refuses_a_planted_symlink(tmp_path: Path) -> None:
    victim = write(tmp_path / "victim", b"precious", 0o644)
    name = tmp_path / ".linkprobe-planted"
    name.symlink_to(victim)
    with pytest.raises(FileExistsError):
        LinuxBackend().create_scratch(str(name))
    assert Path(victim).read_bytes() == b"precious"
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    assert name.is_symlink()
    name.unlink()


@NEEDS_LINUX_SYSCALLS
def test_create_scratch_refuses_a_dangling_planted_symlink(tmp_path: Path) -> None:
    would_be_created = tmp_path / "elsewhere"
    name = tmp_path / ".linkprobe-planted"
    name.symlink_to(would_be_created)
    with pytest.raises(FileExistsError):
        LinuxBackend().create_scratch(str(name))
    assert not os.path.lexists(would_be_created)
    name.unlink()


def test_create_flags_are_exclusive_and_nofollow() -> None:
    assert CREATE_FLAGS & os.O_EXCL
    assert CREATE_FLAGS & os.O_CREAT
    if hasattr(os, "O_NOFOLLOW"):
        assert CREATE_FLAGS & os.O_NOFOLLOW


@NEEDS_LINUX_SYSCALLS
def test_remove_if_same_refuses_a_replaced_name(tmp_path: Path) -> None:
    backend = LinuxBackend()
    name = str(tmp_path / ".linkprobe-x")
    identity = backend.create_scratch(name)
    # Someone else's file takes the name. It is created before ours goes away, so it
    # cannot reuse our inode number.
    theirs = write(tmp_path / "theirs", b"not yours")
    os.replace(theirs, name)
    assert backend.identity(name) != identity
    assert backend.remove_if_same(name, identity) is False
    assert Path(name).read_bytes() == b"not yours"
    os.unlink(name)


@NEEDS_LINUX_SYSCALLS
def test_remove_if_same_removes_its_own_file(tmp_path: Path) -> None:
    backend = LinuxBackend()
    name = str(tmp_path / ".linkprobe-y")
    identity = backend.create_scratch(name)
    assert backend.remove_if_same(name, identity) is True
    assert not os.path.lexists(name)
    assert backend.remove_if_same(name, identity) is False  # already gone
    assert backend.identity(name) is None


@NEEDS_LINUX_SYSCALLS
def test_remove_if_same_on_a_symlink_removes_the_link_only(tmp_path: Path) -> None:
    backend = LinuxBackend()
    victim = write(tmp_path / "victim", b"keep")
    name = str(tmp_path / ".linkprobe-link")
    backend.symlink(victim, name)
    identity = backend.identity(name)
    assert identity == (os.lstat(name).st_dev, os.lstat(name).st_ino)
    assert identity != (os.stat(victim).st_dev, os.stat(victim).st_ino)
    assert backend.remove_if_same(name, identity) is True
    assert not os.path.lexists(name)
    assert Path(victim).read_bytes() == b"keep"


@NEEDS_LINUX_SYSCALLS
def test_remove_if_same_without_identity_removes(tmp_path: Path) -> None:
    name = write(tmp_path / ".linkprobe-z", b"")
    assert LinuxBackend().remove_if_same(name, None) is True
    assert not os.path.lexists(name)


# ------------------------------------------------------------- Linux copy fallbacks

BIG = 3 * 1024 * 1024 + 12345  # not a multiple of any chunk size


class Counter:
    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
def big_source(tmp_path: Path) -> tuple[str, bytes]:
    data = os.urandom(BIG)
    return write(tmp_path / "big", data, 0o755), data


@NEEDS_LINUX_SYSCALLS
def test_copy_falls_back_to_read_write(
    tmp_path: Path, big_source: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, data = big_source
    copy_range, sendfile = Counter(), Counter()

    def no_copy_range(src: int, dst: int, count: int, *args: object) -> int:
        copy_range.calls += 1
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def no_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sendfile.calls += 1
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(linux_module, "_copy_range", no_copy_range)
    monkeypatch.setattr(os, "sendfile", no_sendfile)
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert (copy_range.calls, sendfile.calls) == (1, 1)
    assert Path(target).read_bytes() == data
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


@NEEDS_LINUX_SYSCALLS
def test_copy_falls_back_to_sendfile(
    tmp_path: Path, big_source: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, data = big_source
    real_sendfile = os.sendfile
    sendfile = Counter()

    def no_copy_range(src: int, dst: int, count: int, *args: object) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sendfile.calls += 1
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(linux_module, "_copy_range", no_copy_range)
    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert sendfile.calls >= 2  # at least one chunk plus the 0 at end of file
    assert Path(target).read_bytes() == data


@NEEDS_LINUX_SYSCALLS
def test_copy_without_copy_file_range_attribute(
    tmp_path: Path, big_source: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, data = big_source
    monkeypatch.setattr(linux_module, "_copy_range", None)  # an OS without it
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert Path(target).read_bytes() == data


@NEEDS_LINUX_SYSCALLS
def test_copy_range_reporting_zero_at_start_falls_back(
    tmp_path: Path, big_source: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some FUSE filesystems report 0 from copy_file_range without copying anything.
    source, data = big_source
    monkeypatch.setattr(linux_module, "_copy_range", lambda *args: 0)
    target = str(tmp_path / "dst")
    LinuxBackend().copy(source, target)
    assert Path(target).read_bytes() == data


@NEEDS_LINUX_SYSCALLS
def test_copy_failing_midway_removes_the_partial_target(
    tmp_path: Path, big_source: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = big_source
    real = getattr(os, "copy_file_range", None)
    if real is None:
        pytest.skip("no os.copy_file_range")
    calls = Counter()

    def fails_second_time(src: int, dst: int, count: int, *args: object) -> int:
        calls.calls += 1
        if calls.calls == 1:
            return int(real(src, dst, min(count, 1 << 20)))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(linux_module, "_copy_range", fails_second_time)
    target = str(tmp_path / "dst")
    with pytest.raises(OSError, match=os.strerror(errno.EIO)) as info:
        LinuxBackend().copy(source, target)
    assert info.value.errno == errno.EIO
    assert not os.path.lexists(target)


def test_copy_range_unusable_errnos() -> None:
    unusable = linux_module._COPY_RANGE_UNUSABLE
    assert {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL} <= unusable
    assert errno.EIO not in unusable
    assert errno.ENOSPC not in unusable
