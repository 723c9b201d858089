"""The kernel's mount table (/proc/self/mountinfo), parsed, and questions about it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MountInfo", "find_mount", "is_under", "mounts_under", "read_mountinfo"]


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    device: str  # "major:minor"
    root: str  # path inside the filesystem that is mounted here
    mountpoint: str
    options: str  # per-mount options (ro/rw, nosuid, ...)
    fstype: str
    source: str
    super_options: str  # per-superblock options


def _unescape(text: str) -> str:
    # The kernel octal-escapes space, tab, newline and backslash.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mountinfo() -> list[MountInfo]:
    """Parse /proc/self/mountinfo (in kernel order, i.e. creation order)."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.rstrip("\n").split(" ")
            sep = fields.index("-", 6)  # optional fields end at a lone "-"
            entries.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    device=fields[2],
                    root=_unescape(fields[3]),
                    mountpoint=_unescape(fields[4]),
                    options=fields[5],
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
                )
            )
    return entries


def is_under(path: str, top: str) -> bool:
    return top in (path, "/") or path.startswith(top.rstrip("/") + "/")


def find_mount(path: str | os.PathLike[str]) -> MountInfo:
    """Return the mount that *path* lives on (the top one if mounts are stacked)."""
    real = os.path.realpath(path)
    best: MountInfo | None = None
    for entry in read_mountinfo():
        if is_under(real, entry.mountpoint) and (best is None or len(entry.mountpoint) >= len(best.mountpoint)):
            best = entry
    if best is None:
        raise LookupError(f"no mount found for {real}")
    return best


def mounts_under(top: Path) -> list[MountInfo]:
    """Mounts at or below *top*, deepest (and most recently stacked) first."""
    found = [(index, entry) for index, entry in enumerate(read_mountinfo()) if is_under(entry.mountpoint, str(top))]
    found.sort(key=lambda item: (item[1].mountpoint.count("/"), item[0]), reverse=True)
    return [entry for _, entry in found]
