"""Read a file's extents with the FIEMAP ioctl, to prove (or rule out) shared blocks.

A clone (reflink) gets its own inode but points at the source's physical blocks, which the
filesystem marks FIEMAP_EXTENT_SHARED; a copy gets blocks of its own. This is the test-side
proof of what linkprobe's Linker or a real installer did, independent of linkprobe's code.
"""

from __future__ import annotations

import errno
import fcntl
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Extent", "extents", "fiemap_supported", "overlaps_any_block", "shares_extents"]

#: _IOWR('f', 11, struct fiemap), from linux/fs.h
_FS_IOC_FIEMAP = 0xC020660B
#: Flush delayed allocation first: a fresh ext4 copy has no physical blocks until then.
_FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_EXTENT_SHARED = 0x2000
#: struct fiemap: fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved
_HEADER = struct.Struct("=QQLLLL")
#: struct fiemap_extent: fe_logical, fe_physical, fe_length, fe_reserved64[2], fe_flags, fe_reserved[3]
_EXTENT = struct.Struct("=QQQ2QL3L")
_SLOTS = 64


@dataclass(frozen=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def shared(self) -> bool:
        return bool(self.flags & _FIEMAP_EXTENT_SHARED)


def extents(path: Path) -> list[Extent]:
    """The extents of ``path`` as FIEMAP reports them (what ``filefrag -v`` prints)."""
    buffer = bytearray(_HEADER.size + _SLOTS * _EXTENT.size)
    _HEADER.pack_into(buffer, 0, 0, 0xFFFF_FFFF_FFFF_FFFF, _FIEMAP_FLAG_SYNC, 0, _SLOTS, 0)
    with path.open("rb") as handle:
        fcntl.ioctl(handle.fileno(), _FS_IOC_FIEMAP, buffer)
    found = []
    for index in range(_HEADER.unpack_from(buffer)[3]):
        logical, physical, length, _, _, flags, *_ = _EXTENT.unpack_from(buffer, _HEADER.size + index * _EXTENT.size)
        found.append(Extent(logical, physical, length, flags))
    return found


def fiemap_supported(path: Path) -> bool:
    """False on filesystems without FIEMAP (tmpfs answers EOPNOTSUPP)."""
    try:
        extents(path)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
            return False
        raise
    return True


def shares_extents(original: Path, other: Path) -> bool:
    """True if ``other`` maps the very blocks of ``original``, marked shared on both sides."""
    mine, theirs = extents(other), extents(original)
    if not mine:
        return False
    same_blocks = [(e.logical, e.physical, e.length) for e in mine] == [
        (e.logical, e.physical, e.length) for e in theirs
    ]
    return same_blocks and all(e.shared for e in mine + theirs)


def overlaps_any_block(original: Path, other: Path) -> bool:
    """True if any physical block of ``other`` is also one of ``original`` (same filesystem)."""
    theirs = extents(original)
    return any(
        not (a.physical + a.length <= b.physical or b.physical + b.length <= a.physical)
        for a in extents(other)
        for b in theirs
    )
