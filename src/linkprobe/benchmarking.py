"""``linkprobe.bench``: what each working mode costs between a source and a target, measured.

A probe says which modes work; this times them. For every working mode it materialises
one sample tree from the source side into a scratch directory on the target side with the
real :class:`~linkprobe.Linker` (the mode chosen explicitly, so nothing falls back), several
rounds, and records the wall time and the disk bytes the result really occupies, counted
by the audit's accounting (:mod:`linkprobe.audit`), so that both commands give one answer.

Everything it creates is named ``.linkprobe-…``: the synthetic sample (under the source),
the results (under the target's nearest existing ancestor; the target itself is never
created). All of it is removed before :func:`bench` returns, also on errors and
``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import random
import shutil
import signal
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from linkprobe._bench_rules import (
    DEFAULT_FILES,
    DEFAULT_ROUNDS,
    Figures,
    advice,
    best_timed,
    choose_subtree,
    fastest_timed,
    median,
    own_bytes,
    synthetic_shape,
)
from linkprobe.errors import InvalidPathError, LinkprobeError, NoUsableModeError, SampleError
from linkprobe.modes import AUTO_ORDER, LinkMode
from linkprobe.mounts import find_mount, mount_table
from linkprobe.probe import SCRATCH_PREFIX, probe
from linkprobe.result import Probe, SideFacts, Status, Verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "DEFAULT_FILES",
    "DEFAULT_ROUNDS",
    "SCHEMA_VERSION",
    "BenchResult",
    "Machine",
    "ModeBench",
    "Projection",
    "SampleInfo",
    "ScaledMode",
    "bench",
]

#: Version of :meth:`BenchResult.to_dict`'s layout; raised when a key changes meaning.
SCHEMA_VERSION: Final[int] = 1
#: The order modes are timed in, round after round (interleaved, so that a burst of load
#: from elsewhere falls on every mode alike rather than on one).
_TIMING_ORDER: Final[tuple[LinkMode, ...]] = (*AUTO_ORDER, LinkMode.SYMLINK)
#: Directory entries looked at to find a tree in a read-only source, or to count --scale-to.
_WALK_LIMIT: Final[int] = 200_000
#: Errors that mean "this source takes no new files": sample from what is there instead.
_READ_ONLY_ERRNOS: Final[frozenset[int]] = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_CREATE_FLAGS: Final[int] = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)

#: Reports what bench is doing, one short line at a time (the CLI shows it on a terminal).
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SampleInfo:
    """The tree that was materialised: how many regular files, how many bytes, from where."""

    files: int
    bytes: int
    #: ``"synthetic"`` (written by bench), ``"sample"`` (``sample=``) or ``"existing"``
    #: (a tree already in a read-only source).
    origin: str
    #: The directory the files were read from; None for a synthetic tree.
    path: str | None
    #: The seed of a synthetic tree; None otherwise.
    seed: int | None
    #: True when ``sample=`` lived on another filesystem and was copied to the source side.
    copied: bool = False
    symlinks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "from": self.origin,
            "path": self.path,
            "seed": self.seed,
            "copied_to_source": self.copied,
            "symlinks": self.symlinks,
        }


@dataclass(frozen=True)
class ModeBench:
    """One mode's figures; ``round_seconds`` is empty when the mode was not timed."""

    mode: LinkMode
    #: ``"timed"``; or why not: the probe's status (``"unsupported"``, ``"not-probed"``,
    #: ``"timed-out"``), or ``"failed"`` when the probe said yes and materialising the
    #: sample failed (e.g. ENOSPC).
    status: str
    reason: str
    errno: int | None
    round_seconds: tuple[float, ...]
    #: Bytes of the result not shared with the sample (the audit's copy + other data).
    disk_bytes: int | None
    #: Regular files and their bytes materialised per round (the sample's, when not timed).
    files: int
    bytes: int

    @property
    def timed(self) -> bool:
        return bool(self.round_seconds)

    @property
    def errno_name(self) -> str | None:
        """As :attr:`Verdict.errno_name <linkprobe.Verdict.errno_name>`: EOPNOTSUPP, not ENOTSUP."""
        if self.errno is None:
            return None
        return Verdict(self.mode, Status.UNSUPPORTED, self.reason, self.errno).errno_name

    @property
    def seconds(self) -> float | None:
        """The fastest round: the figure least disturbed by other load on the machine."""
        return min(self.round_seconds) if self.round_seconds else None

    @property
    def median_seconds(self) -> float | None:
        return median(self.round_seconds) if self.round_seconds else None

    @property
    def files_per_second(self) -> float | None:
        seconds = self.seconds
        return self.files / seconds if seconds else None

    @property
    def bytes_per_second(self) -> float | None:
        seconds = self.seconds
        return self.bytes / seconds if seconds else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "errno": self.errno_name,
            "seconds": self.seconds,
            "median_seconds": self.median_seconds,
            "round_seconds": list(self.round_seconds),
            "files_per_second": self.files_per_second,
            "bytes_per_second": self.bytes_per_second,
            "disk_bytes": self.disk_bytes,
            "files": self.files,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Machine:
    """Where the figures were taken."""

    os: str
    kernel: str
    arch: str
    cpus: int | None
    python: str
    #: ISO 8601, UTC, when the run finished.
    date: str
    source_fstype: str | None
    target_fstype: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "os": self.os,
            "kernel": self.kernel,
            "arch": self.arch,
            "cpus": self.cpus,
            "python": self.python,
            "date": self.date,
            "filesystems": {"source": self.source_fstype, "target": self.target_fstype},
        }


