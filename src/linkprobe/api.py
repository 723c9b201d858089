"""The OS seam: one small backend per platform behind :class:`LinkBackend`.

Everything that touches the disk to make a file goes through a backend, so the probe and
the linker are the same code on every OS and tests can count or fake the calls here.
Every backend module imports on every OS; only calling it needs the real platform.
"""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from collections import namedtuple

from linkprobe._words import CLONE, COPY, HARDLINK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import ClassVar, Final, NamedTuple

    from typing_extensions import override

else:

    def override(method):
        """For backends: a type checker checks that the method overrides one of LinkBackend's
        (a renamed base method would otherwise leave a fast path silently unused); at run time
        it is the identity, so importing typing_extensions costs nothing at start-up."""
        return method


__all__ = [
    "FileIdentity",
    "Fill",
    "LinkBackend",
    "ManyResult",
    "SourceHints",
    "override",
]

#: (st_dev, st_ino): what a name must still point at before we remove it, so that a
#: name replaced by somebody else between our create and our unlink is left alone.
FileIdentity = tuple[int, int]

_O_CLOEXEC: Final[int] = getattr(os, "O_CLOEXEC", 0)
_O_BINARY: Final[int] = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
# O_NOFOLLOW: a symlink planted at our scratch name (by another user of a shared directory)
# must never be followed; O_EXCL already refuses an existing name, this also covers the open
# of a name we check.
_O_NOFOLLOW: Final[int] = getattr(os, "O_NOFOLLOW", 0)
CREATE_FLAGS: Final[int] = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY | _O_NOFOLLOW
#: O_NONBLOCK: opening a FIFO for reading blocks until a writer appears (fifo(7)); a name
#: swapped for one after the caller looked must fail or finish, never hang. It changes
#: nothing for regular files (open(2)).
READ_FLAGS: Final[int] = os.O_RDONLY | _O_CLOEXEC | _O_BINARY | getattr(os, "O_NONBLOCK", 0)
#: Permission bits a clone or copy keeps. setuid/setgid are dropped on purpose: a
#: package cache has no business handing out privileges through an install.
KEPT_MODE_BITS: Final[int] = 0o777
_COPY_CHUNK: Final[int] = 1 << 20

if TYPE_CHECKING:
    #: Writes a new file's content: (source fd, target fd, source size) -> None.
    Fill = Callable[[int, int, int], None]
else:

    def __getattr__(name):
        # Fill exists at run time too, for backends written elsewhere, made at its first
        # use: the command line's start-up has no other use for collections.abc.
        if name != "Fill":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from collections.abc import Callable

        globals()["Fill"] = fill = Callable[[int, int, int], None]
        return fill


if TYPE_CHECKING:

    class SourceHints(NamedTuple):
        """What a caller already knows about a source file, so that materialising thousands
        of files does not look at each one twice. Given at all, hints say the caller saw a
        regular file: it is opened with ``O_NOFOLLOW``, so a name swapped for a symlink
        since then fails (ELOOP) instead of being followed.

        ``mode`` or ``size`` None: not looked at (``os.scandir``'s ``d_type`` said "regular
        file", without an ``lstat``); the backend reads both from the file it opened, with
        one ``fstat`` and no path lookup, and refuses one that is not regular after all.
        """

        #: Permission bits to give the new file (already masked with KEPT_MODE_BITS).
        mode: int | None = None
        #: The size when it was looked at; only a hint: copies run to end of file.
        size: int | None = None
        #: The process umask, read once by the caller; None: check each new file instead.
        umask: int | None = None

else:  # the same named tuple, built without importing typing
    SourceHints = namedtuple("SourceHints", ("mode", "size", "umask"), defaults=(None, None, None))
    SourceHints.__doc__ = "What a caller already knows about a source file: permission bits, size, umask."


#: What :meth:`LinkBackend.make_many` returns: the index of the first file not made, the
#: error that stopped it (None: every file was made, or the byte budget was reached) and
#: the bytes of the files made (their sizes when opened; 0 for hard links).
ManyResult = tuple[int, "OSError | None", int]


