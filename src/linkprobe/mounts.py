"""Which mount a path lives on: pure parsing apart, system reading at the edges.

On Linux the table comes from ``/proc/self/mountinfo`` (it has mount IDs, so two bind
mounts of one filesystem are told apart even when ``st_dev`` is equal); elsewhere, or when
/proc is not mounted, from ``psutil.disk_partitions(all=True)`` — ``all=True`` because the
default drops "nodev" filesystems such as overlay, tmpfs and fuse, a container's ``/``
among them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "Mount",
    "find_mount",
    "fuseblk_subtype",
    "mount_table",
    "parse_mountinfo",
    "unescape_mount_field",
    "with_fuse_subtype",
]


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    mount_point: str
    fstype: str
    device: str
    options: tuple[str, ...] = ()
    mount_id: int | None = None

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_mount_field(field: str) -> str:
    r"""Undo the kernel's octal escapes in mount fields (space is ``\040``, ``\`` is ``\134``)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/self/mountinfo`` (proc(5)); lines that do not parse are skipped.

    Format: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``.
    """
    mounts = []
    # split("\n"), not splitlines(): the kernel escapes only space, tab, newline and
    # backslash, so a mount point may hold \x1c or \u2028 as they are.
    for line in text.split("\n"):
        fields = line.removesuffix("\r").split(" ")
        try:
            separator = fields.index("-", 6)
            mount_id = int(fields[0])
            mount_point = unescape_mount_field(fields[4])
            options = tuple(fields[5].split(","))
            fstype = unescape_mount_field(fields[separator + 1])
            device = unescape_mount_field(fields[separator + 2])
        except (ValueError, IndexError):
            continue
        mounts.append(Mount(mount_point, fstype, device, options, mount_id))
    return mounts


def _under(path: str, mount_point: str, sep: str) -> bool:
    # Windows volume mount folders are listed with a trailing separator; the folder
    # itself is on that mount too.
    if path in (mount_point, mount_point.removesuffix(sep)):
        return True
    prefix = mount_point if mount_point.endswith(sep) else mount_point + sep
    return path.startswith(prefix)


def find_mount(path: str, mounts: Sequence[Mount], *, sep: str = os.sep) -> Mount | None:
    """The mount a resolved ``path`` lives on: the longest mount point that contains it.

    Of equal mount points the last wins: a later mount hides an earlier one at the same
    place (overmounting). Windows mount points are compared without case.
    """
    fold = sep == "\\"
    key = path.casefold() if fold else path
    best: Mount | None = None
    best_length = -1
    for mount in mounts:
        point = mount.mount_point.casefold() if fold else mount.mount_point
        # Lengths of the same spelling: casefold() can lengthen a name ("ß" -> "ss").
        if _under(key, point, sep) and len(point) >= best_length:
            best, best_length = mount, len(point)
    return best


#: Boot-sector OEM names (offset 3, 8 bytes) of filesystems usually served by FUSE as
#: plain "fuseblk": mount.exfat-fuse and ntfs-3g set no subtype, so the name is read
#: from the device itself (root only; otherwise the type stays "fuseblk").
_OEM_NAMES: Final[dict[bytes, str]] = {b"EXFAT   ": "exfat", b"NTFS    ": "ntfs"}


def fuseblk_subtype(device: str) -> str | None:
    """The filesystem behind a ``fuseblk`` mount, from its boot sector, or None."""
    try:
        with open(device, "rb") as handle:
            header = handle.read(11)
    except OSError:
        return None
    return _OEM_NAMES.get(header[3:11])


def with_fuse_subtype(mount: Mount) -> Mount:
    """``fuseblk`` becomes ``fuseblk.exfat`` (as mountinfo says when a daemon sets a subtype)."""
    if mount.fstype != "fuseblk" or not mount.device.startswith("/dev/"):
        return mount
    subtype = fuseblk_subtype(mount.device)
    return replace(mount, fstype=f"fuseblk.{subtype}") if subtype else mount


def _from_psutil() -> list[Mount]:
    import psutil  # ~20 ms to import: only paid where /proc/self/mountinfo is missing

    return [
        Mount(part.mountpoint, part.fstype, part.device, tuple(part.opts.split(",")))
        for part in psutil.disk_partitions(all=True)
    ]


def mount_table(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """The live mount table (re-read every call: mounts change under long-lived processes)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            mounts = parse_mountinfo(handle.read())
    except OSError:
        mounts = []
    return mounts or _from_psutil()