@dataclass(frozen=True)
class ScaledMode:
    mode: LinkMode
    seconds: float
    disk_bytes: int | None


@dataclass(frozen=True)
class Projection:
    """The figures scaled to a real tree (``scale_to=``): time by its file count, disk by its
    bytes. A straight line through one measured point, not a measurement."""

    path: str
    files: int
    bytes: int
    modes: tuple[ScaledMode, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "files": self.files,
            "bytes": self.bytes,
            "modes": {m.mode.value: {"seconds": m.seconds, "disk_bytes": m.disk_bytes} for m in self.modes},
        }


@dataclass(frozen=True)
class BenchResult:
    """The result of :func:`bench`."""

    source: SideFacts
    target: SideFacts
    sample: SampleInfo
    rounds: int
    #: One entry per mode, in :class:`LinkMode` order.
    modes: tuple[ModeBench, ...]
    machine: Machine
    probe: Probe
    scale: Projection | None = None

    def mode(self, mode: LinkMode | str) -> ModeBench:
        wanted = LinkMode(mode)
        return next(entry for entry in self.modes if entry.mode is wanted)

    def _figures(self) -> dict[LinkMode, Figures]:
        return {
            entry.mode: Figures(entry.seconds, entry.disk_bytes) for entry in self.modes if entry.seconds is not None
        }

    @property
    def best(self) -> LinkMode | None:
        """What auto would pick among the modes that were timed: clone > hardlink > copy."""
        return best_timed(self._figures())

    @property
    def fastest(self) -> LinkMode | None:
        """The timed mode with the shortest time, symlink included."""
        return fastest_timed(self._figures())

    @property
    def advice(self) -> str:
        """One line: what the best mode gains over copy here, in time and disk."""
        return advice(self._figures(), self.sample.files, self.sample.bytes)

    def to_dict(self) -> dict[str, Any]:
        best, fastest = self.best, self.fastest
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source.given,
            "target": self.target.given,
            "sample": self.sample.to_dict(),
            "rounds": self.rounds,
            "modes": {entry.mode.value: entry.to_dict() for entry in self.modes},
            "best": best.value if best else None,
            "fastest": fastest.value if fastest else None,
            "advice": self.advice,
            "scale": self.scale.to_dict() if self.scale else None,
            "machine": self.machine.to_dict(),
        }


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait while scratch names are created, recorded or removed: a
    signal in between would leave a name nobody removes. Delivered when the block ends."""
    if sys.platform == "win32":  # no signal masks; Ctrl-C still unwinds through finally
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Scratch:
    """The ``.linkprobe-bench-…`` directories of one run, removed by :meth:`remove`."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def directory(self, parent: str, tag: str) -> str:
        path = os.path.join(parent, f"{SCRATCH_PREFIX}bench-{tag}{os.urandom(6).hex()}")
        with _signals_held():  # made and recorded as one step
            os.mkdir(path, 0o755)
            self.paths.append(path)
        _writable_directory(path)
        return path

    def remove(self) -> None:
        with _signals_held():
            for path in reversed(self.paths):
                _remove_tree(path)
            self.paths.clear()


