"""Linux backend: clone with the ``FICLONE`` ioctl, copy with ``copy_file_range``."""

from __future__ import annotations

import errno
import os
import sys
from typing import Final

from linkprobe.api import LinkBackend, SourceHints

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

    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self.fill_new_file(source, target, _ficlone, hints)

    def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
        copied = _copy_file_range(source_fd, target_fd, size)
        if copied is None:
            copied = _sendfile(source_fd, target_fd, size)
        if copied is None:
            super().copy_data(source_fd, target_fd, size)

    def umask(self) -> int | None:
        # /proc/self/status has "Umask:" since Linux 4.7; reading it changes nothing.
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        return int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
        return None


def _ficlone(source_fd: int, target_fd: int, size: int = 0) -> None:
    """ioctl(target, FICLONE, source): the whole file, whatever its size."""
    del size
    if sys.platform != "linux":  # keeps mypy --platform checks honest; never taken on Linux
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    import fcntl

    fcntl.ioctl(target_fd, FICLONE, source_fd)


#: os.copy_file_range: Python 3.8+ on Linux 4.5+ (None on other OSes, for mypy and tests).
_copy_range: Final = getattr(os, "copy_file_range", None)
#: Bytes asked for beyond the expected size in one call.
_COPY_STEP: Final[int] = 1 << 20


def _copy_file_range(source_fd: int, target_fd: int, size: int) -> int | None:
    """Copy with copy_file_range (which btrfs/XFS serve by sharing extents); None if unusable."""
    if _copy_range is None:
        return None
    copied = 0
    while True:
        try:
            # Ask for more than the expected size so a file that grew is still copied to
            # its end; 0 returned means end of file.
            step = _copy_range(source_fd, target_fd, size - copied + _COPY_STEP)
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
