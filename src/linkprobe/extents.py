"""The OS seam for "which of this file's data blocks are shared?": space accounting.

A clone (reflink) gets its own inode but maps the blocks of the file it was cloned from;
the filesystem knows those blocks have more than one owner. This module asks it, per file,
and answers in bytes: :func:`shared_extent_bytes` (by path) and :func:`fd_extent_bytes`
(an open file, the audit's hot path). ``None`` means "this OS or filesystem cannot tell",
never "nothing is shared".

* Linux: the ``FS_IOC_FIEMAP`` ioctl (Documentation/filesystems/fiemap.rst). The flags are
  read as they are, WITHOUT ``FIEMAP_FLAG_SYNC``: that flag writes out the file's dirty
  pages first, which an audit (a reader) must not cause. Unwritten delayed-allocation data
  is reported with ``FIEMAP_EXTENT_DELALLOC``; it belongs to this file alone, so it counts
  as not shared, which is true. Filesystems without FIEMAP (tmpfs, NFS, ZFS before
  2.2's FIEMAP support) answer EOPNOTSUPP: ``None``.
* macOS: ``getattrlist`` with ``ATTR_CMNEXT_PRIVATESIZE`` (APFS): the bytes of the file
  that no other file shares. Verified on Linux only, through a fake of ``getattrlist``
  at the ctypes boundary; see docs/user-guide.md ("What was verified where").
* Windows and others: ``None`` (no documented call says which clusters a file shares).
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from collections import namedtuple
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, NamedTuple

__all__ = [
    "FIEMAP_EXTENT_DATA_INLINE",
    "FIEMAP_EXTENT_DATA_TAIL",
    "FIEMAP_EXTENT_LAST",
    "FIEMAP_EXTENT_SHARED",
    "FS_IOC_FIEMAP",
    "ExtentBytes",
    "fd_extent_bytes",
    "fiemap_extent_bytes",
    "macos_extent_bytes",
    "shared_extent_bytes",
]

#: _IOWR('f', 11, struct fiemap), from linux/fs.h.
FS_IOC_FIEMAP: Final[int] = 0xC020660B
#: From linux/fiemap.h.
FIEMAP_EXTENT_LAST: Final[int] = 0x0001
FIEMAP_EXTENT_DATA_INLINE: Final[int] = 0x0200
#: Several files' tails packed into one block (reiserfs): data inside metadata, like inline.
FIEMAP_EXTENT_DATA_TAIL: Final[int] = 0x0400
FIEMAP_EXTENT_SHARED: Final[int] = 0x2000
_IN_METADATA: Final[int] = FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL

#: struct fiemap: fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved
_HEADER: Final[struct.Struct] = struct.Struct("=QQLLLL")
#: struct fiemap_extent: fe_logical, fe_physical, fe_length, fe_reserved64[2], fe_flags, fe_reserved[3]
_EXTENT: Final[struct.Struct] = struct.Struct("=QQQ2QL3L")
#: Extents asked for per ioctl; a package file has one or two, a fragmented one is read in rounds.
_SLOTS: Final[int] = 32
_ALL: Final[int] = 0xFFFF_FFFF_FFFF_FFFF
#: "This file or filesystem has no extent map": tmpfs, procfs (EOPNOTSUPP), a driver
#: without the ioctl (ENOTTY), FUSE without FIEMAP (ENOSYS), overlayfs on such a lower
#: layer (EINVAL is what some FUSE daemons answer for an unknown ioctl).
_NO_MAP: Final[frozenset[int]] = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EINVAL})

Ioctl = Callable[[int, int, bytearray], object]


if TYPE_CHECKING:

    class _ExtentFields(NamedTuple):
        total: int
        shared: int
        inline: int

else:  # the same named tuple, built without importing typing (CONTRIBUTING.md)
    _ExtentFields = namedtuple("ExtentBytes", ("total", "shared", "inline"))


class ExtentBytes(_ExtentFields):
    """Where a file's data lives, in bytes of its logical size (holes count nowhere).

    ``total``: bytes that have data in an extent of their own or a shared one;
    ``shared``: those of ``total`` in extents the filesystem marks shared (with any file:
    a clone's origin, another clone, a snapshot); ``inline``: those of ``total`` kept inside
    metadata (btrfs stores small files in the b-tree), which no other file can share.
    An immutable named tuple: it unpacks as ``(total, shared, inline)``.
    """

    __slots__ = ()

    @property
    def unshared(self) -> int:
        return self.total - self.shared


#: Of struct fiemap_extent only fe_logical, fe_length and fe_flags are needed.
_EXTENT_USED: Final[struct.Struct] = struct.Struct("=Q8xQ16xL12x")


def fiemap_extent_bytes(fd: int, size: int, ioctl: Ioctl | None = None) -> ExtentBytes | None:
    """Linux: add up the FIEMAP extents of the open file ``fd`` up to ``size`` bytes.

    Extents are clipped to ``size``: the last one is rounded up to the block size.
    Returns None where the file or filesystem has no extent map; raises other OSErrors.
    ``ioctl`` replaces ``fcntl.ioctl`` (tests).
    """
    if ioctl is None:
        if sys.platform == "win32":
            return None
        import fcntl

        ioctl = fcntl.ioctl
    buffer = bytearray(_HEADER.size + _SLOTS * _EXTENT.size)
    total = shared = inline = 0
    start = 0
    while start < size:
        _HEADER.pack_into(buffer, 0, start, _ALL, 0, 0, _SLOTS, 0)  # fm_flags 0: no FIEMAP_FLAG_SYNC
        try:
            ioctl(fd, FS_IOC_FIEMAP, buffer)
        except OSError as exc:
            if exc.errno in _NO_MAP:
                return None
            raise
        mapped = _HEADER.unpack_from(buffer)[3]
        if mapped == 0:
            break  # only holes from here on
        if mapped == 1 and start == 0:  # most files: one extent, read without a loop
            logical, length, flags = _EXTENT_USED.unpack_from(buffer, _HEADER.size)
            if logical == 0 and flags & FIEMAP_EXTENT_LAST:
                data = min(length, size)
                return ExtentBytes(
                    data,
                    data if flags & FIEMAP_EXTENT_SHARED else 0,
                    data if flags & _IN_METADATA else 0,
                )
        flags = 0
        for logical, length, flags in _EXTENT_USED.iter_unpack(
            memoryview(buffer)[_HEADER.size : _HEADER.size + mapped * _EXTENT.size]
        ):
            end = min(logical + length, size)
            begin = max(logical, start)
            if end > begin:
                total += end - begin
                if flags & FIEMAP_EXTENT_SHARED:
                    shared += end - begin
                if flags & _IN_METADATA:
                    inline += end - begin
            start = max(start, logical + length)
        if flags & FIEMAP_EXTENT_LAST or mapped < _SLOTS:
            break
    return ExtentBytes(total, shared, inline)


#: From <sys/attr.h>: ask for the returned-attributes set, and the extended common
#: attribute "bytes not shared with any other file" (FSOPT_ATTR_CMN_EXTENDED makes the
#: fork-attribute word mean ATTR_CMNEXT_*).
ATTR_BIT_MAP_COUNT: Final[int] = 5
ATTR_CMN_RETURNED_ATTRS: Final[int] = 0x8000_0000
ATTR_CMNEXT_PRIVATESIZE: Final[int] = 0x0000_0008
FSOPT_NOFOLLOW: Final[int] = 0x0000_0001
FSOPT_ATTR_CMN_EXTENDED: Final[int] = 0x0000_0020
#: struct attrlist: bitmapcount u16, reserved u16, common/vol/dir/file/fork attr u32 each.
_ATTRLIST: Final[struct.Struct] = struct.Struct("=HHLLLLL")
#: The answer: u32 length, attribute_set_t (5 x u32), then off_t private size.
_ANSWER: Final[struct.Struct] = struct.Struct("=L5Lq")

#: getattrlist(path, attrlist, buffer, size, options) -> 0 or -1 and errno.
GetAttrList = Callable[[bytes, bytearray, bytearray, int], int]


def _load_getattrlist() -> GetAttrList | None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.dylib", use_errno=True)
    function = getattr(libc, "getattrlist", None)
    if function is None:
        return None
    function.argtypes = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32)
    function.restype = ctypes.c_int

    def call(path: bytes, attrs: bytearray, answer: bytearray, options: int) -> int:
        attrs_c = (ctypes.c_char * len(attrs)).from_buffer(attrs)
        answer_c = (ctypes.c_char * len(answer)).from_buffer(answer)
        result = function(path, attrs_c, answer_c, len(answer), options)
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return int(result)

    return call


_getattrlist: list[GetAttrList | None] = []


def macos_extent_bytes(path: str, allocated: int, getattrlist: GetAttrList | None = None) -> ExtentBytes | None:
    """macOS: shared bytes from APFS's private size; ``allocated`` is ``st_blocks * 512``.

    APFS reports how many of the file's allocated bytes no other file shares; the rest
    are shared (with a clone's origin, another clone, or a snapshot). Other volume formats
    (HFS+, exFAT, SMB) do not return the attribute: None. Never inline: APFS keeps no
    file data in metadata that this would need to tell apart.
    """
    if getattrlist is None:
        if not _getattrlist:
            _getattrlist.append(_load_getattrlist())
        getattrlist = _getattrlist[0]
        if getattrlist is None:
            return None
    attrs = bytearray(_ATTRLIST.size)
    _ATTRLIST.pack_into(attrs, 0, ATTR_BIT_MAP_COUNT, 0, ATTR_CMN_RETURNED_ATTRS, 0, 0, 0, ATTR_CMNEXT_PRIVATESIZE)
    answer = bytearray(_ANSWER.size)
    try:
        getattrlist(os.fsencode(path), attrs, answer, FSOPT_NOFOLLOW | FSOPT_ATTR_CMN_EXTENDED)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EINVAL):
            return None
        raise
    _, _, _, _, _, returned_ext, private = _ANSWER.unpack_from(answer)
    if not returned_ext & ATTR_CMNEXT_PRIVATESIZE or private < 0:
        return None
    return ExtentBytes(allocated, max(0, allocated - private), 0)


def fd_extent_bytes(fd: int, path: str, info: os.stat_result) -> ExtentBytes | None:
    """This OS's answer for the regular file open as ``fd`` (``path`` its name, ``info``
    its lstat); None where the OS or the filesystem cannot tell."""
    if sys.platform == "linux":
        return fiemap_extent_bytes(fd, info.st_size)
    if sys.platform == "darwin":
        return macos_extent_bytes(path, info.st_blocks * 512)
    return None


def shared_extent_bytes(path: str | os.PathLike[str]) -> ExtentBytes | None:
    """How many bytes of the regular file ``path`` are shared with other files.

    Opens the file read-only (a symlink is not followed: ELOOP) and reads no data, so its
    access time stays; returns None where this OS or filesystem cannot tell.
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags)
    try:
        return fd_extent_bytes(fd, name, os.fstat(fd))
    finally:
        os.close(fd)
