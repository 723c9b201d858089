"""The OS seam: one small backend per platform behind :class:`LinkBackend`.

Everything that touches the disk to make a file goes through a backend, so the probe and
the linker are the same code on every OS and tests can count or fake the calls here.
Every backend module imports on every OS; only calling it needs the real platform.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from typing import ClassVar, Final

__all__ = [
    "FileIdentity",
    "LinkBackend",
]

#: (st_dev, st_ino): what a name must still point at before we remove it, so that a
#: name replaced by somebody else between our create and our unlink is left alone.
FileIdentity = tuple[int, int]

_O_CLOEXEC: Final[int] = getattr(os, "O_CLOEXEC", 0)
_O_BINARY: Final[int] = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
# O_NOFOLLOW: a planted symlink at our scratch name must never be followed (issue 5);
# O_EXCL already refuses an existing name, this also covers the open of a name we check.
_O_NOFOLLOW: Final[int] = getattr(os, "O_NOFOLLOW", 0)
CREATE_FLAGS: Final[int] = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY | _O_NOFOLLOW
READ_FLAGS: Final[int] = os.O_RDONLY | _O_CLOEXEC | _O_BINARY
#: Permission bits a clone or copy keeps. setuid/setgid are dropped on purpose: a
#: package cache has no business handing out privileges through an install.
KEPT_MODE_BITS: Final[int] = 0o777
_COPY_CHUNK: Final[int] = 1 << 20


class LinkBackend(ABC):
    """Make one file from another. Every method creates ``target`` exclusively.

    Methods raise :class:`OSError` exactly as the OS reported it; deciding what an error
    means is the job of :mod:`linkprobe.reasons`, never of a backend.
    """

    #: Short name shown by ``python -m linkprobe --format text``.
    name: ClassVar[str]

    @abstractmethod
    def clone(self, source: str, target: str) -> None:
        """Create ``target`` sharing ``source``'s data blocks (copy-on-write)."""

    def hardlink(self, source: str, target: str) -> None:
        """Create ``target`` as another name of ``source``'s inode."""
        os.link(source, target)

    def symlink(self, source: str, target: str) -> None:
        """Create ``target`` as a symbolic link whose text is ``source``."""
        os.symlink(source, target)

    def copy(self, source: str, target: str) -> None:
        """Create ``target`` with ``source``'s bytes and permission bits."""
        source_fd = os.open(source, READ_FLAGS)
        try:
            size = os.fstat(source_fd).st_size
            target_fd = self.create_like(source_fd, target)
            try:
                self.copy_data(source_fd, target_fd, size)
            except BaseException:
                os.close(target_fd)
                remove_quietly(target)
                raise
            os.close(target_fd)
        finally:
            os.close(source_fd)

    def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
        """Copy ``size`` bytes between two open files; backends override with faster paths."""
        del size  # the plain loop reads to end of file
        while chunk := os.read(source_fd, _COPY_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(target_fd, view) :]

    def create_like(self, source_fd: int, target: str) -> int:
        """Create ``target`` exclusively with ``source_fd``'s permission bits; return its fd."""
        mode = stat.S_IMODE(os.fstat(source_fd).st_mode) & KEPT_MODE_BITS
        target_fd = os.open(target, CREATE_FLAGS, mode)
        # open() applies the umask, and the source's bits (the executable bit above all)
        # must survive as they are. fchmod only when the umask took something away: it is
        # a metadata write per file (copying 5,000 files was ~1.5x slower with it), while
        # fstat only reads. The umask is not cached: the process may change it any time.
        try:
            if stat.S_IMODE(os.fstat(target_fd).st_mode) != mode and hasattr(os, "fchmod"):
                os.fchmod(target_fd, mode)
        except BaseException:
            os.close(target_fd)
            remove_quietly(target)
            raise
        return target_fd

    def create_scratch(self, path: str, content: bytes = b"linkprobe\n") -> FileIdentity:
        """Create a small file at ``path`` exclusively, never following a planted symlink."""
        fd = os.open(path, CREATE_FLAGS, 0o600)
        try:
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            os.write(fd, content)
        except BaseException:
            os.close(fd)
            remove_quietly(path)
            raise
        os.close(fd)
        return identity

    def identity(self, path: str) -> FileIdentity | None:
        """The (device, inode) of the name itself (never its symlink target), or None."""
        try:
            info = os.lstat(path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def remove_if_same(self, path: str, identity: FileIdentity | None) -> bool:
        """Unlink ``path`` only if it still names ``identity``; True if it was removed.

        With ``identity`` None the caller vouches that the name is its own (it was just
        created by a call that failed before it could report an identity).
        """
        if identity is not None and self.identity(path) != identity:
            return False
        return remove_quietly(path)


def remove_quietly(path: str) -> bool:
    """Unlink ``path``; a name that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
