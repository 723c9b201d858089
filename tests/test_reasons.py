"""Unit tests for the words of verdicts: ``linkprobe.reasons`` with constructed facts."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkprobe import LinkMode, SideFacts
from linkprobe.reasons import (
    MODE_UNSUPPORTED_ERRNOS,
    PER_FILE_ERRNOS,
    ReasonContext,
    errno_of,
    explain_failure,
    explain_not_probed,
    explain_success,
)
from linkprobe.result import Probe, Status, Verdict


def side(
    probed: str,
    mount_point: str | None,
    fstype: str | None,
    *,
    st_dev: int = 2049,
    mount_id: int | None = None,
    read_only: bool = False,
) -> SideFacts:
    return SideFacts(
        given=probed,
        probed=probed,
        st_dev=st_dev,
        mount_point=mount_point,
        fstype=fstype,
        mount_device="/dev/sda1" if mount_point else None,
        mount_id=mount_id,
        read_only=read_only,
    )


def same_place(fstype: str | None, probed: str = "/data/proj", mount_point: str = "/data") -> ReasonContext:
    """Source and target on one mount of one filesystem."""
    return ReasonContext(
        side("/data/cache", mount_point, fstype, mount_id=40),
        side(probed, mount_point, fstype, mount_id=40),
    )


CACHE = side("/srv/cache", "/srv", "ext4", st_dev=2049, mount_id=30)
PROJECT = side("/home/u/proj", "/home", "ext4", st_dev=2050, mount_id=31)


# ---------------------------------------------------------------------- EXDEV: crossings


def test_hardlink_exdev_across_mounts() -> None:
    reason = explain_failure(LinkMode.HARDLINK, errno.EXDEV, ReasonContext(CACHE, PROJECT))
    assert reason == (
        "different mounts (/srv/cache on /srv vs /home/u/proj on /home): "
        "link() never crosses mount points, even of one filesystem"
    )


def test_hardlink_exdev_across_two_bind_mounts_of_one_filesystem() -> None:
    # Equal st_dev, different mount IDs: a bind mount. Still "different mounts".
    source = side("/srv/cache", "/srv", "ext4", st_dev=7, mount_id=30)
    target = side("/mnt/bind/proj", "/mnt/bind", "ext4", st_dev=7, mount_id=55)
    reason = explain_failure(LinkMode.HARDLINK, errno.EXDEV, ReasonContext(source, target))
    assert reason == (
        "different mounts (/srv/cache on /srv vs /mnt/bind/proj on /mnt/bind): "
        "link() never crosses mount points, even of one filesystem"
    )


def test_clone_exdev_across_bind_mounts_of_one_filesystem() -> None:
    source = side("/srv/cache", "/srv", "btrfs", st_dev=7, mount_id=30)
    target = side("/mnt/bind/proj", "/mnt/bind", "btrfs", st_dev=7, mount_id=55)
    reason = explain_failure(LinkMode.CLONE, errno.EXDEV, ReasonContext(source, target))
    assert reason == (
        "different mounts (/srv/cache on /srv vs /mnt/bind/proj on /mnt/bind): "
        "clones do not cross mount points, even of one filesystem"
    )


def test_clone_exdev_across_filesystems() -> None:
    source = side("/dev/shm/cache", "/dev/shm", "tmpfs", st_dev=23, mount_id=25)
    reason = explain_failure(LinkMode.CLONE, errno.EXDEV, ReasonContext(source, PROJECT))
    assert reason == (
        "different filesystems (/dev/shm/cache on /dev/shm vs /home/u/proj on /home): "
        "clones share blocks only within one filesystem"
    )


def test_exdev_without_mount_ids_compares_mount_points() -> None:
    source = side("/Volumes/A/cache", "/Volumes/A", "apfs", st_dev=1)
    target = side("/Users/u/proj", "/", "apfs", st_dev=2)
    reason = explain_failure(LinkMode.HARDLINK, errno.EXDEV, ReasonContext(source, target))
    assert reason.startswith("different mounts (/Volumes/A/cache on /Volumes/A vs /Users/u/proj on /)")


def test_exdev_unknown_mount_point_is_a_question_mark() -> None:
    source = side("/x/cache", None, None, st_dev=1, mount_id=None)
    target = side("/y/proj", "/y", "ext4", st_dev=2, mount_id=9)
    reason = explain_failure(LinkMode.HARDLINK, errno.EXDEV, ReasonContext(source, target))
    assert reason.startswith("different mounts (/x/cache on ? vs /y/proj on /y)")


def test_hardlink_exdev_between_subvolumes() -> None:
    # One mount (same mount ID), different st_dev: btrfs subvolumes.
    source = side("/data/@cache/x", "/data", "btrfs", st_dev=40, mount_id=60)
    target = side("/data/@home/proj", "/data", "btrfs", st_dev=41, mount_id=60)
    reason = explain_failure(LinkMode.HARDLINK, errno.EXDEV, ReasonContext(source, target))
    assert reason == "different btrfs subvolumes (st_dev 40 vs 41): link() never crosses subvolumes"


def test_clone_exdev_between_subvolumes() -> None:
    source = side("/data/@cache/x", "/data", "btrfs", st_dev=40, mount_id=60)
    target = side("/data/@home/proj", "/data", "btrfs", st_dev=41, mount_id=60)
    reason = explain_failure(LinkMode.CLONE, errno.EXDEV, ReasonContext(source, target))
    assert reason == "different btrfs subvolumes (st_dev 40 vs 41)"


def test_exdev_same_mount_same_device() -> None:
    ctx = same_place("overlay")
    assert explain_failure(LinkMode.HARDLINK, errno.EXDEV, ctx) == "source and target are on different filesystems"


def test_exdev_for_copy_is_not_about_mounts() -> None:
    # copy never crosses anything; an EXDEV there is reported as the plain error.
    reason = explain_failure(LinkMode.COPY, errno.EXDEV, ReasonContext(CACHE, PROJECT))
    assert "mounts" not in reason
    assert reason == f"{os.strerror(errno.EXDEV).lower()} (EXDEV)"


# Regression: ReasonContext.same_mount said True for two unknown mounts (None == None) while
# Probe.same_mount said False, and EXDEV then read "different this filesystem subvolumes".
def test_unknown_mounts_are_not_one_mount() -> None:
    source = side("//server/a/cache", None, None, st_dev=1)
    target = side("//server/b/proj", None, None, st_dev=2)
    ctx = ReasonContext(source, target)
    verdicts = tuple(Verdict(mode, Status.SUPPORTED, "ok") for mode in LinkMode)
    assert ctx.same_mount is False
    assert Probe(source, target, verdicts, None, False).same_mount is False
    assert explain_failure(LinkMode.HARDLINK, errno.EXDEV, ctx) == (
        "different mounts (//server/a/cache on ? vs //server/b/proj on ?): "
        "link() never crosses mount points, even of one filesystem"
    )


# ----------------------------------------------------------------------- per-mode errors


def test_clone_eopnotsupp_on_ext4() -> None:
    assert explain_failure(LinkMode.CLONE, errno.EOPNOTSUPP, same_place("ext4")) == "ext4 has no reflink support"


def test_clone_enotsup_on_ext4() -> None:
    code = getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)
    assert explain_failure(LinkMode.CLONE, code, same_place("ext4")) == "ext4 has no reflink support"


def test_clone_eopnotsupp_between_two_filesystem_types() -> None:
    source = side("/dev/shm/c", "/dev/shm", "tmpfs", mount_id=25)
    target = side("/home/u/p", "/home", "ext4", mount_id=31)
    reason = explain_failure(LinkMode.CLONE, errno.EOPNOTSUPP, ReasonContext(source, target))
    assert reason == "no reflink support between tmpfs and ext4"


@pytest.mark.parametrize("code", [errno.ENOTTY, errno.ENOSYS])
def test_clone_without_ficlone(code: int) -> None:
    assert explain_failure(LinkMode.CLONE, code, same_place("ext2")) == "ext2 does not implement FICLONE"


def test_clone_einval() -> None:
    assert explain_failure(LinkMode.CLONE, errno.EINVAL, same_place("xfs")) == (
        "xfs refused to clone this file (EINVAL)"
    )


def test_hardlink_eperm_other_owner_is_protected_hardlinks() -> None:
    ctx = ReasonContext(CACHE, PROJECT, other_owner=True)
    assert explain_failure(LinkMode.HARDLINK, errno.EPERM, ctx) == (
        "protected_hardlinks: the file belongs to another user"
    )


@pytest.mark.parametrize("fstype", ["fuseblk.exfat", "exfat", "fuse.exfat"])
def test_hardlink_eperm_on_exfat(fstype: str) -> None:
    assert explain_failure(LinkMode.HARDLINK, errno.EPERM, same_place(fstype)) == "exfat has no hard links"


def test_hardlink_eperm_other_owner_wins_over_filesystem() -> None:
    ctx = ReasonContext(CACHE, PROJECT, other_owner=True)
    assert "protected_hardlinks" in explain_failure(LinkMode.HARDLINK, errno.EPERM, ctx)
    ctx = ReasonContext(CACHE, PROJECT, other_owner=False)
    assert explain_failure(LinkMode.HARDLINK, errno.EPERM, ctx) == "ext4 has no hard links"


def test_hardlink_eopnotsupp_on_vfat() -> None:
    assert explain_failure(LinkMode.HARDLINK, errno.EOPNOTSUPP, same_place("vfat")) == "vfat has no hard links"


def test_hardlink_emlink() -> None:
    assert explain_failure(LinkMode.HARDLINK, errno.EMLINK, same_place("ext4")) == (
        "the file already has the maximum number of hard links"
    )


@pytest.mark.parametrize(
    ("fstype", "code", "expected"),
    [
        ("fuseblk.exfat", errno.ENOSYS, "exfat has no symbolic links"),
        ("vfat", errno.EPERM, "vfat has no symbolic links"),
        ("ntfs", errno.EOPNOTSUPP, "ntfs has no symbolic links"),
        (None, errno.ENOSYS, "this filesystem has no symbolic links"),
    ],
)
def test_symlink_not_supported(fstype: str | None, code: int, expected: str) -> None:
    assert explain_failure(LinkMode.SYMLINK, code, same_place(fstype)) == expected


# ------------------------------------------------------------------ errors about a side


@pytest.mark.parametrize("mode", list(LinkMode))
def test_erofs(mode: LinkMode) -> None:
    ctx = same_place("ext4", probed="/mnt/ro/proj", mount_point="/mnt/ro")
    assert explain_failure(mode, errno.EROFS, ctx) == "target is read-only (/mnt/ro is mounted read-only)"


def test_erofs_unknown_mount_names_the_directory() -> None:
    ctx = ReasonContext(CACHE, side("/mnt/ro/proj", None, None))
    assert explain_failure(LinkMode.COPY, errno.EROFS, ctx) == (
        "target is read-only (/mnt/ro/proj is mounted read-only)"
    )


@pytest.mark.parametrize("mode", list(LinkMode))
def test_enospc(mode: LinkMode) -> None:
    ctx = same_place("tmpfs", probed="/mnt/small/proj", mount_point="/mnt/small")
    assert explain_failure(mode, errno.ENOSPC, ctx) == (
        "no space left on target (/mnt/small: no free blocks or inodes)"
    )


def test_edquot() -> None:
    assert explain_failure(LinkMode.COPY, errno.EDQUOT, ReasonContext(CACHE, PROJECT)) == (
        "disk quota exceeded on target (/home/u/proj)"
    )


@pytest.mark.parametrize("mode", list(LinkMode))
def test_eacces(mode: LinkMode) -> None:
    assert explain_failure(mode, errno.EACCES, ReasonContext(CACHE, PROJECT)) == (
        "permission denied: cannot create files in target /home/u/proj"
    )


def test_enametoolong() -> None:
    assert explain_failure(LinkMode.COPY, errno.ENAMETOOLONG, ReasonContext(CACHE, PROJECT)) == (
        "path too long in target /home/u/proj"
    )


@pytest.mark.parametrize(
    ("mode", "code", "name"),
    [
        (LinkMode.COPY, errno.EIO, "EIO"),
        (LinkMode.CLONE, errno.EBUSY, "EBUSY"),
        (LinkMode.HARDLINK, errno.ENOENT, "ENOENT"),
        (LinkMode.SYMLINK, errno.EEXIST, "EEXIST"),
    ],
)
def test_unknown_errno_falls_back_to_strerror_and_name(mode: LinkMode, code: int, name: str) -> None:
    reason = explain_failure(mode, code, ReasonContext(CACHE, PROJECT))
    assert reason == f"{os.strerror(code).lower()} ({name})"


def test_errno_without_a_name_falls_back_to_its_number() -> None:
    code = 4242
    assert code not in errno.errorcode
    reason = explain_failure(LinkMode.COPY, code, ReasonContext(CACHE, PROJECT))
    assert reason == f"{os.strerror(code).lower()} (4242)"


# --------------------------------------------------------------- success and not-probed


def test_explain_success() -> None:
    ctx = same_place("btrfs", probed="/data/proj", mount_point="/data")
    assert explain_success(LinkMode.CLONE, ctx) == "btrfs shares blocks between files (copy-on-write)"
    assert explain_success(LinkMode.HARDLINK, ctx) == "same mount (/data, btrfs)"
    assert explain_success(LinkMode.SYMLINK, ctx) == "btrfs has symbolic links"
    assert explain_success(LinkMode.COPY, ctx) == "files can be created in /data/proj"


def test_explain_success_strips_fuse_prefix_and_handles_unknown_mount() -> None:
    ctx = ReasonContext(CACHE, side("/media/stick/p", None, "fuseblk.exfat"))
    assert explain_success(LinkMode.HARDLINK, ctx) == "same mount (?, exfat)"


def test_explain_not_probed_read_only_source() -> None:
    source = side("/nix/store/x", "/nix/store", "ext4", mount_id=70, read_only=True)
    reason = explain_not_probed(errno.EROFS, ReasonContext(source, PROJECT))
    assert reason == (
        "not probed: source is read-only (/nix/store is mounted read-only), "
        "and the source holds no regular file to link from"
    )


def test_explain_not_probed_other_errno() -> None:
    reason = explain_not_probed(errno.ENOENT, ReasonContext(CACHE, PROJECT))
    assert reason == (
        f"not probed: {os.strerror(errno.ENOENT).lower()}, and the source holds no regular file to link from"
    )


# ---------------------------------------------------------------------------- errno_of


class FakeWindowsError(OSError):
    """An OSError as CPython raises it on Windows: errno EINVAL plus the real winerror."""

    def __init__(self, winerror: int | None, code: int | None = errno.EINVAL) -> None:
        super().__init__(code, "fake Windows error")
        self.winerror = winerror


@pytest.mark.parametrize(
    ("winerror", "expected"),
    [
        (17, errno.EXDEV),  # ERROR_NOT_SAME_DEVICE
        (1142, errno.EMLINK),  # ERROR_TOO_MANY_LINKS
        (1314, errno.EPERM),  # ERROR_PRIVILEGE_NOT_HELD
        (50, errno.EOPNOTSUPP),  # ERROR_NOT_SUPPORTED
        (1, errno.EOPNOTSUPP),  # ERROR_INVALID_FUNCTION
        (5, errno.EACCES),
        (112, errno.ENOSPC),
        (183, errno.EEXIST),
    ],
)
def test_errno_of_reads_winerror(winerror: int, expected: int) -> None:
    assert errno_of(FakeWindowsError(winerror)) == expected


def test_errno_of_unknown_winerror_uses_errno() -> None:
    assert errno_of(FakeWindowsError(99999, errno.EINVAL)) == errno.EINVAL


def test_errno_of_non_int_winerror_uses_errno() -> None:
    assert errno_of(FakeWindowsError(None, errno.EROFS)) == errno.EROFS


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM, errno.ENOSPC, errno.EINVAL])
def test_errno_of_without_winerror(code: int) -> None:
    exc = OSError(code, os.strerror(code))
    assert not hasattr(exc, "winerror") or exc.winerror is None
    assert errno_of(exc) == code


def test_errno_of_without_any_errno_is_eio() -> None:
    assert errno_of(OSError("no errno at all")) == errno.EIO


def test_errno_sets_are_disjoint() -> None:
    assert not (MODE_UNSUPPORTED_ERRNOS & PER_FILE_ERRNOS)
    assert errno.EXDEV in MODE_UNSUPPORTED_ERRNOS
    assert errno.EMLINK in PER_FILE_ERRNOS


# ---------------------------------------------------------------------------- property

FSTYPES = st.sampled_from([None, "ext4", "btrfs", "tmpfs", "fuseblk.exfat", "fuse.sshfs", "fuseblk", "vfat"])
MOUNT_POINTS = st.sampled_from([None, "/", "/srv", "/home", "C:\\", "/mnt/my disk"])


@st.composite
def side_facts(draw: st.DrawFn, probed: str) -> SideFacts:
    return SideFacts(
        given=probed,
        probed=probed,
        st_dev=draw(st.integers(min_value=0, max_value=3)),
        mount_point=draw(MOUNT_POINTS),
        fstype=draw(FSTYPES),
        mount_device=None,
        mount_id=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=3))),
        read_only=draw(st.booleans()),
    )


@given(
    mode=st.sampled_from(list(LinkMode)),
    code=st.sampled_from(sorted(errno.errorcode)),
    source=side_facts("/srv/cache"),
    target=side_facts("/home/u/proj"),
    other_owner=st.booleans(),
)
def test_every_errno_and_mode_gives_one_line(
    mode: LinkMode, code: int, source: SideFacts, target: SideFacts, other_owner: bool
) -> None:
    ctx = ReasonContext(source, target, other_owner=other_owner)
    for reason in (explain_failure(mode, code, ctx), explain_not_probed(code, ctx), explain_success(mode, ctx)):
        assert isinstance(reason, str)
        assert reason.strip()
        assert len(reason.splitlines()) == 1


@given(source=side_facts("/srv/cache"), target=side_facts("/home/u/proj"))
def test_reason_context_and_probe_agree_on_same_mount(source: SideFacts, target: SideFacts) -> None:
    verdicts = tuple(Verdict(mode, Status.SUPPORTED, "ok") for mode in LinkMode)
    assert ReasonContext(source, target).same_mount is Probe(source, target, verdicts, None, False).same_mount
