"""What a :class:`~linkprobe.Linker` reports: :class:`LinkStats` and :class:`Fallback`.

Both are named tuples: typed (``typing.NamedTuple`` for type checkers), immutable, compared
by value, and built at run time with ``collections.namedtuple``, which imports neither
``typing`` nor ``dataclasses`` (whose ``inspect`` import alone costs ~7 ms at start-up).
Both are public as ``linkprobe.linker.LinkStats`` / ``linkprobe.linker.Fallback``.
"""

from __future__ import annotations

from collections import namedtuple

from linkprobe._words import CLONE, COPY, HARDLINK, SYMLINK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    from linkprobe.modes import LinkMode

__all__ = ["Fallback", "LinkStats"]

_STATS_FIELDS = ("cloned", "hardlinked", "symlinked", "copied", "symlinks", "directories", "bytes")

if TYPE_CHECKING:

    class _StatsFields(NamedTuple):
        cloned: int = 0
        hardlinked: int = 0
        symlinked: int = 0
        copied: int = 0
        #: Symlinks found in the source tree and re-created as symlinks.
        symlinks: int = 0
        directories: int = 0
        #: Bytes of the regular files materialised (whatever the mode).
        bytes: int = 0

    class Fallback(NamedTuple):
        """One step down of auto mode for a mount pair."""

        source_mount: str | None
        target_mount: str | None
        from_mode: LinkMode
        to_mode: LinkMode
        errno: int
        reason: str

else:  # the same named tuples, built without importing typing
    _StatsFields = namedtuple("LinkStats", _STATS_FIELDS, defaults=(0,) * len(_STATS_FIELDS))
    Fallback = namedtuple("Fallback", ("source_mount", "target_mount", "from_mode", "to_mode", "errno", "reason"))
    Fallback.__doc__ = "One step down of auto mode for a mount pair."


class LinkStats(_StatsFields):
    """What :meth:`Linker.link_tree` did: files per mode, symlinks, directories, bytes."""

    __slots__ = ()

    @property
    def files(self) -> int:
        return self.cloned + self.hardlinked + self.symlinked + self.copied

    def count(self, mode: LinkMode | str) -> int:
        """Files made with ``mode`` (a LinkMode or its word)."""
        return {CLONE: self.cloned, HARDLINK: self.hardlinked, SYMLINK: self.symlinked, COPY: self.copied}[mode]
