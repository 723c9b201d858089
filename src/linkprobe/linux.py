"""Linux backend: clone with the ``FICLONE`` ioctl, copy with ``copy_file_range``."""

from __future__ import annotations

import errno
import os
import stat
import sys

from linkprobe._words import CLONE, COPY, HARDLINK
from linkprobe.api import (
    CREATE_FLAGS,
    KEPT_MODE_BITS,
    READ_FLAGS,
    LinkBackend,
    ManyResult,
    SourceHints,
    override,
    remove_quietly,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

__all__ = ["FICLONE", "LinuxBackend"]

#: _IOW(0x94, 9, int). Python 3.12 exposes fcntl.FICLONE; 3.10 and 3.11 need the number.
FICLONE: Final[int] = 0x40049409

#: copy_file_range refusals that mean "use another way to copy this pair", not "copy
#: failed": EXDEV (different filesystem types, Linux 5.19+), ENOSYS (kernel < 4.5),
#: EOPNOTSUPP/EINVAL (filesystem or special file without it), EBADF (O_APPEND target).
_COPY_RANGE_UNUSABLE: Final[frozenset[int]] = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.EPERM}
)


#: Directory descriptors for make_many: O_PATH needs no read permission on the directory.
_DIRECTORY_FLAGS: Final[int] = (
    getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
)

#: The one-file methods whose behaviour make_many's fast path reproduces, per mode. A
#: subclass that overrides one of them (a test's counting backend) gets the generic loop,
#: so that its override sees every file.
_FAST_PATH_METHODS: Final[dict[str, tuple[str, ...]]] = {
    HARDLINK: ("make", "hardlink"),
    CLONE: ("make", "clone", "fill_new_file", "create_like"),
    COPY: ("make", "copy", "fill_new_file", "create_like", "copy_data"),
}

#: How fill_new_file opens a source the caller has hints for (see there): never through a
#: symlink, never blocking on a FIFO.
_HINTED_READ_FLAGS: Final[int] = READ_FLAGS | getattr(os, "O_NOFOLLOW", 0)


class LinuxBackend(LinkBackend):
    """Linux: FICLONE for clones; copy_file_range, then sendfile, then read/write."""

    name = "linux"

    @override
    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self.fill_new_file(source, target, _ficlone, hints)

    @override
    def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
        if _copy_file_range(source_fd, target_fd, size) is None:
            _copy_without_range(self, source_fd, target_fd, size)

    @override
    def make_many(
        self,
        mode: str,
        source_dir: str,
        target_dir: str,
        files: Sequence[tuple[str, SourceHints]],
        start: int = 0,
        budget: int | None = None,
    ) -> ManyResult:
        """The same as the base class, relative to two directory descriptors: one path
        lookup per directory instead of one per name, no lstat for hints without a size
        (the opened file's fstat tells), and for hardlinks no Python call per file at all
        (link_tree's hot path; docs/benchmarks.md). Clones go through the same
        fill_new_file as one file does."""
        if not _fast_path(type(self), mode):
            return super().make_many(mode, source_dir, target_dir, files, start, budget)
        try:
            source_fd = os.open(source_dir, _DIRECTORY_FLAGS)
        except OSError as exc:
            return start, exc, 0
        try:
            try:
                target_fd = os.open(target_dir, _DIRECTORY_FLAGS)
            except OSError as exc:
                return start, exc, 0
            try:
                if mode == HARDLINK:
                    return _link_many(source_fd, target_fd, files, start)
                if mode == COPY:
                    return _copy_many(self, source_fd, target_fd, files, start, budget)
                return _fill_many(self, source_fd, target_fd, files, start, budget)
            finally:
                os.close(target_fd)
        finally:
            os.close(source_fd)

    @override
    def has_default_acl(self, directory: str) -> bool:
        # acl(5): with a default ACL on the directory, the umask is not applied to new
        # files; the ACL's entries cut the mode instead (e.g. the executable bit).
        if sys.platform != "linux":  # keeps mypy --platform checks honest; never taken on Linux
            return True
        try:
            return bool(os.getxattr(directory, "system.posix_acl_default"))
        except OSError as exc:
            # ENODATA: no default ACL; EOPNOTSUPP: no ACLs on this filesystem (tmpfs
            # without them, exFAT). Anything else: cannot tell, so do not trust the umask.
            return exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP)

    @override
    def umask(self) -> int | None:
        # /proc/self/status has "Umask:" since Linux 4.7; reading it changes nothing. Read
        # as bytes: a text file would import the ascii codec (~0.2 ms) for one number.
        try:
            with open("/proc/self/status", "rb") as status:
                for line in status:
                    if line.startswith(b"Umask:"):
                        return int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
        return None


