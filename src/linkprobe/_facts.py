"""What a probe finds, in plain values: the facts of each side and the verdicts as words.

:func:`linkprobe.probe` turns its ``Findings`` into a :class:`~linkprobe.Probe`, whose
verdicts hold :class:`~linkprobe.LinkMode` and :class:`~linkprobe.Status`; the command
line's one-word formats read the findings as they are (see :mod:`linkprobe._words`).
"""

from __future__ import annotations

import time
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from linkprobe._locate import Located
    from linkprobe._words import VerdictLike
    from linkprobe.reasons import ReasonContext

__all__ = ["Progress", "SideFacts", "missing_note", "same_mount"]

# Named tuples, as the results in linkprobe.result: a typing.NamedTuple for type checkers,
# the same collections.namedtuple at run time, built without importing typing.
if TYPE_CHECKING:

    class _SideFactsFields(NamedTuple):
        #: The path as the caller gave it.
        given: str
        #: The existing directory (or source file) that was probed, symlinks resolved.
        probed: str
        #: None when the filesystem did not answer ``stat`` before the probe timed out.
        st_dev: int | None
        mount_point: str | None
        fstype: str | None
        mount_device: str | None = None
        mount_id: int | None = None
        read_only: bool = False
        #: The given path exists and is the one probed. False: it does not exist yet, and
        #: ``probed`` is its nearest existing ancestor. (True also for a side whose
        #: filesystem never answered: then ``probed`` is the given path, not looked at.)
        exists: bool = True

else:
    _SideFactsFields = namedtuple(
        "SideFacts",
        ("given", "probed", "st_dev", "mount_point", "fstype", "mount_device", "mount_id", "read_only", "exists"),
        defaults=(None, None, False, True),
    )


class SideFacts(_SideFactsFields):
    """Where one side of the pair really is. These explain a verdict; they never decide it."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "probed": self.probed,
            "st_dev": self.st_dev,
            "mount_point": self.mount_point,
            "fstype": self.fstype,
            "mount_device": self.mount_device,
            "mount_id": self.mount_id,
            "read_only": self.read_only,
            "exists": self.exists,
        }


if TYPE_CHECKING:
    #: A probe's answer before it is a :class:`~linkprobe.Probe`: Probe's fields in its
    #: order (source, target, verdicts, linked_from, linked_from_existing, existing_file),
    #: each verdict a plain (mode, status, reason, errno) of words. A plain tuple: the
    #: command line reads three of its fields once, and a named tuple class costs ~0.1 ms
    #: to make at every start.
    Findings = tuple[SideFacts, SideFacts, tuple[VerdictLike, ...], str | None, bool, str | None]


def missing_note(side: SideFacts) -> str | None:
    """``"does not exist yet; probed /nearest/ancestor"`` for a side whose given path
    does not exist, else None."""
    if side.exists:
        return None
    return f"does not exist yet; probed {side.probed}"


def same_mount(source: SideFacts, target: SideFacts) -> bool:
    """One mount on both sides: by mount ID where known (bind mounts), else by mount point.

    Two unknown mounts are not one mount.
    """
    if source.mount_id is not None and target.mount_id is not None:
        return source.mount_id == target.mount_id
    return source.mount_point is not None and source.mount_point == target.mount_point


class Progress:
    """What a probe has found so far; read by the caller when a deadline passes first."""

    def __init__(self) -> None:
        self.source_facts: SideFacts | None = None
        self.target_facts: SideFacts | None = None
        self.ctx: ReasonContext | None = None
        self.source_errno: int | None = None
        # Filled mode by mode; a dict assignment is atomic, so a snapshot is consistent.
        self.results: dict[str, int | None] = {}
        self.result: Findings | None = None
        #: Where the source and target were found, once they were.
        self.located: tuple[Located, Located] | None = None
        self.error: BaseException | None = None
        #: Set when the caller stopped waiting: make no further attempt, clean up as soon
        #: as the call in progress returns.
        self.abandoned = False
        #: Modes whose attempt from a scratch file worked but whose attempt from an
        #: existing file of the source failed, with that errno.
        self.existing_failures: dict[str, int] = {}
        #: time.monotonic() when the probe last started a call that may wait for the
        #: filesystem: how long the call in progress has taken so far.
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()
