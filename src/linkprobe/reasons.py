"""errno -> verdict and a one-line reason a user can act on. Pure: no I/O here.

The kernel's answer decides; the facts (mounts, devices, owners) only choose the words.
"""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass

from linkprobe.modes import LinkMode
from linkprobe.result import SideFacts, same_mount

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "MODE_UNSUPPORTED_ERRNOS",
    "PER_FILE_ERRNOS",
    "FailureAction",
    "ReasonContext",
    "errno_of",
    "existing_file_decides",
    "explain_existing_failure",
    "explain_failure",
    "explain_not_probed",
    "explain_success",
    "explain_timeout",
    "on_failure",
]

_ENOTSUP: Final[int] = getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)

#: Errors that say "this mode does not work between these two places", for every file:
#: EXDEV (different mounts or filesystems, link(2)), EOPNOTSUPP/ENOTSUP (no reflink, no
#: links), ENOSYS (exFAT's FUSE driver has no symlink), ENOTTY/EINVAL (FICLONE not
#: implemented, ioctl_ficlone(2)), EPERM (no hard links on this filesystem, or
#: fs.protected_hardlinks for a cache owned by someone else, which holds for every file).
MODE_UNSUPPORTED_ERRNOS: Final[frozenset[int]] = frozenset(
    {errno.EXDEV, errno.EOPNOTSUPP, _ENOTSUP, errno.ENOSYS, errno.ENOTTY, errno.EINVAL, errno.EPERM}
)

#: Errors about one file only: its link count is at the limit (EMLINK, ext4 65,000), or it
#: is busy as a swap file (ETXTBSY). Copy that file; the mode stays good for the pair.
PER_FILE_ERRNOS: Final[frozenset[int]] = frozenset({errno.EMLINK, errno.ETXTBSY})

#: Windows: CPython maps most Win32 link and clone failures to EINVAL, so read winerror.
_WINERROR_TO_ERRNO: Final[dict[int, int]] = {
    1: errno.EOPNOTSUPP,  # ERROR_INVALID_FUNCTION: the volume has no block cloning
    2: errno.ENOENT,  # ERROR_FILE_NOT_FOUND
    3: errno.ENOENT,  # ERROR_PATH_NOT_FOUND
    5: errno.EACCES,  # ERROR_ACCESS_DENIED
    17: errno.EXDEV,  # ERROR_NOT_SAME_DEVICE
    19: errno.EROFS,  # ERROR_WRITE_PROTECT
    39: errno.ENOSPC,  # ERROR_HANDLE_DISK_FULL
    50: errno.EOPNOTSUPP,  # ERROR_NOT_SUPPORTED: e.g. hard links on FAT
    80: errno.EEXIST,  # ERROR_FILE_EXISTS
    112: errno.ENOSPC,  # ERROR_DISK_FULL
    183: errno.EEXIST,  # ERROR_ALREADY_EXISTS
    1142: errno.EMLINK,  # ERROR_TOO_MANY_LINKS (NTFS: 1,023)
    1314: errno.EPERM,  # ERROR_PRIVILEGE_NOT_HELD: symlinks without Developer Mode
}


def errno_of(exc: OSError) -> int:
    """The errno that describes ``exc`` on every OS (Windows: from ``winerror``)."""
    winerror = getattr(exc, "winerror", None)
    if isinstance(winerror, int) and winerror in _WINERROR_TO_ERRNO:
        return _WINERROR_TO_ERRNO[winerror]
    return exc.errno if exc.errno is not None else errno.EIO


@dataclass(frozen=True)
class ReasonContext:
    """What the words of a reason may draw on."""

    source: SideFacts
    target: SideFacts
    #: The file linked from belongs to another user and we are not root: the case
    #: fs.protected_hardlinks (proc(5)) refuses with EPERM.
    other_owner: bool = False
    #: The probe already made this mode work between these two places (the linker's
    #: case): a refusal now is about one file, not about the filesystem.
    mode_worked: bool = False
    #: An existing file of the source that links were made from (a read-only source,
    #: or a source that is a file) or that a verdict was checked on.
    existing_file: str | None = None
    #: The uid owning ``existing_file`` when that is not us and we are not root.
    existing_owner: int | None = None

    @property
    def same_mount(self) -> bool:
        return same_mount(self.source, self.target)


def _fs(side: SideFacts) -> str:
    fstype = side.fstype or "this filesystem"
    # FUSE reports "fuse.NAME"/"fuseblk.NAME" when the daemon sets a subtype.
    for prefix in ("fuse.", "fuseblk."):
        if fstype.startswith(prefix):
            return fstype[len(prefix) :]
    return fstype


