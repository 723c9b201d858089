"""Which mount a path lives on: pure parsing apart, system reading at the edges.

On Linux the table comes from ``/proc/self/mountinfo`` (it has mount IDs, so two bind
mounts of one filesystem are told apart even when ``st_dev`` is equal); elsewhere, or when
/proc is not mounted, from ``psutil.disk_partitions(all=True)`` — ``all=True`` because the
default drops "nodev" filesystems such as overlay, tmpfs and fuse, a container's ``/``
among them.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Final, NamedTuple

__all__ = [
    "Mount",
    "find_mount",
    "forget_mount_table",
    "fuseblk_subtype",
    "mount_finder",
    "mount_generation",
    "mount_table",
    "parse_mountinfo",
    "unescape_mount_field",
    "with_fuse_subtype",
]


# A named tuple like the results in linkprobe.result: typing.NamedTuple for type checkers,
# the same collections.namedtuple at run time (no dataclasses import at start-up).
if TYPE_CHECKING:

    class _MountFields(NamedTuple):
        mount_point: str
        fstype: str
        device: str
        options: tuple[str, ...] = ()
        mount_id: int | None = None

else:
    _MountFields = namedtuple("Mount", ("mount_point", "fstype", "device", "options", "mount_id"), defaults=((), None))


class Mount(_MountFields):
    """One line of the mount table."""

    __slots__ = ()

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


_OCTAL_DIGITS: Final[str] = "01234567"


def unescape_mount_field(field: str) -> str:
    r"""Undo the kernel's octal escapes in mount fields (space is ``\040``, ``\`` is ``\134``).

    A backslash followed by exactly three octal digits is one character; any other
    backslash stays as it is.
    """
    if "\\" not in field:  # nearly every field: no escape at all
        return field
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(digit in _OCTAL_DIGITS for digit in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/self/mountinfo`` (proc(5)); lines that do not parse are skipped.

    Format: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``.
    """
    mounts = []
    # split("\n"), not splitlines(): the kernel escapes only space, tab, newline and
    # backslash, so a mount point may hold \x1c or \u2028 as they are.
    for line in text.split("\n"):
        fields = line.removesuffix("\r").split(" ")
        try:
            separator = fields.index("-", 6)
            mount_id = int(fields[0])
            mount_point = unescape_mount_field(fields[4])
            options = tuple(fields[5].split(","))
            fstype = unescape_mount_field(fields[separator + 1])
            device = unescape_mount_field(fields[separator + 2])
        except (ValueError, IndexError):
            continue
        mounts.append(Mount(mount_point, fstype, device, options, mount_id))
    return mounts


def find_mount(path: str, mounts: Sequence[Mount], *, sep: str = os.sep) -> Mount | None:
    """The mount a resolved ``path`` lives on: the longest mount point that contains it.

    Of equal mount points the last wins: a later mount hides an earlier one at the same
    place (overmounting). Windows mount points are compared without case.
    """
    return mount_finder(mounts, sep=sep)(path)


def mount_finder(mounts: Sequence[Mount], *, sep: str = os.sep) -> Callable[[str], Mount | None]:
    """:func:`find_mount` over one table for many paths: the table is read once into a
    dict, and each path costs a lookup per path component instead of a pass over
    every mount (a container has a hundred or more)."""
    fold = sep == "\\"
    # A mount point contains a path when the path is the point without its trailing
    # separator (Windows lists volume folders with one), or starts with that plus a
    # separator: so the candidates are the path itself and each of its prefixes that
    # ends before a separator. Per candidate, the longest spelling wins, and of equal
    # lengths the later mount (lengths of the same spelling: casefold() can lengthen
    # a name, "ß" -> "ss").
    best: dict[str, tuple[int, int, Mount]] = {}
    for position, mount in enumerate(mounts):
        point = mount.mount_point.casefold() if fold else mount.mount_point
        candidate = point.removesuffix(sep)
        held = best.get(candidate)
        if held is None or len(point) >= held[0]:
            best[candidate] = (len(point), position, mount)

    def find(path: str) -> Mount | None:
        key = path.casefold() if fold else path
        found = best.get(key)
        end = key.find(sep)
        while end >= 0:
            held = best.get(key[:end])
            if held is not None and (found is None or held[:2] > found[:2]):
                found = held
            end = key.find(sep, end + 1)
        return found[2] if found is not None else None

    return find


