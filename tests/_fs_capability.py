"""Can this machine build a given scratch filesystem kind, and what a test does when it cannot.

Never mounts anything: it reads /proc, looks for the tools and checks the capability bits.
This module does not import pytest at module level so it can be used from plain scripts;
only ``need()`` imports it, lazily.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _commands import which

__all__ = ["KINDS", "FilesystemUnavailableError", "capability_missing", "need", "require_or_raise"]

#: Filesystem kinds understood by ``capability_missing`` ("mount" means the
#: generic ability to mount anything, which bind mounts need).
KINDS = ("mount", "tmpfs", "ext4", "btrfs", "xfs", "exfat", "overlay")
_CAP_SYS_ADMIN = 21


class FilesystemUnavailableError(RuntimeError):
    """This machine cannot build the requested filesystem kind."""


def _filesystem_available(fstype: str) -> bool:
    """True if the kernel knows *fstype* or can autoload it as a module."""
    try:
        with open("/proc/filesystems", encoding="utf-8") as f:
            known = {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return False
    if fstype in known:
        return True
    # /proc/filesystems only lists loaded modules; mount(2) autoloads others.
    module = {"fuseblk": "fuse", "overlay": "overlayfs"}.get(fstype, fstype)
    return Path("/lib/modules", os.uname().release, "kernel", "fs", module).is_dir()


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return False


_KIND_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    # kind: (tools, kernel filesystem types, needs loop devices)
    "mount": ((), (), False),
    "tmpfs": ((), ("tmpfs",), False),
    "ext4": (("mkfs.ext4", "losetup"), ("ext4",), True),
    "btrfs": (("mkfs.btrfs", "btrfs", "losetup"), ("btrfs",), True),
    "xfs": (("mkfs.xfs", "losetup"), ("xfs",), True),
    "exfat": (("mkfs.exfat", "mount.exfat-fuse", "losetup"), ("fuseblk",), True),
    "overlay": ((), ("overlay",), False),
}


def capability_missing(kind: str) -> str | None:
    """Why *kind* cannot be built here, or None if it can.  Never mounts."""
    if kind not in _KIND_NEEDS:
        raise ValueError(f"unknown filesystem kind {kind!r}; expected one of {KINDS}")
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root to mount filesystems"
    if not _has_cap_sys_admin():
        return "needs CAP_SYS_ADMIN to mount filesystems (unprivileged container?)"
    tools, fstypes, needs_loop = _KIND_NEEDS[kind]
    for tool in ("mount", "umount", *tools):
        if which(tool) is None:
            return f"{tool} not found (install its package)"
    for fstype in fstypes:
        if not _filesystem_available(fstype):
            return f"kernel does not support {fstype} (not in /proc/filesystems)"
    if needs_loop and not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (loop devices unavailable)"
    if kind == "exfat" and not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (FUSE unavailable)"
    return None


def require_or_raise(kind: str) -> None:
    """Default ``require`` hook of ScratchMounts: raise FilesystemUnavailableError."""
    reason = capability_missing(kind)
    if reason is not None:
        raise FilesystemUnavailableError(f"{kind}: {reason}")


def need(kind: str) -> None:
    """pytest-aware ``require`` hook: skip the test if *kind* is unavailable.

    With LINKPROBE_REQUIRE_REAL_FS=1 (set in CI) the test fails instead, so CI
    cannot silently skip the real-filesystem tests.
    """
    import pytest  # lazy: keeps this module usable without pytest

    reason = capability_missing(kind)
    if reason is None:
        return
    if os.environ.get("LINKPROBE_REQUIRE_REAL_FS") == "1":
        pytest.fail(f"LINKPROBE_REQUIRE_REAL_FS=1 but {kind} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{kind} unavailable: {reason}")
