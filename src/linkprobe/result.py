"""What a probe found, as frozen values, and the pure rules that read them."""

from __future__ import annotations

import enum
import errno as _errno
from collections import namedtuple

from linkprobe import _words
from linkprobe._facts import SideFacts, missing_note, same_mount
from linkprobe.errors import InvalidModeError
from linkprobe.modes import AUTO_ORDER, VALID_WORDS, LinkMode, parse_mode, parse_order

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NamedTuple

    from linkprobe._facts import Findings

__all__ = [
    "Probe",
    "SideFacts",
    "Status",
    "Verdict",
    "as_probe",
    "best_mode",
    "missing_note",
    "same_mount",
]


class Status(str, enum.Enum):
    """How one mode fared."""

    SUPPORTED = _words.SUPPORTED
    UNSUPPORTED = _words.UNSUPPORTED
    #: Not attempted: e.g. no file to link from on a read-only source.
    NOT_PROBED = _words.NOT_PROBED
    #: No answer from the filesystem before ``probe(..., timeout=)`` ran out (a stopped
    #: FUSE daemon, an unreachable network filesystem).
    TIMED_OUT = _words.TIMED_OUT

    def __str__(self) -> str:
        return self.value


# The results are named tuples: immutable and typed like frozen dataclasses, without the
# import of dataclasses (and inspect) at every start of the command line. For type
# checkers the fields are a typing.NamedTuple; at run time the same collections.namedtuple,
# built without importing typing. Each public class adds its methods on top.
if TYPE_CHECKING:

    class _VerdictFields(NamedTuple):
        mode: LinkMode
        status: Status
        reason: str
        errno: int | None = None

    class _ProbeFields(NamedTuple):
        source: SideFacts
        target: SideFacts
        verdicts: tuple[Verdict, ...]
        #: The existing file the link attempts used instead of a scratch file (the source
        #: given, when it is a file, or a file of a read-only source); else None.
        linked_from: str | None
        linked_from_existing: bool
        #: The existing regular file of the source that the copy, clone and hardlink
        #: verdicts were checked on: ``linked_from``, or (a writable source) one file found
        #: by a small search that was also opened, cloned and linked from. None: the source
        #: holds no file within the search, or nothing could be created in the target.
        existing_file: str | None = None

else:
    _VerdictFields = namedtuple("Verdict", ("mode", "status", "reason", "errno"), defaults=(None,))
    _ProbeFields = namedtuple(
        "Probe",
        ("source", "target", "verdicts", "linked_from", "linked_from_existing", "existing_file"),
        defaults=(None,),
    )


class Verdict(_VerdictFields):
    """The outcome of really attempting one mode between source and target."""

    __slots__ = ()

    @property
    def supported(self) -> bool:
        return self.status is Status.SUPPORTED

    @property
    def errno_name(self) -> str | None:
        if self.errno is None:
            return None
        if self.errno == _errno.EOPNOTSUPP:
            # Linux gives ENOTSUP and EOPNOTSUPP one number; man pages name EOPNOTSUPP.
            return "EOPNOTSUPP"
        return _errno.errorcode.get(self.errno, str(self.errno))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "supported": self.supported,
            "errno": self.errno_name,
            "reason": self.reason,
        }


def _one_mode(mode: LinkMode | str) -> LinkMode:
    """A LinkMode from a LinkMode or a mode word; a word meaning auto names no mode."""
    wanted = parse_mode(mode)
    if wanted is None:
        raise InvalidModeError(str(mode), source="mode", valid=VALID_WORDS[1:])
    return wanted


def best_mode(verdicts: tuple[Verdict, ...], order: Sequence[LinkMode] = AUTO_ORDER) -> LinkMode | None:
    """Clone, then hardlink, then copy (or ``order``); symlink never; None when none works.

    A copy that timed out still counts: copy asks nothing of the pair but that files can
    be created, so when the filesystem is only slow or hung, copy is the safe answer
    (and the verdicts say that it was not verified).
    """
    return _words.best_of(verdicts, order)


class Probe(_ProbeFields):
    """The result of :func:`linkprobe.probe`: one verdict per mode plus the facts."""

    __slots__ = ()

    @property
    def best(self) -> LinkMode | None:
        return best_mode(self.verdicts)

    @property
    def same_device(self) -> bool:
        return self.source.st_dev is not None and self.source.st_dev == self.target.st_dev

    @property
    def timed_out(self) -> bool:
        """Some mode got no answer before the probe's timeout."""
        return any(verdict.status is Status.TIMED_OUT for verdict in self.verdicts)

    @property
    def same_mount(self) -> bool:
        return same_mount(self.source, self.target)

    def verdict(self, mode: LinkMode | str) -> Verdict:
        """The verdict on ``mode``: a LinkMode or a mode word (``"reflink"``, ``"Clone"``).

        :raises InvalidModeError: a word that names no mode (``"auto"`` included).
        """
        return _words.verdict_of(self.verdicts, _one_mode(mode))

    def supports(self, mode: LinkMode | str) -> bool:
        return self.verdict(mode).supported

    def require(self, mode: LinkMode | str | None, *, order: Sequence[LinkMode | str] = AUTO_ORDER) -> LinkMode:
        """Apply the two rules: explicit is verified, never replaced; auto takes the best
        working mode of ``order`` (pnpm's ``clone-or-copy`` is the order clone, copy).

        ``mode`` may be a word as users write it (:func:`~linkprobe.modes.parse_mode`):
        ``"auto"`` or ``""`` mean None, and an order word (``"clone-or-copy"``) is
        that order.

        :raises UnsupportedModeError: ``mode`` was chosen and does not work here.
        :raises NoUsableModeError: auto, and no mode works.
        :raises InvalidModeError: ``mode`` or an entry of ``order`` is not a mode word.
        """
        named_order = parse_order(mode)
        wanted = None if named_order is not None else parse_mode(mode)
        modes = named_order if named_order is not None else tuple(_one_mode(entry) for entry in order)
        return _words.required(self.verdicts, wanted, modes, self.source.given, self.target.given)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best.value if self.best else None,
            "modes": {verdict.mode.value: verdict.to_dict() for verdict in self.verdicts},
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "same_device": self.same_device,
            "same_mount": self.same_mount,
            "timed_out": self.timed_out,
            "linked_from": self.linked_from,
            "linked_from_existing": self.linked_from_existing,
            "existing_file": self.existing_file,
        }


def as_probe(found: Findings) -> Probe:
    """The public result of a probe's findings: each verdict's words as LinkMode and Status."""
    source, target, verdicts, linked_from, linked_from_existing, existing_file = found
    return Probe(
        source,
        target,
        tuple(Verdict(LinkMode(mode), Status(status), reason, code) for mode, status, reason, code in verdicts),
        linked_from,
        linked_from_existing,
        existing_file,
    )