#: Boot-sector OEM names (offset 3, 8 bytes) of filesystems usually served by FUSE as
#: plain "fuseblk": mount.exfat-fuse and ntfs-3g set no subtype, so the name is read
#: from the device itself (root only; otherwise the type stays "fuseblk").
_OEM_NAMES: Final[dict[bytes, str]] = {b"EXFAT   ": "exfat", b"NTFS    ": "ntfs"}


def fuseblk_subtype(device: str) -> str | None:
    """The filesystem behind a ``fuseblk`` mount, from its boot sector, or None."""
    try:
        with open(device, "rb") as handle:
            header = handle.read(11)
    except OSError:
        return None
    return _OEM_NAMES.get(header[3:11])


def with_fuse_subtype(mount: Mount) -> Mount:
    """``fuseblk`` becomes ``fuseblk.exfat`` (as mountinfo says when a daemon sets a subtype)."""
    if mount.fstype != "fuseblk" or not mount.device.startswith("/dev/"):
        return mount
    subtype = fuseblk_subtype(mount.device)
    return mount._replace(fstype=f"fuseblk.{subtype}") if subtype else mount


def _from_psutil() -> list[Mount]:
    import psutil  # ~20 ms to import: only paid where /proc/self/mountinfo is missing

    return [
        Mount(part.mountpoint, part.fstype, part.device, tuple(part.opts.split(",")))
        for part in psutil.disk_partitions(all=True)
    ]


#: The live table of this process's mount namespace.
_MOUNTINFO: Final[str] = "/proc/self/mountinfo"
#: poll(2)'s "not an open descriptor" bit (0x20 on Linux, BSDs and macOS).
_POLLNVAL: Final[int] = 0x20


