"""Scratch-file bookkeeping: names nobody else can predict, created exclusively, pinned
by an O_PATH descriptor, and removed only while the name still holds the file we made."""

from __future__ import annotations

import os

from linkprobe._words import CLONE, COPY, SYMLINK
from linkprobe.api import FileIdentity, LinkBackend, SourceHints, remove_quietly
from linkprobe.reasons import errno_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

__all__ = ["SCRATCH_PREFIX", "Attempts", "scratch_name"]

#: Every scratch name starts with this, so litter (if a process is killed with SIGKILL)
#: is recognisable and safe to delete by hand.
SCRATCH_PREFIX: Final[str] = ".linkprobe-"
#: Linux: an O_PATH descriptor holds a scratch file's inode (a symlink's too, with
#: O_NOFOLLOW) without opening its data. While it is held the inode cannot be freed, so
#: its number cannot be reused by a file somebody creates under our name after deleting
#: ours: the (st_dev, st_ino) check before removal then really means "the file we made".
#: Elsewhere there is no pin (Windows cannot unlink an open file), only the check.
_O_PATH: Final[int] = getattr(os, "O_PATH", 0)
_PIN_FLAGS: Final[int] = _O_PATH | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def scratch_name(directory: str, tag: str) -> str:
    """A new name in ``directory``: SCRATCH_PREFIX, 64 random bits, ``tag``."""
    return os.path.join(directory, f"{SCRATCH_PREFIX}{os.urandom(8).hex()}-{tag}")


class Attempts:
    """Runs the attempts and removes every name it created, whatever happens."""

    def __init__(self, backend: LinkBackend, beat: Callable[[], None]) -> None:
        self.backend = backend
        #: Called before each system call that may wait for the filesystem.
        self.beat = beat
        self.created: list[tuple[str, FileIdentity | None]] = []
        self.pins: list[int] = []  # O_PATH descriptors, closed by clean()

    def record(self, name: str, identity: FileIdentity | None) -> None:
        """Remember ``name`` for clean(), and pin its inode where the OS allows."""
        self.created.append((name, identity))
        self.beat()
        if not _O_PATH or identity is None:
            return
        try:
            pin = os.open(name, _PIN_FLAGS)
        except OSError:  # gone already, or a backend that makes no real files
            return
        try:
            info = os.fstat(pin)
        except BaseException:
            os.close(pin)
            raise
        if (info.st_dev, info.st_ino) == identity:
            self.pins.append(pin)
        else:  # replaced already: the check before removal will leave it alone
            os.close(pin)

    def make_source(self, directory: str) -> tuple[str | None, int | None]:
        """A scratch file in the source directory, or (None, errno) if it cannot take one."""
        name = scratch_name(directory, "src")
        self.beat()
        try:
            self.record(name, self.backend.create_scratch(name))
        except OSError as exc:
            return None, errno_of(exc)
        return name, None

    def attempt(
        self,
        mode: str,
        source_file: str | None,
        source_dir: str,
        target_dir: str,
        *,
        source_is_scratch: bool,
        hints: SourceHints | None = None,
    ) -> int | None:
        """Try one mode; None on success, else the errno. ``hints`` go to a clone."""
        name = scratch_name(target_dir, str(mode))
        backend = self.backend
        self.beat()
        try:
            if mode == SYMLINK:
                backend.symlink(source_file or source_dir, name)
            elif source_file is None or (mode == COPY and not source_is_scratch):
                # A copy from a file that is not our scratch file (a read-only source's,
                # or the source file given) only checks that files can be created: that
                # file may be a large wheel.
                self.record(name, backend.create_scratch(name))
                return None
            elif mode == COPY:
                backend.copy(source_file, name)
            elif mode == CLONE:
                backend.clone(source_file, name, hints)
            else:
                backend.hardlink(source_file, name)
        except OSError as exc:
            return errno_of(exc)
        except BaseException:
            # Interrupted (KeyboardInterrupt) between the kernel creating the name and
            # us recording it. The name holds 64 random bits, created a moment ago by
            # this call: nobody else can have planted it, so it is ours to remove.
            remove_quietly(name)
            raise
        self.record(name, backend.identity(name))
        return None

    def clean(self) -> None:
        try:
            for name, identity in reversed(self.created):
                self.beat()
                try:
                    self.backend.remove_if_same(name, identity)
                except OSError:  # nothing more can be done; the name carries SCRATCH_PREFIX
                    continue
        finally:
            self.created.clear()
            _close_all(self.pins)  # only now may the inode numbers be reused


def _close_all(descriptors: list[int]) -> None:
    """Close and forget every descriptor of the list, also when interrupted.

    Each is taken off the list before it is closed: a KeyboardInterrupt raised just after
    a close(2) returned must leave a list that no longer holds that number (closing it
    again fails with EBADF, or closes the file another thread got the number for). The
    rest are closed before the exception goes on, so that an interrupt does not leave them open.
    """
    while descriptors:
        descriptor = descriptors.pop()
        try:
            os.close(descriptor)
        except BaseException:
            _close_all(descriptors)
            raise
