"""Every exception linkprobe raises, in one place.

All derive from :class:`LinkprobeError`. Errors about bad input also derive from
:class:`ValueError`; errors about what the filesystem refused also derive from
:class:`OSError` and carry ``errno``, both paths and a one-line human ``reason``.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Sequence

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from linkprobe.modes import LinkMode

__all__ = [
    "AuditReadError",
    "InvalidModeError",
    "InvalidPathError",
    "LinkFailedError",
    "LinkModeFallbackWarning",
    "LinkprobeError",
    "NoUsableModeError",
    "TargetNotDirectoryError",
    "UnsupportedModeError",
]


class LinkprobeError(Exception):
    """Base class of every error raised by linkprobe."""


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

    def __init__(self, mode: LinkMode, source: str, target: str, errno: int | None, reason: str) -> None:
        super().__init__(errno or 0, reason, source, None, target)
        self.mode = mode
        self.source = source
        self.target = target
        self.reason = reason


class UnsupportedModeError(_ModeFileError):
    """An explicitly chosen mode does not work between these two paths.

    Raised instead of falling back: a caller who chose a mode wants to know.
    """

    def __str__(self) -> str:
        return f"{self.mode.value} does not work from {self.source} to {self.target}: {self.reason}"


class NoUsableModeError(LinkprobeError, OSError):
    """Auto mode found no way at all to put files from source into target."""

    def __init__(self, source: str, target: str, reasons: dict[LinkMode, str], errno: int | None) -> None:
        summary = "; ".join(f"{mode.value}: {why}" for mode, why in reasons.items())
        super().__init__(errno or 0, summary, source, None, target)
        self.source = source
        self.target = target
        self.reasons = dict(reasons)
        self.reason = summary

    def __str__(self) -> str:
        return f"no mode works from {self.source} to {self.target}: {self.reason}"


class LinkFailedError(_ModeFileError):
    """Materialising one file failed for a reason that is not about the mode."""

    def __str__(self) -> str:
        return f"cannot {self.mode.value} {self.source} to {self.target}: {self.reason}"


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