def _read_bytes(path: str) -> bytes:
    """The whole file, read with os.read: a text-mode open() builds a buffered reader and
    a decoder around it, which costs more than the read of a short /proc file does."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = []
        while chunk := os.read(fd, 65536):  # a /proc file tells no size (st_size 0)
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _read_table(mountinfo: str) -> list[Mount]:
    try:
        # The kernel writes mount points as they are but for its octal escapes: bytes
        # that are not UTF-8 survive as surrogates, as os.fsdecode would keep them.
        mounts = parse_mountinfo(_read_bytes(mountinfo).decode("utf-8", "surrogateescape"))
    except OSError:
        mounts = []
    return mounts or _from_psutil()


class _MountWatch:
    """The mount table, read once and re-read only after the kernel said it changed.

    proc(5), "/proc/pid/mountinfo": an open descriptor of the file is pollable; after
    any mount, unmount or remount in the namespace, poll(2) reports POLLPRI|POLLERR on
    it (once per descriptor: the poll itself takes the event). So one poll with a zero
    timeout, about a microsecond, tells whether the table read earlier still holds.
    The event is kept per open file description, and a forked child shares its
    parent's: the child therefore opens its own (see _forget_after_fork).
    """

    def __init__(self) -> None:
        #: Bumped at every change seen, and by reset().
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Forget the descriptor and the table (a forked child's start)."""
        self.lock = allocate_lock()
        self.generation += 1
        self.fd: int | None = None
        #: (st_dev, st_ino) of ``fd`` when opened: is that number still our file?
        self.fd_identity: tuple[int, int] | None = None
        #: The bound ``poll`` method of a ``select.poll`` object watching ``fd``.
        self.poll: Callable[[int], list[tuple[int, int]]] | None = None
        #: False once opening or polling failed: no watch here (no /proc, no poll()).
        self.usable = sys.platform != "win32"
        self.table: list[Mount] | None = None

    def _open(self) -> bool:
        if sys.platform == "win32":  # no /proc, no poll(); keeps mypy --platform win32 honest
            self.usable = False
            return False
        import select

        try:
            fd = os.open(_MOUNTINFO, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self.usable = False
            return False
        info = os.fstat(fd)
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        self.fd, self.poll, self.fd_identity = fd, poller.poll, (info.st_dev, info.st_ino)
        return True

    def restart(self) -> None:
        """Drop the table and the descriptor (closed only if it is still ours), so the
        next call opens a new watch and reads the table afresh (lock held)."""
        if self.fd is not None:
            try:
                info = os.fstat(self.fd)
            except OSError:
                info = None
            if info is not None and (info.st_dev, info.st_ino) == self.fd_identity:
                os.close(self.fd)
        self.fd = self.fd_identity = None
        self.poll = None
        self.table = None
        self.generation += 1

    def current(self) -> int | None:
        """The generation of the table (unchanged while the mounts are); None: no watch.

        Called with ``lock`` held.
        """
        if not self.usable:
            return None
        poll = self.poll
        if poll is None:
            # Open before the first read: a change after the open is then reported.
            if not self._open():
                return None
            self.generation += 1
            return self.generation
        try:
            events = poll(0)
        except OSError:  # EINTR is retried by Python; anything else: poll no more
            events = [(self.fd or -1, _POLLNVAL)]
        if events:
            self.generation += 1
            self.table = None
            if any(flags & _POLLNVAL for _, flags in events):
                # Somebody closed our descriptor (a daemonising library closing every
                # fd). Never close that number ourselves: it may be somebody's file now.
                self.fd = self.fd_identity = None
                self.poll = None
        return self.generation

    def read(self) -> list[Mount]:
        """The table as of the current generation (lock held)."""
        generation = self.current()
        if generation is None:
            return _read_table(_MOUNTINFO)
        if self.table is None:
            self.table = _read_table(_MOUNTINFO)
        return self.table


_watch = _MountWatch()


def _forget_after_fork() -> None:
    """In a forked child: never poll the parent's descriptor (that would take the
    parent's events), and trust nothing read before the fork. The lock is new too: a
    thread of the parent may have held it at the fork, and that thread is gone."""
    watch = _watch
    if watch.fd is not None:
        import contextlib  # here, in a forked child only: not at every start of the command line

        with contextlib.suppress(OSError):
            os.close(watch.fd)  # the child's copy only; the parent's stays open
    watch.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def forget_mount_table() -> None:
    """Read the mount table afresh at the next call, through a newly opened watch (for a
    process that closed descriptors it did not open; :func:`linkprobe.clear_cache` calls
    this). Changes :func:`mount_generation`."""
    watch = _watch
    with watch.lock:
        watch.restart()


def mount_generation() -> int | None:
    """A number that changes whenever this process's mount table changes, or None
    where changes cannot be watched (no pollable ``/proc/self/mountinfo``).

    Costs one ``poll()`` with a zero timeout. Equal numbers from two calls mean that
    no mount, unmount or remount happened in the namespace between them.
    """
    watch = _watch
    with watch.lock:
        return watch.current()


def mount_table(mountinfo: str = _MOUNTINFO, *, watch: bool = True) -> list[Mount]:
    """The live mount table.

    ``/proc/self/mountinfo`` is read once per process and again only after the kernel
    reported a change of the table (see :func:`mount_generation`), so every call sees
    the mounts as they are now. Where that file cannot be watched, for any other
    ``mountinfo`` path, and with ``watch=False`` (a process that asks once: no watch to
    open, nor the select module to import), it is read at every call. Returns a new
    list each time.
    """
    if mountinfo != _MOUNTINFO or not watch:
        return _read_table(mountinfo)
    with _watch.lock:
        return list(_watch.read())
