"""Where a path given to the probe really is: its nearest existing directory, symlinks
resolved, and what a cached answer for it must find unchanged. Never creates anything."""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple

from linkprobe.errors import InvalidPathError, TargetNotDirectoryError
from linkprobe.reasons import errno_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, NamedTuple

__all__ = ["Located", "checked", "locate", "unchanged"]

if TYPE_CHECKING:

    class Located(NamedTuple):
        """Where a given path was found, and what a cache hit must find unchanged."""

        #: The existing directory probed, symlinks resolved.
        directory: str
        #: The source itself when it is a regular file.
        file: str | None
        #: The given path exists (it is ``anchor``).
        exists: bool
        #: The nearest existing path, absolute but as spelled (symlinks not resolved).
        anchor: str
        #: ``anchor``'s stat (symlinks followed): device, inode, mode bits and owner. An
        #: inode number can be reused by a directory made anew, so what decides whether we
        #: may write there is part of it.
        identity: tuple[int, ...]
        #: The first missing component below ``anchor`` when the path does not exist.
        missing: str | None

else:
    Located = namedtuple("Located", ("directory", "file", "exists", "anchor", "identity", "missing"))


#: Linux: a directory opened with O_PATH (no read permission needed, nothing read) and
#: its /proc/self/fd link read back give the kernel's own resolution of the path, in
#: three system calls, where os.path.realpath makes one lstat per component in Python.
_O_PATH: Final[int] = getattr(os, "O_PATH", 0)
_RESOLVE_FLAGS: Final[int] = _O_PATH | getattr(os, "O_CLOEXEC", 0)
#: Where the link of an open descriptor is read, by descriptor number.
_FD_LINKS: Final[str] = "/proc/self/fd/"


def _resolved(path: str) -> str:
    """``os.path.realpath(path, strict=True)`` for an existing ``path``.

    proc(5), /proc/pid/fd: the link names the file as the kernel reached it. When that
    is not a plain absolute path (no /proc, a name removed meanwhile, which reads as
    "... (deleted)", or a path outside this process's root), realpath answers instead.
    """
    if _O_PATH:
        try:
            fd = os.open(path, _RESOLVE_FLAGS)
        except OSError:
            return os.path.realpath(path, strict=True)
        try:
            text = os.readlink(f"{_FD_LINKS}{fd}")
        except OSError:
            text = ""
        finally:
            os.close(fd)
        if text.startswith("/") and not text.endswith(" (deleted)"):
            return text
    return os.path.realpath(path, strict=True)


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_gid)


def unchanged(located: Located) -> bool:
    """One or two stats: the path still leads to the same existing inode, and a missing
    path is still missing at the same place (so its nearest ancestor is the same)."""
    try:
        info = os.stat(located.anchor)
    except OSError:
        return False
    if (info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_gid) != located.identity:
        return False
    if located.missing is None:
        return True
    try:
        os.stat(located.missing)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def checked(path: str | os.PathLike[str], role: str) -> str:
    """``path`` as a string, refused when it is empty or holds a NUL byte."""
    text = os.fspath(path)
    if not text:
        raise InvalidPathError(text, f"{role} path is empty")
    if "\0" in text:
        raise InvalidPathError(text, f"{role} path contains a NUL byte")
    return text


def _stat_or_none(path: str, role: str) -> os.stat_result | None:
    """stat() that says None for "not there yet" and raises for everything else."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise InvalidPathError(path, f"a parent of the {role} is not a directory") from None
    except PermissionError:
        raise InvalidPathError(path, f"permission denied: cannot look inside a parent of the {role}") from None
    except OSError as exc:
        code = errno_of(exc)
        if code == errno.ELOOP:
            raise InvalidPathError(path, f"{role} path has a symlink loop") from None
        if code == errno.ENAMETOOLONG:
            raise InvalidPathError(path, f"{role} path is too long") from None
        raise InvalidPathError(path, f"{role}: {exc.strerror or exc}") from None


def locate(path: str, role: str) -> Located:
    """The nearest existing directory of ``path`` (symlinks resolved) and, for a source
    that is a regular file, that file. Never creates anything."""
    given = current = os.path.abspath(path)
    missing = None
    while True:
        info = _stat_or_none(current, role)
        if info is not None:
            break
        parent = os.path.dirname(current)
        if parent == current:  # a missing drive root on Windows
            raise InvalidPathError(path, f"no part of the {role} path exists")
        current, missing = parent, current
    try:
        resolved = _resolved(current)
    except OSError as exc:  # a symlink loop or a component made unreadable meanwhile
        raise InvalidPathError(path, f"{role} cannot be resolved: {exc.strerror or exc}") from None
    exists = current == given
    identity = _identity(info)
    if stat.S_ISDIR(info.st_mode):
        return Located(resolved, None, exists, current, identity, missing)
    if role == "source" and stat.S_ISREG(info.st_mode) and exists:
        return Located(os.path.dirname(resolved), resolved, exists, current, identity, missing)
    if role == "target" and exists:
        raise TargetNotDirectoryError(path)
    raise InvalidPathError(path, f"{current} is not a directory")