#: Per backend class and mode: whether make_many's fast path may run (see _FAST_PATH_METHODS).
_FAST_PATHS: dict[tuple[type[LinkBackend], str], bool] = {}


def _fast_path(cls: type[LinkBackend], mode: str) -> bool:
    """Whether ``cls`` keeps every one-file method that the fast path for ``mode`` spells out."""
    known = _FAST_PATHS.get((cls, mode))
    if known is None:
        methods = _FAST_PATH_METHODS.get(mode)
        known = methods is not None and all(getattr(cls, name) is getattr(LinuxBackend, name) for name in methods)
        _FAST_PATHS[(cls, mode)] = known
    return known


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
#: Copies that filesystems make in pieces (NFS server-side copy, SMB copychunk, Ceph objects)
#: end their pieces at multiples of this; see _copy_file_range.
_PIECE_ALIGN: Final[int] = 4096


def _copy_file_range(source_fd: int, target_fd: int, size: int, copied: int = 0) -> int | None:
    """Copy with copy_file_range (which btrfs/XFS serve by sharing extents); None if unusable.

    ``size`` is the size the caller saw; ``copied``: bytes already copied through these fds.

    The call asks for more than the expected size (and never for 0 bytes), so a file that
    grew since ``size`` was read is still copied to its end; 0 returned for a real request
    is the end of file. The kernel clamps each request to the source's size at that moment
    (generic_copy_file_checks in fs/read_write.c) and copies up to there unless a write
    fails, so a copy that ends exactly at ``size`` has reached the end of the file as it is
    now, and the call that would return 0 is skipped. Not when ``size`` is a multiple of
    the page size: /sys files report 4096 whatever they hold, /proc files 0 (coreutils'
    copy-file-data.c reads those to 0 for that reason), and filesystems that copy in pieces
    end a piece at such an offset. A file that shrank returns less than ``size``, then 0.
    """
    if _copy_range is None:
        return None
    while True:
        try:
            step = _copy_range(source_fd, target_fd, max(size - copied, 0) + _COPY_STEP)
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
        if copied == size and size % _PIECE_ALIGN:
            return copied


def _copy_without_range(backend: LinkBackend, source_fd: int, target_fd: int, size: int) -> None:
    """The copy where copy_file_range cannot serve: sendfile, else read/write."""
    if _sendfile(source_fd, target_fd, size) is None:
        LinkBackend.copy_data(backend, source_fd, target_fd, size)


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


def _link_many(source_fd: int, target_fd: int, files: Sequence[tuple[str, SourceHints]], start: int) -> ManyResult:
    for index in range(start, len(files)):
        name = files[index][0]
        try:
            # follow_symlinks=False: linkat() without AT_SYMLINK_FOLLOW, as link(2) does. A
            # name swapped for a symlink since the scan is linked as that symlink, never
            # the file it points to (which may be somebody's secret).
            os.link(name, name, src_dir_fd=source_fd, dst_dir_fd=target_fd, follow_symlinks=False)
        except OSError as exc:
            return index, exc, 0
    return len(files), None, 0