class LinkBackend(ABC):
    """Make one file from another. Every method creates ``target`` exclusively.

    Methods raise :class:`OSError` exactly as the OS reported it; deciding what an error
    means is the job of :mod:`linkprobe.reasons`, never of a backend.
    """

    #: Short name shown by ``python -m linkprobe --format text``.
    name: ClassVar[str]

    @abstractmethod
    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        """Create ``target`` sharing ``source``'s data blocks (copy-on-write)."""

    def hardlink(self, source: str, target: str) -> None:
        """Create ``target`` as another name of ``source``'s inode."""
        os.link(source, target)

    def symlink(self, source: str, target: str) -> None:
        """Create ``target`` as a symbolic link whose text is ``source``."""
        os.symlink(source, target)

    def copy(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        """Create ``target`` with ``source``'s bytes and permission bits."""
        self.fill_new_file(source, target, self.copy_data, hints)

    def make(self, mode: str, source: str, target: str, hints: SourceHints | None = None) -> None:
        """Create ``target`` from ``source`` with ``mode`` (a mode word such as ``"clone"``;
        a LinkMode is one): the one-file method for it.

        A symlink gets the absolute path of ``source``: a relative text would point
        elsewhere from the target's directory.
        """
        if mode == HARDLINK:
            self.hardlink(source, target)
        elif mode == CLONE:
            self.clone(source, target, hints)
        elif mode == COPY:
            self.copy(source, target, hints)
        else:
            self.symlink(os.path.abspath(source), target)

    def make_many(
        self,
        mode: str,
        source_dir: str,
        target_dir: str,
        files: Sequence[tuple[str, SourceHints]],
        start: int = 0,
        budget: int | None = None,
    ) -> ManyResult:
        """Create ``target_dir/NAME`` from ``source_dir/NAME`` with ``mode`` for each
        (NAME, hints) of ``files[start:]``, in order, until one fails.

        Returns the index of the file that failed, its error and the bytes made before it,
        or ``(len(files), None, bytes)``. With ``budget``, it may also stop without an error
        once the files made hold that many bytes: the index is then the first file not
        made (the caller spreads the rest over threads). What an error means is the
        caller's to decide, as for one file. This base class calls :meth:`make` per file,
        after one ``lstat`` for hints without a size (for the bytes; hard links count
        none); a backend may override it to work relative to directory descriptors, which
        saves a path lookup per name.
        """
        made = 0
        for index in range(start, len(files)):
            name, hints = files[index]
            source = os.path.join(source_dir, name)
            try:
                if mode != HARDLINK and hints.size is None:
                    hints = looked_at(source, hints)
                self.make(mode, source, os.path.join(target_dir, name), hints)
            except OSError as exc:
                return index, exc, made
            if mode != HARDLINK:
                made += hints.size or 0
                if budget is not None and made >= budget:
                    return index + 1, None, made
        return len(files), None, made

    def copy_data(self, source_fd: int, target_fd: int, size: int) -> None:
        """Copy ``size`` bytes between two open files; backends override with faster paths."""
        del size  # the plain loop reads to end of file
        while chunk := os.read(source_fd, _COPY_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(target_fd, view) :]

    def fill_new_file(
        self,
        source: str,
        target: str,
        fill: Fill,
        hints: SourceHints | None = None,
        *,
        source_dir_fd: int | None = None,
        target_dir_fd: int | None = None,
    ) -> int:
        """Create ``target`` exclusively with ``source``'s permission bits and let ``fill``
        write its content; if anything fails, ``target`` is removed again. Returns the
        source's size as seen when it was opened (or as hinted).

        The one shape of copy and of fd-based clones (FICLONE, FSCTL_DUPLICATE_EXTENTS),
        for whole paths or (``make_many``'s fast path) names relative to directory fds.
        """
        # With hints, the caller saw a regular file and its mode bits are what the new file
        # gets: a name swapped for a symlink since then must fail (ELOOP), not be followed.
        flags = READ_FLAGS if hints is None else READ_FLAGS | _O_NOFOLLOW
        source_fd = os.open(source, flags, dir_fd=source_dir_fd)
        try:
            mode, size, umask = (None, None, None) if hints is None else hints
            if mode is None or size is None:
                info = os.fstat(source_fd)
                if not stat.S_ISREG(info.st_mode):  # a FIFO, device or directory: no data to copy
                    raise OSError(errno.EINVAL, "not a regular file", source)
                mode, size = stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size
            target_fd = self.create_like(mode, target, umask, dir_fd=target_dir_fd)
            try:
                fill(source_fd, target_fd, size)
            except BaseException:
                os.close(target_fd)
                remove_quietly(target, dir_fd=target_dir_fd)
                raise
            try:
                os.close(target_fd)  # NFS reports ENOSPC and EDQUOT at close() at the latest
            except OSError:
                remove_quietly(target, dir_fd=target_dir_fd)
                raise
        finally:
            os.close(source_fd)
        return size

    def create_like(self, mode: int, target: str, umask: int | None = None, *, dir_fd: int | None = None) -> int:
        """Create ``target`` exclusively with permission bits ``mode``; return its fd.

        open() applies the umask, and the source's bits (the executable bit above all)
        must survive as they are, so fchmod when the umask took something away. With the
        ``umask`` known, that is decided without a syscall; otherwise by one fstat (it
        only reads, while an fchmod per file made copying 5,000 files ~1.5x slower). A
        default ACL on the directory replaces the umask for new files; a caller that
        passes ``umask`` accepts the umask's rule (cp does the same).
        """
        target_fd = os.open(target, CREATE_FLAGS, mode, dir_fd=dir_fd)
        try:
            if umask is None:
                umask = KEPT_MODE_BITS & ~stat.S_IMODE(os.fstat(target_fd).st_mode)
            stripped = bool(mode & umask)
            if stripped and hasattr(os, "fchmod"):
                os.fchmod(target_fd, mode)
        except BaseException:
            os.close(target_fd)
            remove_quietly(target, dir_fd=dir_fd)
            raise
        return target_fd

    def has_default_acl(self, directory: str) -> bool:
        """Whether new files in ``directory`` take their permission bits from a default
        ACL instead of the umask; then a known umask says nothing about them. Only asked
        when :meth:`umask` is known, so the base class (which knows no umask) says no."""
        del directory
        return False

    def umask(self) -> int | None:
        """The process umask if it can be read without changing it; None otherwise.

        ``os.umask`` can only be read by setting it, and another thread creating a file
        in that moment would get the wrong permissions, so the base class does not try.
        """
        return None

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


def looked_at(source: str, hints: SourceHints) -> SourceHints:
    """``hints`` with the mode bits and size of ``source`` (an lstat), if it is a regular
    file; else unchanged, for the open to refuse (ELOOP for a symlink, EINVAL otherwise)."""
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        return hints
    return SourceHints(stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size, hints.umask)


def remove_quietly(path: str, *, dir_fd: int | None = None) -> bool:
    """Unlink ``path``; a name that is already gone is not an error."""
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True