def _writable_directory(path: str) -> None:
    """Make a directory bench created writable for its owner whatever the umask: a umask
    that takes the owner's write bit (0o2xx) would leave it unwritable for bench itself.
    chmod(2) is not masked by the umask, mkdir(2) is. Only bench reads its scratch trees,
    so the owner's bits are all they need."""
    os.chmod(path, stat.S_IRWXU)


#: Directory descriptors for _remove_tree: never through a symlink (O_NOFOLLOW: ELOOP),
#: never anything but a directory (O_DIRECTORY: ENOTDIR).
_TREE_FLAGS: Final[int] = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
#: Whether trees are removed through directory descriptors (POSIX); else by path (Windows).
_BY_DESCRIPTOR: Final[bool] = {os.open, os.unlink, os.rmdir} <= os.supports_dir_fd and os.scandir in os.supports_fd


def _remove_tree(path: str) -> None:
    """Remove a scratch tree; a tree that is already gone is not an error.

    SIGINT and SIGTERM wait until it is done (an interrupted run removes the tree on its
    way out anyway). Not with shutil.rmtree: that of Python 3.10 to 3.12 closes each
    directory descriptor and only then notes that it did (``os.close(dirfd)``, then
    ``dirfd_closed = True``, in Lib/shutil.py), so a KeyboardInterrupt raised between the
    two makes its ``finally`` close the number again: EBADF, which replaces the
    KeyboardInterrupt (3.10, 3.11; 3.12 passes it to the error handler), or, in a process
    with other threads, the file another thread opened under that number meanwhile. A
    signal mask does not rule that out there: the kernel gives the signal to a thread that
    does not block it, and Python raises it in the main thread all the same.
    """
    with _signals_held():
        if _BY_DESCRIPTOR:
            _remove_by_descriptor(path)
        elif os.path.lexists(path):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path)  # by path there (no dir_fd): no descriptor to close twice


