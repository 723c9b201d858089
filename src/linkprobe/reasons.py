"""errno -> verdict and a one-line reason a user can act on. Pure: no I/O here.

The kernel's answer decides; the facts (mounts, devices, owners) only choose the words.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple

from linkprobe._facts import SideFacts, same_mount
from linkprobe._words import CLONE, COPY, HARDLINK, SYMLINK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final, NamedTuple

__all__ = [
    "MODE_UNSUPPORTED_ERRNOS",
    "PER_FILE_ERRNOS",
    "ReasonContext",
    "errno_of",
    "existing_file_decides",
    "explain_existing_failure",
    "explain_failure",
    "explain_name_too_long",
    "explain_not_probed",
    "explain_success",
    "explain_timeout",
    "source_problem",
    "target_inside_source",
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


# Named tuples, as the results in linkprobe.result: a typing.NamedTuple for type checkers,
# the same collections.namedtuple at run time.
if TYPE_CHECKING:

    class _ReasonContextFields(NamedTuple):
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

else:
    _ReasonContextFields = namedtuple(
        "ReasonContext",
        ("source", "target", "other_owner", "mode_worked", "existing_file", "existing_owner"),
        defaults=(False, False, None, None),
    )


class ReasonContext(_ReasonContextFields):
    """What the words of a reason may draw on."""

    __slots__ = ()

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


def _crossing(mode: str, ctx: ReasonContext) -> str:
    """Words for EXDEV: which boundary was crossed and why it matters."""
    source, target = ctx.source, ctx.target
    if not ctx.same_mount:
        places = f"{_where(source)} vs {_where(target)}"
        if mode == HARDLINK:
            return f"different mounts ({places}): link() never crosses mount points, even of one filesystem"
        if source.fstype == target.fstype and source.st_dev == target.st_dev:
            return f"different mounts ({places}): clones do not cross mount points, even of one filesystem"
        return f"different filesystems ({places}): clones share blocks only within one filesystem"
    if source.st_dev != target.st_dev:
        if mode == HARDLINK:
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


def explain_failure(mode: str, code: int, ctx: ReasonContext) -> str:
    """The reason ``mode`` failed with ``code`` (an errno) when written into the target."""
    if code == errno.EXDEV and mode in (CLONE, HARDLINK):
        return _crossing(mode, ctx)
    fs = _fs(ctx.target)
    if mode == CLONE:
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
    if mode == HARDLINK:
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
    if mode == SYMLINK and code in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, _ENOTSUP):
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
#: the errors that make the linker fall back (see linkprobe.fallback.on_failure), and EACCES (the files
#: cannot be read, so none can be cloned or copied). Not EMLINK or ETXTBSY (that one
#: file only), nor a clone's EINVAL (ioctl_ficlone(2): a swap or special file), nor
#: ENOENT (the file was removed meanwhile, e.g. by a cache prune), nor ELOOP (the name
#: was swapped for a symlink since the search). For copy, only that it can be read.
_EXISTING_FILE_DECIDES: Final[dict[str, frozenset[int]]] = {
    CLONE: (MODE_UNSUPPORTED_ERRNOS | {errno.EACCES}) - {errno.EINVAL},
    HARDLINK: MODE_UNSUPPORTED_ERRNOS | {errno.EACCES},
    COPY: frozenset({errno.EACCES}),
}


def existing_file_decides(mode: str, code: int) -> bool:
    """Whether ``mode`` failing with ``code`` for an existing file of the source (after
    it worked for a scratch file) makes the mode's verdict a failure."""
    return code in _EXISTING_FILE_DECIDES.get(mode, frozenset()) and code not in PER_FILE_ERRNOS


def explain_existing_failure(mode: str, code: int, ctx: ReasonContext) -> str:
    """Why ``mode`` fails for the source's own files although it worked for a new file
    (``ctx.existing_file`` is the file that was tried)."""
    path = ctx.existing_file or "an existing file of the source"
    if mode == HARDLINK and code == errno.EPERM:
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


def explain_success(mode: str, ctx: ReasonContext) -> str:
    """Why ``mode`` works, in the same words a failure would use."""
    fs = _fs(ctx.target)
    if mode == CLONE:
        return f"{fs} shares blocks between files (copy-on-write)"
    if mode == HARDLINK:
        return f"same mount ({ctx.target.mount_point or '?'}, {fs})"
    if mode == SYMLINK:
        return f"{fs} has symbolic links"
    return f"files can be created in {ctx.target.probed}"


def source_problem(st_mode: int | None, *, tree: bool) -> tuple[int, str] | None:
    """What is wrong with a source whose ``stat`` (symlinks followed) gave ``st_mode``
    (None: it does not exist), as (errno, one line); None when nothing is wrong.
    ``tree``: for ``link_tree`` (wants a directory), else for ``link`` (a regular file)."""
    if st_mode is None:
        return (errno.ENOENT, "source does not exist")
    if tree:
        if stat.S_ISDIR(st_mode):
            return None
        return (errno.ENOTDIR, "source is not a directory")
    if stat.S_ISREG(st_mode):
        return None
    if stat.S_ISDIR(st_mode):
        return (errno.EISDIR, "source is a directory (use link_tree for a directory)")
    # Opening a FIFO blocks until a writer comes; a device would be read forever.
    return (errno.EINVAL, "not a regular file, directory or symlink; not copied")


def _inside(path: str, top: str, sep: str) -> bool:
    return path == top or path.startswith(top.rstrip(sep) + sep)


def target_inside_source(real_source: str, real_target: str, *, sep: str = os.sep) -> str | None:
    """Why ``link_tree`` must not mirror ``real_source`` into ``real_target`` (both with
    symlinks resolved and case folded as the OS compares), or None when it may.

    A target equal to the source would make every file over itself; a target inside it
    would be walked as part of the source and mirrored into itself again, level after
    level, until the path is too long (ENAMETOOLONG), all of it written into the source.
    """
    if real_target == real_source:
        return "the target is the source itself"
    if _inside(real_target, real_source, sep):
        return f"the target resolves to {real_target}, inside the source {real_source}"
    return None


#: Linux limits.h: NAME_MAX and PATH_MAX (with its terminating NUL).
_NAME_MAX: Final[int] = 255
_PATH_MAX: Final[int] = 4096


def explain_name_too_long(
    paths: Sequence[str], *, name_max: int = _NAME_MAX, path_max: int = _PATH_MAX, sep: str = os.sep
) -> str:
    """The reason for ENAMETOOLONG, naming the path that is too long: the first of
    ``paths`` (target before source) with a name over ``name_max`` bytes or a length of
    ``path_max`` bytes or more; else the first path, for a filesystem with lower limits."""
    for path in paths:
        size = len(os.fsencode(path))
        longest = max(path.split(sep), key=lambda name: len(os.fsencode(name)))
        longest_size = len(os.fsencode(longest))
        if longest_size > name_max:
            shown = longest if len(longest) <= 40 else f"{longest[:40]}..."
            return f"file name too long: a {longest_size}-byte name ({shown}) in {path} (NAME_MAX {name_max})"
        if size >= path_max:
            return f"path too long: {path} is {size} bytes (PATH_MAX {path_max})"
    first = paths[0] if paths else "?"
    return f"file name too long for this filesystem: {first}"