def _where(side: SideFacts) -> str:
    return f"{side.probed} on {side.mount_point or '?'}"


def _crossing(mode: LinkMode, ctx: ReasonContext) -> str:
    """Words for EXDEV: which boundary was crossed and why it matters."""
    source, target = ctx.source, ctx.target
    if not ctx.same_mount:
        places = f"{_where(source)} vs {_where(target)}"
        if mode is LinkMode.HARDLINK:
            return f"different mounts ({places}): link() never crosses mount points, even of one filesystem"
        if source.fstype == target.fstype and source.st_dev == target.st_dev:
            return f"different mounts ({places}): clones do not cross mount points, even of one filesystem"
        return f"different filesystems ({places}): clones share blocks only within one filesystem"
    if source.st_dev != target.st_dev:
        if mode is LinkMode.HARDLINK:
            return (
                f"different {_fs(target)} subvolumes (st_dev {source.st_dev} vs {target.st_dev}): "
                "link() never crosses subvolumes"
            )
        return f"different {_fs(target)} subvolumes (st_dev {source.st_dev} vs {target.st_dev})"
    return "source and target are on different filesystems"


def _side_failure(code: int, side_name: str, side: SideFacts) -> str | None:
    """Reasons that are about one side rather than about the mode."""
    if code == errno.EROFS:
        return f"{side_name} is read-only ({side.mount_point or side.probed} is mounted read-only)"
    if code == errno.ENOSPC:
        return f"no space left on {side_name} ({side.mount_point or side.probed}: no free blocks or inodes)"
    if code == errno.EDQUOT:
        return f"disk quota exceeded on {side_name} ({side.probed})"
    if code in (errno.EACCES,):
        return f"permission denied: cannot create files in {side_name} {side.probed}"
    if code == errno.ENAMETOOLONG:
        return f"path too long in {side_name} {side.probed}"
    return None


def explain_failure(mode: LinkMode, code: int, ctx: ReasonContext) -> str:
    """The reason ``mode`` failed with ``code`` (an errno) when written into the target."""
    if code == errno.EXDEV and mode in (LinkMode.CLONE, LinkMode.HARDLINK):
        return _crossing(mode, ctx)
    fs = _fs(ctx.target)
    if mode is LinkMode.CLONE:
        if code in (errno.EOPNOTSUPP, _ENOTSUP):
            return (
                f"{fs} has no reflink support"
                if ctx.source.fstype == ctx.target.fstype
                else (f"no reflink support between {_fs(ctx.source)} and {fs}")
            )
        if code in (errno.ENOTTY, errno.ENOSYS):
            return f"{fs} does not implement FICLONE"
        if code == errno.EINVAL:
            return f"{fs} refused to clone this file (EINVAL)"
    if mode is LinkMode.HARDLINK:
        if code == errno.EPERM:
            if ctx.existing_owner is not None:
                return _protected_hardlinks(ctx.existing_owner)
            if ctx.other_owner:
                return "protected_hardlinks: the file belongs to another user"
            if ctx.mode_worked:
                # link(2): EPERM for an immutable or append-only file too; and
                # fs.protected_hardlinks for files of another user the probe did not see.
                return (
                    "the kernel refused to link this file (EPERM): it belongs to another user "
                    "(fs.protected_hardlinks) or is immutable or append-only"
                )
            return f"{fs} has no hard links"
        if code in (errno.EOPNOTSUPP, _ENOTSUP):
            return f"{fs} has no hard links"
        if code == errno.EMLINK:
            return "the file already has the maximum number of hard links"
    if mode is LinkMode.SYMLINK and code in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, _ENOTSUP):
        return f"{fs} has no symbolic links"
    side = _side_failure(code, "target", ctx.target)
    if side is not None:
        return side
    return f"{os.strerror(code).lower()} ({errno.errorcode.get(code, code)})"


def _protected_hardlinks(owner: int) -> str:
    # proc(5), /proc/sys/fs/protected_hardlinks: link(2) of a file we do not own needs
    # read and write access to it (or CAP_FOWNER); a cache of another user's 0644 files
    # gives neither.
    return f"the source's files belong to uid {owner}; fs.protected_hardlinks forbids linking them"


