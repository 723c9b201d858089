"""The linker's rules when making one file failed: fall back, copy that file, or raise.
Pure: no I/O here. Explicit modes never change (the second rule of the README). Imported
by the linker only when a file failed: ``FailureAction`` is an enum, and importing
``enum`` costs a whole ``link_tree`` process about 3 ms (docs/benchmarks.md)."""

from __future__ import annotations

import enum
import errno

from linkprobe._words import CLONE, COPY, HARDLINK, SYMLINK
from linkprobe.errors import LinkFailedError, UnsupportedModeError
from linkprobe.reasons import MODE_UNSUPPORTED_ERRNOS, PER_FILE_ERRNOS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container, Sequence

    from linkprobe._words import ModeT

__all__ = [
    "FailureAction",
    "error_class",
    "fallback_advice",
    "next_mode",
    "on_failure",
    "on_symlink_failure",
]


class FailureAction(enum.Enum):
    """What the linker does when materialising one file failed."""

    #: The mode does not work for this mount pair: step down, for good (auto only).
    FALL_BACK = "fall-back"
    #: Only this file is the problem: copy it and keep the pair's mode (auto only).
    COPY_FILE = "copy-file"
    #: Not about the mode (ENOENT, EACCES, ENOSPC, ...), or the mode was explicit.
    RAISE = "raise"


def on_failure(mode: str, code: int, *, explicit: bool) -> FailureAction:
    """The linker's rule for a failed file operation. Explicit modes never change."""
    if explicit or mode == COPY:
        return FailureAction.RAISE
    if code in PER_FILE_ERRNOS and mode in (CLONE, HARDLINK):
        return FailureAction.COPY_FILE
    if code == errno.EINVAL and mode == CLONE:
        # The probe already cloned a file on this pair, so EINVAL (ioctl_ficlone(2): e.g.
        # a swap or special file) is about this one file, not the filesystem.
        return FailureAction.COPY_FILE
    if code in MODE_UNSUPPORTED_ERRNOS:
        return FailureAction.FALL_BACK
    return FailureAction.RAISE


def next_mode(prefer: Sequence[ModeT], failed: str, supported: Container[str]) -> ModeT | None:
    """The mode auto mode steps down to after ``failed`` stopped working for a pair.

    The first mode after ``failed`` in ``prefer`` that the probe made work (``supported``);
    else copy, if ``prefer`` lists it after ``failed`` (copy needs nothing from the
    filesystem but room, so a probe that could not show it is no reason to give up); else
    None: no mode left, the failure is an error. Never a mode the caller did not list.
    Modes are LinkModes or their words; the one returned is ``prefer``'s own.
    """
    position = next((index for index, mode in enumerate(prefer) if mode == failed), None)
    if position is None:
        return None
    later = prefer[position + 1 :]
    for mode in later:
        if mode in supported:
            return mode
    return next((mode for mode in later if mode == COPY), None)


def error_class(code: int, *, explicit: bool) -> type[UnsupportedModeError] | type[LinkFailedError]:
    """The exception for a file that could not be made with the pair's mode (after
    :func:`on_failure` said RAISE): a chosen mode that does not work here is
    :class:`UnsupportedModeError`; anything else (a full disk, a missing file, auto mode
    with no mode left) is :class:`LinkFailedError`."""
    if explicit and code in MODE_UNSUPPORTED_ERRNOS:
        return UnsupportedModeError
    return LinkFailedError


def on_symlink_failure(code: int, *, explicit: bool) -> FailureAction:
    """What a failed re-creation of a symlink of the source tree means.

    FALL_BACK: auto mode, and the target cannot hold symlinks at all (exFAT: ENOSYS/EPERM):
    materialise the file the link points to, like ``cp -rL``, and warn once. RAISE: an
    explicit mode (the caller wants the tree as it is or an error), or any other errno
    (ENOSPC, EACCES, ...), which is not about symlinks.
    """
    if explicit:
        return FailureAction.RAISE
    if on_failure(SYMLINK, code, explicit=False) is FailureAction.FALL_BACK:
        return FailureAction.FALL_BACK
    return FailureAction.RAISE


def fallback_advice(mode: str, env: str | None) -> str:
    """How the caller silences a fallback warning: by the variable its users set (the
    Linker's ``env``, e.g. ``UV_LINK_MODE``), or by the argument when there is none."""
    if env:
        return f"{env}={mode!s}"
    return f"pass mode={str(mode)!r} to the Linker"