def _fill_many(
    backend: LinkBackend,
    source_dir_fd: int,
    target_dir_fd: int,
    files: Sequence[tuple[str, SourceHints]],
    start: int,
    budget: int | None,
) -> ManyResult:
    """LinkBackend.fill_new_file with FICLONE for many names, relative to two directory descriptors."""
    made = 0
    for index in range(start, len(files)):
        name, hints = files[index]
        try:
            made += backend.fill_new_file(
                name, name, _ficlone, hints, source_dir_fd=source_dir_fd, target_dir_fd=target_dir_fd
            )
        except OSError as exc:
            return index, exc, made
        if budget is not None and made >= budget:
            return index + 1, None, made
    return len(files), None, made


def _copy_many(  # noqa: PLR0915 - written out: each Python call it saves is 2-4 % of a small copy
    backend: LinkBackend,
    source_dir_fd: int,
    target_dir_fd: int,
    files: Sequence[tuple[str, SourceHints]],
    start: int,
    budget: int | None,
) -> ManyResult:
    """fill_new_file with copy_data for many names, its common case written out: link_tree's
    copy hot path. Per file: open the source (O_NOFOLLOW: the hints say it was a regular
    file), fstat it where the hints hold no mode and size (cp does the same; a path's lstat
    would cost more), create the target exclusively with its mode (and fchmod it where the
    umask took bits away), one copy_file_range when that ends the file (see
    _copy_file_range), close both; on any failure the target is removed again. An unknown
    umask (create_like's fstat) or a copy_file_range that cannot serve goes the general
    way. Without the three Python calls per file of the general way, and the call that
    returns 0, copying 5,000 small files on tmpfs took 8-10 % less time, and without the
    walk's lstat another 7-8 % (docs/benchmarks.md).
    """
    copy_range = _copy_range
    made = 0
    for index in range(start, len(files)):
        name, hints = files[index]
        mode, size, umask = hints
        if copy_range is None or umask is None:
            try:
                made += backend.fill_new_file(
                    name, name, backend.copy_data, hints, source_dir_fd=source_dir_fd, target_dir_fd=target_dir_fd
                )
            except OSError as exc:
                return index, exc, made
            if budget is not None and made >= budget:
                return index + 1, None, made
            continue
        try:
            source_fd = os.open(name, _HINTED_READ_FLAGS, dir_fd=source_dir_fd)
        except OSError as exc:
            return index, exc, made
        try:
            if mode is None or size is None:
                info = os.fstat(source_fd)
                if not stat.S_ISREG(info.st_mode):  # swapped for a FIFO or a device since the scan
                    raise OSError(errno.EINVAL, "not a regular file", name)
                mode, size = info.st_mode & KEPT_MODE_BITS, info.st_size
            target_fd = os.open(name, CREATE_FLAGS, mode, dir_fd=target_dir_fd)
            try:
                # open(2) applied the umask: the source's bits must survive (create_like's
                # rule). The platform test keeps mypy --platform win32 honest.
                if mode & umask and sys.platform != "win32":
                    os.fchmod(target_fd, mode)
                try:
                    copied: int | None = copy_range(source_fd, target_fd, size + _COPY_STEP)
                except OSError as exc:
                    if exc.errno not in _COPY_RANGE_UNUSABLE:
                        raise
                    copied = None
                if copied == 0 and size > 0:
                    copied = None  # procfs-like: 0 without copying
                if copied is None:
                    _copy_without_range(backend, source_fd, target_fd, size)
                elif copied and not (copied == size and size % _PIECE_ALIGN):
                    _copy_file_range(source_fd, target_fd, size, copied)
            except BaseException:
                os.close(target_fd)
                remove_quietly(name, dir_fd=target_dir_fd)
                raise
            try:
                os.close(target_fd)  # NFS reports ENOSPC and EDQUOT at close() at the latest
            except OSError:
                remove_quietly(name, dir_fd=target_dir_fd)
                raise
        except OSError as exc:
            return index, exc, made
        finally:
            os.close(source_fd)
        made += size
        if budget is not None and made >= budget:
            return index + 1, None, made
    return len(files), None, made
