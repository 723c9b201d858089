"""The audit's pure rules: what one entry under TARGET is, what linking would save, and
whether an expectation holds. No I/O: the walk in :mod:`linkprobe.auditing` gathers the facts."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from linkprobe.extents import ExtentBytes
from linkprobe.modes import LinkMode
from linkprobe.result import Status, Verdict

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "CLONE_IMPOSSIBLE_ERRNOS",
    "KINDS",
    "OTHER",
    "OTHER_REASONS",
    "classify_file",
    "classify_symlink",
    "clone_possible",
    "not_as_expected",
    "savable_bytes",
]

OTHER: Final[str] = "other"
#: Every kind, in the order reports list them.
KINDS: Final[tuple[str, ...]] = ("hardlink", "clone", "symlink", "copy", OTHER)

#: Why an entry is ``other``, and what that means (docs/cli.md lists the same).
OTHER_REASONS: Final[Mapping[str, str]] = {
    "empty": "an empty file: no data to share or to hold twice",
    "inline": "data kept inside filesystem metadata (btrfs inlines small files): no extent to share",
    "partly-shared": "some of its data blocks are shared, some are its own (e.g. a clone edited in place)",
    "no-data": "a file with a size but no data blocks at all (sparse)",
    "clones-unknown": "own inode, but this OS or filesystem cannot say which blocks are shared, and clones may exist",
    "unreadable": "a file that could not be opened to read its block map",
    "symlink-internal": "a symlink that resolves inside TARGET (an installer's own layout, e.g. pnpm's node_modules)",
    "symlink-elsewhere": "a symlink that resolves outside SOURCE and TARGET",
    "symlink-dangling": "a symlink whose target does not exist",
    "special": "a FIFO, socket or device node",
}


def classify_file(
    *, size: int, same_inode: bool, extent: ExtentBytes | None, clone_possible: bool
) -> tuple[str, str | None]:
    """(kind, reason for ``other``) of a regular file under TARGET.

    ``same_inode``: it is a file under SOURCE (hardlinks come first, empty ones too: the
    inode proves the link whatever the size). ``extent``: its block map, None when this OS
    or filesystem cannot tell (or it was not read). Without a block map an own inode is a
    copy when the probe proved clone impossible between the pair (:func:`clone_possible`);
    otherwise it cannot be told from a clone.
    Every data byte in shared extents is a clone; a mix of shared and own is ``other``.
    """
    if same_inode:
        return "hardlink", None
    if size == 0:
        return OTHER, "empty"
    if extent is None:
        return (OTHER, "clones-unknown") if clone_possible else ("copy", None)
    if extent.inline:
        return OTHER, "inline"
    if extent.total == 0:
        return OTHER, "no-data"
    if extent.shared == extent.total:
        return "clone", None
    if extent.shared == 0:
        return "copy", None
    return OTHER, "partly-shared"


#: Clone failures that mean no block can be shared from SOURCE into TARGET at all: another
#: filesystem (EXDEV), or one without reflink (EOPNOTSUPP; ENOTTY and EINVAL from FICLONE on
#: filesystems without it, ENOSYS where the call does not exist). A refusal (EACCES, EPERM,
#: EROFS: the probe may not write there) or no answer says nothing about the files.
CLONE_IMPOSSIBLE_ERRNOS: Final[frozenset[int]] = frozenset(
    {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS}
)


def clone_possible(verdict: Verdict) -> bool:
    """Whether a file under TARGET may share SOURCE's blocks, from the probe's clone verdict."""
    if verdict.status is Status.SUPPORTED:
        return True
    return not (verdict.status is Status.UNSUPPORTED and verdict.errno in CLONE_IMPOSSIBLE_ERRNOS)


def classify_symlink(*, exists: bool, under_source: bool) -> tuple[str, str | None]:
    """(kind, reason) of a symlink under TARGET, by where it finally resolves."""
    if not exists:
        return OTHER, "symlink-dangling"
    if under_source:
        return "symlink", None
    return OTHER, "symlink-elsewhere"


def savable_bytes(best: LinkMode | None, duplicated_bytes: int) -> int:
    """What the best working mode would save: the bytes of copies that SOURCE holds too,
    when clone or hardlink works; nothing when only copy works (or symlink, which auto
    never picks), or nothing works."""
    if best in (LinkMode.CLONE, LinkMode.HARDLINK):
        return duplicated_bytes
    return 0


def not_as_expected(expected: LinkMode, linked: Mapping[str, int], duplicated_files: int) -> int:
    """How many files that could be ``expected`` are something else.

    Files that could be linked are the ones whose data SOURCE holds: hardlinks, clones,
    symlinks into SOURCE and copies held twice. ``other`` files never count (an inline
    btrfs file cannot be a clone); nor do copies SOURCE does not hold.
    """
    could = {"hardlink": linked.get("hardlink", 0), "clone": linked.get("clone", 0)}
    could["symlink"] = linked.get("symlink", 0)
    could["copy"] = duplicated_files
    return sum(count for kind, count in could.items() if kind != expected.value)