#: Errors from an attempt on an existing file of the source that mean the mode does
#: not work for the source's real files, although it worked for a scratch file there:
#: the errors that make the linker fall back (see on_failure), and EACCES (the files
#: cannot be read, so none can be cloned or copied). Not EMLINK or ETXTBSY (that one
#: file only), nor a clone's EINVAL (ioctl_ficlone(2): a swap or special file), nor
#: ENOENT (the file was removed meanwhile, e.g. by a cache prune), nor ELOOP (the name
#: was swapped for a symlink since the search). For copy, only that it can be read.
_EXISTING_FILE_DECIDES: Final[dict[LinkMode, frozenset[int]]] = {
    LinkMode.CLONE: (MODE_UNSUPPORTED_ERRNOS | {errno.EACCES}) - {errno.EINVAL},
    LinkMode.HARDLINK: MODE_UNSUPPORTED_ERRNOS | {errno.EACCES},
    LinkMode.COPY: frozenset({errno.EACCES}),
}


def existing_file_decides(mode: LinkMode, code: int) -> bool:
    """Whether ``mode`` failing with ``code`` for an existing file of the source (after
    it worked for a scratch file) makes the mode's verdict a failure."""
    return code in _EXISTING_FILE_DECIDES.get(mode, frozenset()) and code not in PER_FILE_ERRNOS


def explain_existing_failure(mode: LinkMode, code: int, ctx: ReasonContext) -> str:
    """Why ``mode`` fails for the source's own files although it worked for a new file
    (``ctx.existing_file`` is the file that was tried)."""
    path = ctx.existing_file or "an existing file of the source"
    if mode is LinkMode.HARDLINK and code == errno.EPERM:
        if ctx.existing_owner is not None:
            return f"{_protected_hardlinks(ctx.existing_owner)} (tried {path})"
        # link(2): EPERM also for an immutable or append-only file (chattr +i/+a).
        return f"the kernel refused to link the source's file {path} (EPERM): immutable or append-only?"
    if code == errno.EACCES:
        return f"the source's files cannot be read (permission denied on {path})"
    # Linux gives ENOTSUP and EOPNOTSUPP one number; the man pages name EOPNOTSUPP.
    name = "EOPNOTSUPP" if code == errno.EOPNOTSUPP else errno.errorcode.get(code, str(code))
    return f"works for a new file but not for the source's file {path}: {os.strerror(code).lower()} ({name})"


def explain_not_probed(code: int, ctx: ReasonContext) -> str:
    """Why clone and hardlink were not attempted: no file to link from on the source side."""
    why = _side_failure(code, "source", ctx.source) or os.strerror(code).lower()
    return f"not probed: {why}, and the source holds no regular file to link from"


def explain_timeout(seconds: float) -> str:
    """Why a mode has no verdict: the filesystem did not answer before the deadline."""
    return (
        f"no answer from the filesystem within {seconds:g} s "
        "(a stopped FUSE daemon or an unreachable network filesystem?)"
    )


def explain_success(mode: LinkMode, ctx: ReasonContext) -> str:
    """Why ``mode`` works, in the same words a failure would use."""
    fs = _fs(ctx.target)
    if mode is LinkMode.CLONE:
        return f"{fs} shares blocks between files (copy-on-write)"
    if mode is LinkMode.HARDLINK:
        return f"same mount ({ctx.target.mount_point or '?'}, {fs})"
    if mode is LinkMode.SYMLINK:
        return f"{fs} has symbolic links"
    return f"files can be created in {ctx.target.probed}"


class FailureAction(enum.Enum):
    """What the linker does when materialising one file failed."""

    #: The mode does not work for this mount pair: step down, for good (auto only).
    FALL_BACK = "fall-back"
    #: Only this file is the problem: copy it and keep the pair's mode (auto only).
    COPY_FILE = "copy-file"
    #: Not about the mode (ENOENT, EACCES, ENOSPC, ...), or the mode was explicit.
    RAISE = "raise"


def on_failure(mode: LinkMode, code: int, *, explicit: bool) -> FailureAction:
    """The linker's rule for a failed file operation. Explicit modes never change."""
    if explicit or mode is LinkMode.COPY:
        return FailureAction.RAISE
    if code in PER_FILE_ERRNOS and mode in (LinkMode.CLONE, LinkMode.HARDLINK):
        return FailureAction.COPY_FILE
    if code == errno.EINVAL and mode is LinkMode.CLONE:
        # The probe already cloned a file on this pair, so EINVAL (ioctl_ficlone(2): e.g.
        # a swap or special file) is about this one file, not the filesystem.
        return FailureAction.COPY_FILE
    if code in MODE_UNSUPPORTED_ERRNOS:
        return FailureAction.FALL_BACK
    return FailureAction.RAISE
