"""Tests of the scratch-filesystem fixtures themselves (tests/_fs_*.py, _mountinfo.py, _litter.py)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from _fs_base import make_base_dir
from _fs_build import ScratchMounts
from _fs_capability import KINDS, capability_missing, need
from _fs_fill import fill_inodes, fill_space
from _fs_nobody import run_as_nobody
from _litter import SCRATCH_PREFIX, find_litter
from _mountinfo import find_mount, read_mountinfo

pytestmark = pytest.mark.realfs

# kind -> (how to get a fresh dir, fs type expected in /proc/self/mountinfo)
BUILDERS: dict[str, tuple[Callable[[ScratchMounts], Path], str]] = {
    "ext4": (lambda m: m.ext4(), "ext4"),
    "ext4_other": (lambda m: m.ext4_other(), "ext4"),
    "tmpfs": (lambda m: m.tmpfs(), "tmpfs"),
    "btrfs": (lambda m: m.btrfs("a"), "btrfs"),
    "btrfs_root": (lambda m: m.btrfs_root(), "btrfs"),
    "xfs_reflink": (lambda m: m.xfs(reflink=True), "xfs"),
    "xfs_noreflink": (lambda m: m.xfs(reflink=False), "xfs"),
    # Plain "fuseblk": mount.exfat-fuse sets no subtype (no "fuseblk.exfat").
    "exfat": (lambda m: m.exfat(), "fuseblk"),
    "tiny_tmpfs": (lambda m: m.tiny_tmpfs(), "tmpfs"),
    "small_ext4": (lambda m: m.small_ext4(), "ext4"),
    "overlay": (lambda m: m.overlay(), "overlay"),
    "bind": (lambda m: m.bind(m.ext4()), "ext4"),
}


def _psutil_fstype(mountpoint: str) -> str:
    for part in psutil.disk_partitions(all=True):
        if part.mountpoint == mountpoint:
            return part.fstype
    raise LookupError(mountpoint)


def _errno_of(action: Callable[[], object]) -> int:
    """Run *action*, which must fail with OSError, and return its errno."""
    try:
        action()
    except OSError as exc:
        return exc.errno or 0  # 0 never matches an expected errno
    pytest.fail("expected an OSError")


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_each_kind_mounts_with_expected_type(mounts: ScratchMounts, kind: str) -> None:
    build, expected = BUILDERS[kind]
    path = build(mounts)
    assert path.is_dir()
    assert list(path.iterdir()) == []
    entry = find_mount(path)
    assert entry.fstype == expected
    assert _psutil_fstype(entry.mountpoint) == expected
    assert Path(entry.mountpoint) in mounts.roots()
    (path / "hello.txt").write_text("hello")
    assert (path / "hello.txt").read_text() == "hello"


def test_every_call_returns_a_new_empty_dir(mounts: ScratchMounts) -> None:
    first, second = mounts.ext4(), mounts.ext4()
    assert first != second
    assert first.stat().st_dev == second.stat().st_dev
    assert list(second.iterdir()) == []


def test_ext4_and_ext4_other_are_distinct(mounts: ScratchMounts) -> None:
    assert mounts.ext4().stat().st_dev != mounts.ext4_other().stat().st_dev


def test_btrfs_subvolumes(mounts: ScratchMounts) -> None:
    a1, a2, b, top = mounts.btrfs("a"), mounts.btrfs("a"), mounts.btrfs("b"), mounts.btrfs_root()
    assert a1.stat().st_dev == a2.stat().st_dev
    assert len({a1.stat().st_dev, b.stat().st_dev, top.stat().st_dev}) == 3
    # All three live on one filesystem, which is what makes cloning possible.
    assert find_mount(a1).mountpoint == find_mount(b).mountpoint == find_mount(top).mountpoint

    source = a1 / "data"
    source.write_bytes(b"x" * 100_000)
    subprocess.run(["cp", "--reflink=always", source, b / "clone"], check=True)
    assert (b / "clone").read_bytes() == source.read_bytes()

    assert _errno_of(lambda: os.link(source, b / "link")) == errno.EXDEV


def test_btrfs_rejects_bad_subvolume_names(mounts: ScratchMounts) -> None:
    for name in ("", "../x", "a/b", "d-0001", ".hidden"):
        with pytest.raises(ValueError, match="bad subvolume"):
            mounts.btrfs(name)


@pytest.mark.parametrize("reflink", [True, False])
def test_xfs_reflink_setting(mounts: ScratchMounts, reflink: bool) -> None:
    path = mounts.xfs(reflink=reflink)
    (path / "data").write_bytes(b"y" * 100_000)
    result = subprocess.run(
        ["cp", "--reflink=always", path / "data", path / "clone"], capture_output=True, text=True, check=False
    )
    assert (result.returncode == 0) is reflink, result.stderr


def test_xfs_settings_are_separate_filesystems(mounts: ScratchMounts) -> None:
    assert mounts.xfs(reflink=True).stat().st_dev != mounts.xfs(reflink=False).stat().st_dev


def test_bind_mount_same_st_dev_but_no_hardlink(mounts: ScratchMounts) -> None:
    source = mounts.ext4()
    (source / "file").write_text("data")
    bound = mounts.bind(source)
    assert bound.stat().st_dev == source.stat().st_dev
    assert (bound / "file").read_text() == "data"
    # Same filesystem, different mount: the kernel still refuses (EXDEV).
    assert _errno_of(lambda: os.link(source / "file", bound / "link")) == errno.EXDEV


def test_ro_bind_is_read_only(mounts: ScratchMounts) -> None:
    source = mounts.ext4()
    (source / "file").write_text("data")
    ro = mounts.ro_bind(source)
    assert ro.stat().st_dev == source.stat().st_dev
    assert (ro / "file").read_text() == "data"
    assert _errno_of(lambda: (ro / "new").write_text("x")) == errno.EROFS
    assert _errno_of(lambda: (ro / "file").write_text("x")) == errno.EROFS
    assert _errno_of((ro / "dir").mkdir) == errno.EROFS
    (source / "still-writable").write_text("ok")  # the source stays writable


def test_exfat_has_no_links(mounts: ScratchMounts) -> None:
    path = mounts.exfat()
    (path / "file").write_text("data")
    assert _errno_of(lambda: os.link(path / "file", path / "link")) == errno.EPERM
    # Observed on Debian 12 exfat-fuse 1.3.0: ENOSYS (the FUSE driver has no
    # symlink handler).  Accept EPERM/EOPNOTSUPP too in case a newer driver
    # answers more politely; what matters is that it fails.
    assert _errno_of(lambda: os.symlink("file", path / "symlink")) in {errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP}


def test_overlay_merges(mounts: ScratchMounts) -> None:
    path = mounts.overlay()
    (path / "file").write_text("data")
    assert (path / "file").read_text() == "data"
    assert find_mount(path).source == "linkprobe-overlay"


def test_tiny_tmpfs_fill_inodes(mounts: ScratchMounts) -> None:
    path = mounts.tiny_tmpfs(nr_inodes=32)
    created = fill_inodes(path)
    assert 0 < created < 32
    assert _errno_of((path / "one-more").touch) == errno.ENOSPC
    assert _errno_of((path / "one-more-dir").mkdir) == errno.ENOSPC
    assert os.statvfs(path).f_ffree == 0


def test_tiny_tmpfs_fill_space(mounts: ScratchMounts) -> None:
    path = mounts.tiny_tmpfs(size="128k")
    written = fill_space(path)
    assert 0 < written <= 128 * 1024
    assert _errno_of(lambda: (path / "more").write_bytes(b"z" * 4096)) == errno.ENOSPC
    assert os.statvfs(path).f_bavail == 0


def test_tiny_tmpfs_is_new_per_call(mounts: ScratchMounts) -> None:
    first, second = mounts.tiny_tmpfs(), mounts.tiny_tmpfs()
    assert first.stat().st_dev != second.stat().st_dev
    mountpoint = Path(find_mount(first).mountpoint)
    assert mounts.release(first) == []
    assert mountpoint not in mounts.roots()
    assert not mountpoint.exists()
    assert second.is_dir()


def test_small_ext4_is_new_per_call_and_fillable(mounts: ScratchMounts) -> None:
    first, second = mounts.small_ext4(size_mb=4), mounts.small_ext4(size_mb=4)
    assert first.stat().st_dev != second.stat().st_dev
    assert fill_space(first) > 0
    assert _errno_of(lambda: (first / "more").write_bytes(b"z" * 65536)) == errno.ENOSPC
    mounts.release(first)


def test_fill_refuses_big_filesystems(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing"):
        fill_space(tmp_path, max_bytes=1024)
    with pytest.raises(ValueError, match="refusing"):
        fill_inodes(tmp_path, max_files=10)


def test_find_litter(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / f"{SCRATCH_PREFIX}tmp-1").write_text("")
    (tmp_path / f"{SCRATCH_PREFIX}dir").mkdir()
    (tmp_path / f"{SCRATCH_PREFIX}dir" / "inner").write_text("")
    found = sorted(find_litter([tmp_path]))
    assert found == [tmp_path / f"{SCRATCH_PREFIX}dir", tmp_path / "ok" / f"{SCRATCH_PREFIX}tmp-1"]
    # Clean up, or the autouse no_scratch_litter fixture fails this test.
    (tmp_path / "ok" / f"{SCRATCH_PREFIX}tmp-1").unlink()
    (tmp_path / f"{SCRATCH_PREFIX}dir" / "inner").unlink()
    (tmp_path / f"{SCRATCH_PREFIX}dir").rmdir()


def test_capability_missing() -> None:
    for kind in KINDS:
        reason = capability_missing(kind)
        assert reason is None or isinstance(reason, str)
    with pytest.raises(ValueError, match="unknown"):
        capability_missing("nfs")


def test_run_as_nobody(mounts: ScratchMounts) -> None:
    result = run_as_nobody(["id", "-u"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "65534"
    path = mounts.tmpfs()  # root-owned 0755: nobody may look but not write
    assert run_as_nobody(["ls", path]).returncode == 0
    assert run_as_nobody(["touch", path / "x"]).returncode != 0


def _mounted_under(base: Path) -> list[str]:
    return [e.mountpoint for e in read_mountinfo() if e.mountpoint.startswith(f"{base}/")]


def _loops_under(base: Path) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(base) in line]


def test_close_leaves_nothing_behind() -> None:
    for kind in ("ext4", "btrfs", "xfs", "exfat", "overlay", "tmpfs"):
        need(kind)
    scratch = ScratchMounts(make_base_dir(), remove_base=True, require=need)
    base = scratch.base
    try:
        ext4 = scratch.ext4()
        scratch.btrfs("a")
        scratch.btrfs("b")
        scratch.xfs(reflink=True)
        scratch.exfat()
        scratch.overlay()
        scratch.tiny_tmpfs()
        scratch.small_ext4()
        scratch.bind(ext4)
        scratch.ro_bind(scratch.tmpfs())
        # A mount the test itself stacked inside ours must not block teardown.
        inner = scratch.btrfs_root()
        subprocess.run(["mount", "-t", "tmpfs", "inner", inner], check=True)
        # ...nor one of ours that somebody already unmounted.
        subprocess.run(["umount", find_mount(scratch.small_ext4()).mountpoint], check=True)
        assert len(_mounted_under(base)) >= 10
        assert _loops_under(base)
    finally:
        problems = scratch.close()
    assert problems == []
    assert _mounted_under(base) == []
    assert _loops_under(base) == []
    assert not base.exists()
    assert scratch.close() == []  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scratch.ext4()