def _remove_by_descriptor(path: str) -> None:
    """:func:`_remove_tree` through directory descriptors, as shutil.rmtree does on POSIX
    (a directory swapped for a symlink is never followed), keeping each descriptor in one
    list until it is closed: taken off before close(2), and whatever is still on it closed
    in ``finally``, so that no descriptor is closed twice or left open by an interrupt."""
    try:
        top = os.open(path, _TREE_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        # Our scratch name, holding something else than the directory we made: remove
        # the name, never what it points to.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    # (descriptor, name in the parent, subdirectories still to remove) from the top down;
    # each descriptor is on it before its directory is read, which may fail.
    stack: list[tuple[int, str, list[str]]] = [(top, path, [])]
    try:
        stack[-1] = (top, path, _remove_files(top))
        while stack:
            fd, name, subdirectories = stack[-1]
            if subdirectories:
                child = subdirectories.pop()
                try:
                    child_fd = os.open(child, _TREE_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    _remove_at(os.unlink, child, fd)  # swapped for a symlink since it was listed
                    continue
                stack.append((child_fd, child, []))
                stack[-1] = (child_fd, child, _remove_files(child_fd))
                continue
            stack.pop()
            os.close(fd)
            if stack:
                _remove_at(os.rmdir, name, stack[-1][0])
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(path)  # its parent is the user's directory: its mode is not ours to change
    finally:
        while stack:
            os.close(stack.pop()[0])


def _remove_files(fd: int) -> list[str]:
    """Unlink every entry of the directory ``fd`` that is not a directory; return the
    names of those that are."""
    with os.scandir(fd) as entries:
        listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    subdirectories = []
    for name, is_directory in listed:
        if is_directory:
            subdirectories.append(name)
        else:
            _remove_at(os.unlink, name, fd)
    return subdirectories


def _remove_at(remove: Callable[..., None], name: str, dir_fd: int) -> None:
    """``remove(name, dir_fd=dir_fd)`` (os.unlink or os.rmdir); a name already gone is
    not an error.

    A umask that takes the owner's write bit (0o2xx) leaves the directories that
    link_tree creates without it: as a non-root user their entries cannot be removed
    (EACCES) until the directory, one of the tree's own, is writable again.
    """
    try:
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except PermissionError as exc:
        try:
            os.chmod(dir_fd, stat.S_IRWXU)
        except OSError:
            raise exc from None
        with contextlib.suppress(FileNotFoundError):
            remove(name, dir_fd=dir_fd)


def _settle(directory: str) -> None:
    """Write back what the previous round left dirty on the filesystem of ``directory``,
    so that its write-back does not land inside the next timed round.

    syncfs(2) writes back only that filesystem (os.sync would wait for every disk of a
    shared machine); where it is missing, nothing is done.
    """
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _directory_of(side: SideFacts) -> str:
    """The existing directory a probe looked at (a source file's directory)."""
    return side.probed if os.path.isdir(side.probed) else os.path.dirname(side.probed)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _free_bytes(directory: str) -> int | None:
    """Bytes an unprivileged user may still write there; None where it cannot be read."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _write_synthetic(root: str, files: int, seed: int, progress: Progress | None) -> tuple[int, int]:
    """Write the synthetic tree under ``root``; returns (files, bytes)."""
    shape = synthetic_shape(files, seed)
    if progress:
        progress(f"writing a sample of {files:,} files")
    rng = random.Random(seed)  # noqa: S311 - not a secret: the same seed must give the same bytes
    made: set[str] = set()
    total = 0
    for entry in shape:
        path = os.path.join(root, *entry.path.split("/"))
        parent = os.path.dirname(path)
        if parent not in made:
            _make_parents(root, parent, made)
        # Native extensions are executable, as pip installs them.
        fd = os.open(path, _CREATE_FLAGS, 0o755 if entry.path.endswith(".so") else 0o644)
        try:
            view = memoryview(rng.randbytes(entry.size))
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        total += entry.size
    return len(shape), total


def _make_parents(root: str, directory: str, made: set[str]) -> None:
    """Create ``directory`` and its missing parents below ``root``, each writable for us."""
    if directory == root or directory in made:
        return
    _make_parents(root, os.path.dirname(directory), made)
    os.mkdir(directory, 0o755)
    _writable_directory(directory)
    made.add(directory)


def _scan(root: str) -> tuple[int, int, int]:
    """(regular files, their bytes, symlinks) under ``root``; symlinks not followed.

    :raises SampleError: for anything that is neither (a FIFO, a socket, a device):
        ``Linker.link_tree`` refuses those, so the sample cannot hold them.
    """
    files = size = links = 0
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise SampleError(root, f"cannot read {directory}: {exc.strerror or exc}") from None
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                files += 1
                size += info.st_size
            elif stat.S_ISLNK(info.st_mode):
                links += 1
            else:
                raise SampleError(root, f"{entry.path} is not a regular file, directory or symlink")
    return files, size, links


def _copy_sample(source: str, destination: str) -> None:
    """Copy the tree ``source`` into the existing, empty ``destination``: regular files with
    their permission bits, symlinks as symlinks. Only reads ``source``."""
    pending = [(source, destination)]
    while pending:
        from_dir, to_dir = pending.pop()
        for entry in os.scandir(from_dir):
            target = os.path.join(to_dir, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(target, 0o755)
                _writable_directory(target)
                pending.append((entry.path, target))
            else:
                shutil.copyfile(entry.path, target, follow_symlinks=False)
                os.chmod(target, stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o777)


def _mount_key(path: str) -> tuple[object, int]:
    """(mount, st_dev) of ``path``: a Linker makes one decision per such pair."""
    mount = find_mount(path, mount_table())
    key: object = None if mount is None else (mount.mount_id if mount.mount_id is not None else mount.mount_point)
    return key, os.stat(path).st_dev


def _existing_tree(source_dir: str, wanted: int, excluded: str) -> str | None:
    """A directory under a read-only ``source_dir`` holding about ``wanted`` files."""
    direct: dict[str, list[int]] = {}
    pending = deque([source_dir])
    seen = 0
    while pending and seen < _WALK_LIMIT:
        directory = pending.popleft()
        tally = direct.setdefault(directory, [0, 0])
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    seen += 1
                    if entry.name.startswith(SCRATCH_PREFIX):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        tally[0] += 1
                        tally[1] += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    totals = {path: list(counts) for path, counts in direct.items()}
    for path in sorted(direct, key=lambda p: p.count(os.sep), reverse=True):
        parent = os.path.dirname(path)
        if path != source_dir and parent in totals:
            totals[parent][0] += totals[path][0]
            totals[parent][1] += totals[path][1]
    return choose_subtree({path: (c[0], c[1]) for path, c in totals.items()}, wanted, excluded=(excluded,))


def _prepare_sample(
    scratch: _Scratch,
    source_dir: str,
    target_dir: str,
    *,
    files: int | None,
    sample: str | None,
    seed: int,
    progress: Progress | None,
) -> tuple[str, SampleInfo]:
    """The directory to materialise from, on the source side, and what it holds."""
    if sample is not None:
        return _given_sample(scratch, source_dir, target_dir, sample)
    wanted = DEFAULT_FILES if files is None else files
    need = sum(entry.size for entry in synthetic_shape(wanted, seed))
    free = _free_bytes(source_dir)
    if free is not None and free < need:
        raise SampleError(source_dir, f"a sample of {wanted:,} files needs about {need:,} bytes, {free:,} are free")
    try:
        root = scratch.directory(source_dir, "sample-")
    except OSError as exc:
        if exc.errno not in _READ_ONLY_ERRNOS:
            raise
        return _read_only_sample(source_dir, target_dir, wanted, exc)
    count, size = _write_synthetic(root, wanted, seed, progress)
    _settle(root)
    return root, SampleInfo(count, size, "synthetic", None, seed)


def _read_only_sample(source_dir: str, target_dir: str, wanted: int, exc: OSError) -> tuple[str, SampleInfo]:
    tree = _existing_tree(source_dir, wanted, target_dir)
    if tree is None:
        raise SampleError(
            source_dir,
            f"the source takes no new files ({exc.strerror or exc}) and holds no regular files to sample; "
            "pass --sample DIR (sample=DIR), a directory of files on the same filesystem as the source",
        ) from None
    count, size, links = _scan(tree)
    return tree, SampleInfo(count, size, "existing", tree, None, symlinks=links)


def _given_sample(scratch: _Scratch, source_dir: str, target_dir: str, sample: str) -> tuple[str, SampleInfo]:
    if not sample or "\0" in sample:
        raise InvalidPathError(sample, "sample path is empty or holds a NUL byte")
    if not os.path.isdir(sample):
        raise SampleError(sample, "not a directory")
    real = os.path.realpath(sample)
    if _inside(target_dir, real):
        raise SampleError(
            sample, f"the target's scratch directory would be inside it ({target_dir}); pass a directory beside it"
        )
    count, size, links = _scan(real)
    if count == 0:
        raise SampleError(sample, "it holds no regular files")
    if _mount_key(real) == _mount_key(source_dir):
        return real, SampleInfo(count, size, "sample", real, None, symlinks=links)
    # Another filesystem: links from it would measure that filesystem, not the source's.
    free = _free_bytes(source_dir)
    if free is not None and free < size:
        raise SampleError(sample, f"copying it to the source side needs {size:,} bytes, {free:,} are free")
    try:
        root = scratch.directory(source_dir, "sample-")
    except OSError as exc:
        if exc.errno not in _READ_ONLY_ERRNOS:
            raise
        raise SampleError(
            sample,
            f"it is on another filesystem than the source and cannot be copied there ({exc.strerror or exc}); "
            "pass a directory on the source's own filesystem",
        ) from None
    _copy_sample(real, root)
    _settle(root)
    return root, SampleInfo(count, size, "sample", real, None, copied=True, symlinks=links)


@contextlib.contextmanager
def _times_kept(directory: str) -> Iterator[None]:
    """Give ``directory`` back its access and modification times afterwards: each Linker's
    probe (and the audit's) creates and removes a scratch file in it, and a sample read in
    place is the user's directory. Its change time (ctime) cannot be put back."""
    try:
        before = os.stat(directory)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        try:
            now = os.stat(directory)
            if (now.st_mtime_ns, now.st_atime_ns) != (before.st_mtime_ns, before.st_atime_ns):
                os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
        except OSError:
            pass  # not the owner (EPERM), a read-only mount, or gone: nothing was changed then


def _disk_bytes(sample_dir: str, tree: str) -> int | None:
    """Bytes ``tree`` holds of its own, by the audit's accounting (see
    :func:`~linkprobe._bench_rules.own_bytes`); None where the filesystem cannot tell."""
    from linkprobe.auditing import audit

    found = audit(sample_dir, tree)
    return own_bytes(
        found.kinds["copy"].bytes,
        {reason: total.bytes for reason, total in found.other_reasons.items()},
        found.partly_shared_bytes,
    )


def _disk_bytes_or_none(sample_dir: str, tree: str) -> int | None:
    """:func:`_disk_bytes`, or None when the accounting itself could not read the tree: the
    mode's time still stands."""
    try:
        return _disk_bytes(sample_dir, tree)
    except (LinkprobeError, OSError):
        return None


def _count_tree(path: str) -> tuple[int, int]:
    """(regular files, bytes) under ``path``, each inode once (a cache full of hardlinks
    holds each file's data once)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    pending = [path]
    looked = 0
    while pending and looked < _WALK_LIMIT * 50:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    looked += 1
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        key = (info.st_dev, info.st_ino)
                        if key not in seen:
                            seen.add(key)
                            size += info.st_size
        except OSError:
            continue
    return len(seen), size


def _project(path: str, modes: tuple[ModeBench, ...], sample: SampleInfo) -> Projection:
    if not os.path.isdir(path):
        raise InvalidPathError(path, "scale-to path is not a directory")
    files, size = _count_tree(path)
    scaled = tuple(
        ScaledMode(
            entry.mode,
            (entry.seconds or 0.0) * files / sample.files,
            None if entry.disk_bytes is None or not sample.bytes else round(entry.disk_bytes * size / sample.bytes),
        )
        for entry in modes
        if entry.seconds is not None
    )
    return Projection(path, files, size, scaled)


def _machine(result: Probe) -> Machine:
    return Machine(
        os=platform.system(),
        kernel=platform.release(),
        arch=platform.machine(),
        cpus=os.cpu_count(),
        python=platform.python_version(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source_fstype=result.source.fstype,
        target_fstype=result.target.fstype,
    )


def _time_modes(
    scratch: _Scratch,
    result: Probe,
    sample_dir: str,
    info: SampleInfo,
    target_dir: str,
    rounds: int,
    progress: Progress | None,
) -> tuple[ModeBench, ...]:
    from linkprobe.linker import Linker  # concurrent.futures: paid only when timing

    work = scratch.directory(target_dir, "")
    timed = [mode for mode in _TIMING_ORDER if result.supports(mode)]
    seconds: dict[LinkMode, list[float]] = {mode: [] for mode in timed}
    disk: dict[LinkMode, int | None] = {}
    failed: dict[LinkMode, LinkprobeError | OSError] = {}
    made: dict[LinkMode, tuple[int, int]] = {}
    for round_index in range(rounds):
        for mode in timed:
            if mode in failed:
                continue
            if progress:
                progress(f"{mode.value}: round {round_index + 1} of {rounds}")
            destination = os.path.join(work, f"{mode.value}-{round_index}")
            _settle(work)
            linker = Linker(mode, env=None)
            start = time.perf_counter()
            try:
                stats = linker.link_tree(sample_dir, destination)
                elapsed = time.perf_counter() - start
                # A round that made every file of the sample materialised its bytes
                # (LinkStats.bytes leaves hard links out: they are not stat'ed).
                made[mode] = (stats.files, info.bytes if stats.files == info.files else stats.bytes)
                if round_index == 0:
                    if progress:
                        progress(f"{mode.value}: counting disk use")
                    disk[mode] = _disk_bytes_or_none(sample_dir, destination)
            except (LinkprobeError, OSError) as exc:
                # The probe said yes and the whole tree said no (ENOSPC, EMLINK, quota):
                # a finding about this pair too, and the other modes still get timed.
                failed[mode] = exc
            else:
                seconds[mode].append(elapsed)
            finally:
                _remove_tree(destination)
    entries = []
    for mode in LinkMode:
        verdict = result.verdict(mode)
        if mode in failed:
            error = failed[mode]
            code = error.errno if isinstance(error, OSError) else None
            entries.append(ModeBench(mode, "failed", str(error), code, (), None, info.files, info.bytes))
        elif mode in seconds:
            files, size = made[mode]
            entries.append(
                ModeBench(mode, "timed", verdict.reason, None, tuple(seconds[mode]), disk.get(mode), files, size)
            )
        else:
            entries.append(
                ModeBench(mode, verdict.status.value, verdict.reason, verdict.errno, (), None, info.files, info.bytes)
            )
    return tuple(entries)


def bench(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    files: int | None = None,
    sample: str | os.PathLike[str] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    scale_to: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Time every mode that works from ``source`` to ``target`` on a sample tree.

    :param files: size of the synthetic sample (default :data:`DEFAULT_FILES`); not with
        ``sample``.
    :param sample: a real tree to use instead, only read; copied under ``source`` first
        when it lives on another filesystem.
    :param rounds: timed rounds per mode; the minimum and the median are reported.
    :param seed: the synthetic tree's seed: the same seed, the same tree.
    :param scale_to: a real tree (the user's cache) to project the figures to.
    :param progress: called with a short line before each step.
    :raises ValueError: ``files`` or ``rounds`` below 1, or both ``files`` and ``sample``.
    :raises SampleError: no usable sample (see its message for what to pass).
    :raises NoUsableModeError: no mode works at all (nothing can be created in the target).
    """
    if files is not None and sample is not None:
        raise ValueError("pass files or sample, not both: files sets the size of the synthetic sample")
    if files is not None and files < 1:
        raise ValueError(f"files must be at least 1, not {files!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds!r}")
    sample_path = None if sample is None else os.fspath(sample)
    with _signals_held():  # the probe's scratch files sit directly in the user's directories
        result = probe(source, target, cache=False)
    if not any(verdict.supported for verdict in result.verdicts):
        raise NoUsableModeError(
            result.source.given,
            result.target.given,
            {verdict.mode: verdict.reason for verdict in result.verdicts},
            next((verdict.errno for verdict in result.verdicts if verdict.errno), None),
        )
    source_dir, target_dir = _directory_of(result.source), result.target.probed
    scratch = _Scratch()
    try:
        sample_dir, info = _prepare_sample(
            scratch, source_dir, target_dir, files=files, sample=sample_path, seed=seed, progress=progress
        )
        with _times_kept(sample_dir):
            modes = _time_modes(scratch, result, sample_dir, info, target_dir, rounds, progress)
    finally:
        scratch.remove()
    projection = None
    if scale_to is not None:
        if progress:
            progress(f"counting files in {os.fspath(scale_to)}")
        projection = _project(os.fspath(scale_to), modes, info)
    return BenchResult(
        source=result.source,
        target=result.target,
        sample=info,
        rounds=rounds,
        modes=modes,
        machine=_machine(result),
        probe=result,
        scale=projection,
    )
