"""Filling a (small, scratch) filesystem to the last inode or the last byte."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["fill_inodes", "fill_space"]

MIB = 1024 * 1024


def fill_inodes(path: Path, *, max_files: int = 1_000_000) -> int:
    """Create empty files in *path* until ENOSPC; return how many were made.

    Refuses filesystems with more than *max_files* inodes so a typo cannot
    fill the root filesystem.
    """
    total = os.statvfs(path).f_files
    if total > max_files:
        raise ValueError(f"refusing to fill {path}: {total} inodes > max_files={max_files}")
    count = 0
    while count <= max_files:
        try:
            fd = os.open(path / f"fill-{count:07d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return count
            raise
        os.close(fd)
        count += 1
    raise RuntimeError(f"{path} still has inodes after {max_files} files")


#: What a full filesystem (or an exhausted quota) answers a write with.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def fill_space(path: Path, *, max_bytes: int = 1 << 30) -> int:
    """Write one file in *path* until ENOSPC (or EDQUOT, a quota_btrfs() limit);
    return bytes written.

    Returns 0 if the file cannot even be created (no inodes left).  Refuses
    filesystems larger than *max_bytes*.
    """
    st = os.statvfs(path)
    if st.f_blocks * st.f_frsize > max_bytes:
        raise ValueError(f"refusing to fill {path}: larger than max_bytes={max_bytes}")
    try:
        fd = os.open(path / "fill-data", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as exc:
        if exc.errno in _FULL:
            return 0
        raise
    written = 0
    chunk = 1 * MIB
    try:
        # Halve the chunk on ENOSPC so the last partial block gets used too.
        while chunk >= 1:
            try:
                written += os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno not in _FULL:
                    raise
                chunk //= 2
            if written > max_bytes:
                raise RuntimeError(f"{path} still has space after {max_bytes} bytes")
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
    finally:
        os.close(fd)
    return written
