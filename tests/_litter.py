"""The no-litter check: the library's own scratch files left behind under some directories."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from _mountinfo import read_mountinfo

__all__ = ["SCRATCH_PREFIX", "find_litter"]

#: Prefix of the library's own scratch files; tests must never leave these.
SCRATCH_PREFIX = ".linkprobe-"


def find_litter(roots: Iterable[str | os.PathLike[str]], prefix: str = SCRATCH_PREFIX) -> list[Path]:
    """Files or directories under *roots* whose name starts with *prefix*.

    Does not descend into other mount points below a root (they are either
    roots themselves or none of our business) nor into litter directories.
    """
    root_list = list(dict.fromkeys(Path(r) for r in roots))
    mountpoints = {entry.mountpoint for entry in read_mountinfo()}
    found: list[Path] = []
    for root in root_list:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            keep = []
            for name in dirnames:
                child = os.path.join(dirpath, name)
                if name.startswith(prefix):
                    found.append(Path(child))
                elif child not in mountpoints:
                    keep.append(name)
            dirnames[:] = keep
            found.extend(Path(dirpath, n) for n in filenames if n.startswith(prefix))
    return found
