"""The scratch-filesystem test helpers under their old single name; new code imports the job modules.

Each job has its own module:

* ``_fs_build``: ``ScratchMounts`` (the filesystems themselves) and ``fuse_daemon_pid``.
* ``_fs_capability``: ``KINDS``, ``capability_missing``, ``need``, ``require_or_raise``.
* ``_fs_base``: base directories (``make_base_dir``, ``scratch_parent``) and ``sweep_stale``.
* ``_fs_teardown``: unmounting, detaching loop devices, deleting without crossing mounts.
* ``_fs_fill``: ``fill_inodes``, ``fill_space``.
* ``_fs_nobody``: ``run_as_nobody``.
* ``_litter``: ``SCRATCH_PREFIX``, ``find_litter``.
* ``_mountinfo``: ``MountInfo``, ``read_mountinfo``, ``find_mount``.
* ``_commands``: ``run``, ``which``, ``CommandError``.

This module only re-exports the names it has always exported, so that tests written against it
keep working; it is to be removed once nothing imports it.
"""

from __future__ import annotations

from _commands import CommandError, run, which
from _fs_base import BASE_PREFIX, make_base_dir, scratch_parent, sweep_stale
from _fs_build import BTRFS_MIB, EXFAT_MIB, EXT4_MIB, MIB, XFS_MIB, ScratchMounts, fuse_daemon_pid
from _fs_capability import KINDS, FilesystemUnavailableError, capability_missing, need, require_or_raise
from _fs_fill import fill_inodes, fill_space
from _fs_nobody import run_as_nobody
from _fs_teardown import loop_devices_for
from _litter import SCRATCH_PREFIX, find_litter
from _mountinfo import MountInfo, find_mount, read_mountinfo

__all__ = [
    "BASE_PREFIX",
    "BTRFS_MIB",
    "EXFAT_MIB",
    "EXT4_MIB",
    "KINDS",
    "MIB",
    "SCRATCH_PREFIX",
    "XFS_MIB",
    "CommandError",
    "FilesystemUnavailableError",
    "MountInfo",
    "ScratchMounts",
    "capability_missing",
    "fill_inodes",
    "fill_space",
    "find_litter",
    "find_mount",
    "fuse_daemon_pid",
    "loop_devices_for",
    "make_base_dir",
    "need",
    "read_mountinfo",
    "require_or_raise",
    "run",
    "run_as_nobody",
    "scratch_parent",
    "sweep_stale",
    "which",
]
