"""Every exception linkprobe raises, in one place.

All derive from :class:`LinkprobeError`. Errors about bad input also derive from
:class:`ValueError`; errors about what the filesystem refused also derive from
:class:`OSError` and carry ``errno``, both paths and a one-line human ``reason``.
"""

from __future__ import annotations

import errno as _errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from linkprobe.linker import LinkStats
    from linkprobe.modes import LinkMode

__all__ = [
    "AuditReadError",
    "InvalidArgumentError",
    "InvalidModeError",
    "InvalidPathError",
    "InvalidSourceError",
    "LinkFailedError",
    "LinkModeFallbackWarning",
    "LinkprobeError",
    "NoUsableModeError",
    "SampleError",
    "SourceIsDirectoryError",
    "SourceNotDirectoryError",
    "SourceNotFoundError",
    "TargetInsideSourceError",
    "TargetNotDirectoryError",
    "UnsupportedModeError",
]


def _link_mode(word: str) -> LinkMode:
    # Imported here: linkprobe._words imports this module.
    from linkprobe._words import link_mode

    return link_mode(word)


class LinkprobeError(Exception):
    """Base class of every error raised by linkprobe.

    When :meth:`~linkprobe.Linker.link_tree` fails, the error it raises also carries what
    the call had done (``stats``) and the names it made but could not remove again
    (``not_removed``); see docs/api.md. Other errors leave both at their defaults.
    """

    #: What link_tree had made when it failed (all of it removed again, except
    #: ``not_removed``); None for errors that do not come from link_tree.
    stats: LinkStats | None = None
    #: Paths link_tree created and then left in place, because they were no longer what it
    #: made (replaced, or a directory that somebody else put files into).
    not_removed: tuple[str, ...] = ()


class InvalidArgumentError(LinkprobeError, ValueError):
    """An argument outside what it may be, e.g. ``Linker(workers=0)``."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {name} {value!r}: {reason}")


class InvalidModeError(LinkprobeError, ValueError):
    """A mode word that is not a mode, e.g. ``UV_LINK_MODE=hardlinks``."""

    def __init__(self, value: str, *, source: str, valid: Sequence[str]) -> None:
        self.value = value
        self.source = source
        self.valid = tuple(valid)
        super().__init__(f"invalid {source} {value!r}: expected one of {', '.join(self.valid)}")


class InvalidPathError(LinkprobeError, ValueError):
    """A path that cannot name anything: empty, or containing a NUL byte."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid path {path!r}: {reason}")


class TargetNotDirectoryError(LinkprobeError, NotADirectoryError):
    """The target exists and is not a directory, so nothing can be placed in it."""

    def __init__(self, target: str) -> None:
        super().__init__(_errno.ENOTDIR, "target exists and is not a directory", target)
        self.reason = "target exists and is not a directory"

    def __str__(self) -> str:
        return f"invalid target {self.filename!r}: {self.reason}"


class _ModeFileError(LinkprobeError, OSError):
    """A mode failed between a source and a target path: errno, both paths, one reason."""

    def __init__(self, mode: str, source: str, target: str, errno: int | None, reason: str) -> None:
        super().__init__(errno or 0, reason, source, None, target)
        self._mode = str(mode)
        self.source = source
        self.target = target
        self.reason = reason

    @property
    def mode(self) -> LinkMode:
        """The mode, as a LinkMode. The probe and the linker raise with the mode's word
        (``"clone"``): the enum module is imported only when somebody asks."""
        return _link_mode(self._mode)


class InvalidSourceError(LinkprobeError, OSError):
    """The source given to the Linker cannot be materialised as asked: it does not exist,
    it is a directory (``link``) or not one (``link_tree``), or it is a special file.

    A wrong argument is an error of that one call; it never changes the mode of a pair.
    """

    def __init__(self, source: str, target: str, errno: int, reason: str) -> None:
        super().__init__(errno, reason, source, None, target)
        self.source = source
        self.target = target
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid source {self.source} (for {self.target}): {self.reason}"


class SourceNotFoundError(InvalidSourceError, FileNotFoundError):
    """The source does not exist (``ENOENT``)."""


class SourceIsDirectoryError(InvalidSourceError, IsADirectoryError):
    """:meth:`~linkprobe.Linker.link` was given a directory (``EISDIR``); use ``link_tree``."""


class SourceNotDirectoryError(InvalidSourceError, NotADirectoryError):
    """:meth:`~linkprobe.Linker.link_tree` was given something that is not a directory (``ENOTDIR``)."""


class TargetInsideSourceError(LinkprobeError, ValueError):
    """``link_tree``'s target is the source or lies inside it (symlinks and bind mounts
    resolved): mirroring would copy its own output again, without end, into the source."""

    def __init__(self, source: str, target: str, reason: str) -> None:
        self.source = source
        self.target = target
        self.reason = reason
        super().__init__(f"cannot mirror {source} into {target}: {reason}")


class UnsupportedModeError(_ModeFileError):
    """An explicitly chosen mode does not work between these two paths.

    Raised instead of falling back: a caller who chose a mode wants to know.
    """

    def __str__(self) -> str:
        return f"{self._mode} does not work from {self.source} to {self.target}: {self.reason}"


class NoUsableModeError(LinkprobeError, OSError):
    """Auto mode found no way at all to put files from source into target."""

    def __init__(self, source: str, target: str, reasons: Mapping[str, str], errno: int | None) -> None:
        summary = "; ".join(f"{mode!s}: {why}" for mode, why in reasons.items())
        super().__init__(errno or 0, summary, source, None, target)
        self.source = source
        self.target = target
        self._reasons = {str(mode): why for mode, why in reasons.items()}
        self.reason = summary

    @property
    def reasons(self) -> dict[LinkMode, str]:
        """Why each mode failed, keyed by LinkMode (built on first use, as ``mode`` is)."""
        return {_link_mode(mode): why for mode, why in self._reasons.items()}

    def __str__(self) -> str:
        return f"no mode works from {self.source} to {self.target}: {self.reason}"


class LinkFailedError(_ModeFileError):
    """Materialising one file failed for a reason that is not about the mode."""

    def __str__(self) -> str:
        return f"cannot {self._mode} {self.source} to {self.target}: {self.reason}"


class SampleError(LinkprobeError, ValueError):
    """``bench`` has no tree to measure with: a ``--sample`` that is not a usable
    directory, or a read-only source with nothing to sample; the message says what to pass."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot sample {path}: {reason}")


class LinkModeFallbackWarning(UserWarning):
    """Auto mode stepped down to another mode for a source/target mount pair.

    Emitted once per pair. Silence it by choosing the mode explicitly (``--mode``, the
    ``mode=`` argument or the environment variable), which also turns a later failure
    into an error instead of a fallback.
    """


class AuditReadError(LinkprobeError, OSError):
    """An audit could not read a directory or file it had to look at (an I/O failure,
    not bad input): the errno, the audited pair, the path that failed and one reason."""

    def __init__(self, source: str, target: str, path: str, errno: int | None, reason: str) -> None:
        super().__init__(errno or 0, reason, path)
        self.source = source
        self.target = target
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot audit {self.target} against {self.source}: {self.path}: {self.reason}"
