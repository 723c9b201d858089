"""Linux backend: clone with the ``FICLONE`` ioctl, copy with ``copy_file_range``."""

from __future__ import annotations

import errno
import os
import sys
from typing import Final

from linkprobe.api import READ_FLAGS, LinkBackend, remove_quietly

__all__ = ["FICLONE", "LinuxBackend"]

#: _IOW(0x94, 9, int). Python 3.12 exposes fcntl.FICLONE; 3.10 and 3.11 need the number.
FICLONE: Final[int] = 0x40049409

#: copy_file_range refusals that mean "use another way to copy this pair", not "copy
#: failed": EXDEV (different filesystem types, Linux 5.19+), ENOSYS (kernel < 4.5),
#: EOPNOTSUPP/EINVAL (filesystem or special file without it), EBADF (O_APPEND target).
_COPY_RANGE_UNUSABLE: Final[frozenset[int]] = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.EPERM}
)


class LinuxBackend(LinkBackend):
    """Linux: FICLONE for clones; copy_file_range, then sendfile, then read/write."""

    name = "linux"

    def clone(self, source: str, target: str) -> None:
        source_fd = os.open(source, READ_FLAGS)
        try:
            target_fd = self.create_like(source_fd, target)
            try:
                _ficlone(target_fd, source_fd)
            except BaseException:
                os.close(target_fd)
                remove_quietly(target)
                raise
            os.close(target_fd)
        finally:
            os.close(source_fd)

    def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
        copied = _copy_file_range(source_fd, target_fd, size)
        if copied is None:
            copied = _sendfile(source_fd, target_fd, size)
        if copied is None:
            super().copy_data(source_fd, target_fd, size)


def _ficlone(target_fd: int, source_fd: int) -> None:
    if sys.platform != "linux":  # keeps mypy --platform checks honest; never taken on Linux
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    import fcntl

    fcntl.ioctl(target_fd, FICLONE, source_fd)


def _copy_file_range(source_fd: int, target_fd: int, size: int) -> int | None:
    """Copy with copy_file_range (which btrfs/XFS serve by sharing extents); None if unusable."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None:
        return None
    copied = 0
    while True:
        try:
            # Ask for at least 1 byte past the expected size so a file that grew is
            # still copied to its end; 0 returned means end of file.
            step = copy_range(source_fd, target_fd, max(size - copied, 1 << 20))
        except OSError as exc:
            if copied == 0 and exc.errno in _COPY_RANGE_UNUSABLE:
                return None
            raise
        if step == 0:
            if copied == 0 and size > 0:
                # Some filesystems (procfs-like, some FUSE) report 0 without copying.
                return None
            return copied
        copied += step


def _sendfile(source_fd: int, target_fd: int, size: int) -> int | None:
    if sys.platform == "win32":  # no sendfile(); keeps mypy --platform win32 honest
        return None
    copied = 0
    while True:
        try:
            step = os.sendfile(target_fd, source_fd, copied, max(size - copied, 1 << 20))
        except OSError as exc:
            if copied == 0 and exc.errno in _COPY_RANGE_UNUSABLE:
                return None
            raise
        if step == 0:
            return copied
        copied += step
