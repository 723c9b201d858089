"""``linkprobe.audit(source, target)``: what did the installer actually do?

Walks TARGET (an installed tree: a ``.venv``, a ``node_modules``) and says of every entry
how it relates to SOURCE (the cache it was installed from), and what that costs on disk.
The walk only reads: directories and files are opened with ``O_NOATIME`` where the OS
allows it, no data is read except to compare a copy with its cache file, and the probe it
runs (which creates and removes scratch files in both top directories) gets the two
directories' access and modification times put back.

The rules that turn what was seen into a kind are in :mod:`linkprobe._audit_rules`; the
block maps come from :mod:`linkprobe.extents`.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

from linkprobe._audit_rules import (
    KINDS,
    OTHER,
    OTHER_REASONS,
    classify_file,
    classify_symlink,
    clone_possible,
    savable_bytes,
)
from linkprobe.errors import AuditReadError, InvalidPathError
from linkprobe.extents import fd_extent_bytes, fiemap_extent_bytes
from linkprobe.modes import LinkMode
from linkprobe.probe import SCRATCH_PREFIX, probe
from linkprobe.result import Probe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple

__all__ = [
    "EXAMPLES_PER_KIND",
    "KINDS",
    "OTHER_REASONS",
    "SCHEMA_VERSION",
    "Audit",
    "AuditProgress",
    "KindTotal",
    "audit",
]

#: Version of :meth:`Audit.to_dict`'s layout (``linkprobe audit --format json``);
#: raised when a key changes meaning or goes away, not when one is added.
SCHEMA_VERSION: Final[int] = 1
#: Paths kept per kind (and per reason of ``other``) as examples.
EXAMPLES_PER_KIND: Final[int] = 3
#: A copy is compared with a cache file of the same size by its first and last this
#: many bytes (the whole file up to twice this size).
SAMPLE_BYTES: Final[int] = 4096
#: Cache files of the same size (in another place) compared per copy: a content-addressed
#: store (pnpm's) names files by hash, so no file there is in the same place.
SIZE_CANDIDATES: Final[int] = 3
#: Smaller copies are held twice only by place (same parent name, name, size), never by
#: size and content alone: an installer writes its own marker files (uv's CACHEDIR.TAG and
#: ``.gitignore`` in both the cache and the venv), which say nothing about linking.
SIZE_MATCH_MIN_BYTES: Final[int] = 1024
#: Entries between two progress calls.
PROGRESS_EVERY: Final[int] = 1000

#: Called as ``progress(phase, entries)``: phase "index" (reading SOURCE) or "walk"
#: (reading TARGET), and the number of entries seen so far in that phase.
AuditProgress = Callable[[str, int], object]

_O_NOATIME: Final[int] = getattr(os, "O_NOATIME", 0)
_O_CLOEXEC: Final[int] = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final[int] = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC | _O_NOFOLLOW
_FILE_FLAGS: Final[int] = os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | getattr(os, "O_BINARY", 0)
_LINUX: Final[bool] = sys.platform == "linux"
_WINDOWS: Final[bool] = sys.platform == "win32"
_NAME: Final[Callable[[os.DirEntry[str]], str]] = operator.attrgetter("name")
#: Windows: DirEntry.stat() leaves st_ino, st_dev and st_nlink zero; scandir cannot take an fd.
_PATH_WALK: Final[bool] = os.scandir not in os.supports_fd or sys.platform == "win32"


if TYPE_CHECKING:

    class _KindTotalFields(NamedTuple):
        files: int
        bytes: int
        examples: tuple[str, ...] = ()

    class _AuditFields(NamedTuple):
        #: The paths as given.
        source: str
        target: str
        #: kind -> totals, for every kind of :data:`KINDS` (hardlink, clone, symlink, copy, other).
        kinds: Mapping[str, KindTotal]
        #: Why the ``other`` files are other: reason -> totals (keys of :data:`OTHER_REASONS`).
        other_reasons: Mapping[str, KindTotal]
        #: Copies whose content a file under SOURCE holds too: bytes held twice.
        duplicated_files: int
        duplicated_bytes: int
        #: Of the ``partly-shared`` files, the bytes in shared extents.
        partly_shared_bytes: int
        #: The probe of this pair (run before the walk).
        probe: Probe

else:  # the same named tuples, built without importing typing or dataclasses (CONTRIBUTING.md)
    _KindTotalFields = namedtuple("KindTotal", ("files", "bytes", "examples"), defaults=((),))
    _AuditFields = namedtuple(
        "Audit",
        (
            "source",
            "target",
            "kinds",
            "other_reasons",
            "duplicated_files",
            "duplicated_bytes",
            "partly_shared_bytes",
            "probe",
        ),
    )


class KindTotal(_KindTotalFields):
    """Files and bytes (file sizes, as ``du --apparent-size``) of one kind, with a few
    example paths relative to TARGET. An immutable named tuple."""

    __slots__ = ()

    def to_dict(self) -> dict[str, int]:
        return {"files": self.files, "bytes": self.bytes}


class Audit(_AuditFields):
    """What :func:`audit` found: every entry under TARGET counted under one kind.

    An immutable named tuple of ``source``, ``target``, ``kinds``, ``other_reasons``,
    ``duplicated_files``, ``duplicated_bytes``, ``partly_shared_bytes`` and ``probe``.
    """

    __slots__ = ()

    @property
    def files(self) -> int:
        return sum(total.files for total in self.kinds.values())

    @property
    def bytes(self) -> int:
        return sum(total.bytes for total in self.kinds.values())

    @property
    def best(self) -> LinkMode | None:
        """The probe's best mode for this pair (clone > hardlink > copy)."""
        return self.probe.best

    @property
    def savable_bytes(self) -> int:
        """What the best working mode would save: the duplicated bytes if clone or
        hardlink works here, else 0."""
        return savable_bytes(self.best, self.duplicated_bytes)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON layout (docs/cli.md, "linkprobe audit")."""
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "target": self.target,
            "files": self.files,
            "bytes": self.bytes,
            "kinds": {kind: total.to_dict() for kind, total in self.kinds.items()},
            "other_reasons": {reason: total.to_dict() for reason, total in self.other_reasons.items()},
            "duplicated_files": self.duplicated_files,
            "duplicated_bytes": self.duplicated_bytes,
            "partly_shared_bytes": self.partly_shared_bytes,
            "best": self.best.value if self.best else None,
            "savable_bytes": self.savable_bytes,
            "examples": {kind: list(total.examples) for kind, total in self.kinds.items()},
            "probe": self.probe.to_dict(),
        }


class _Tally:
    __slots__ = ("bytes", "examples", "files")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.examples: list[str] = []

    def add(self, size: int, path: str) -> None:
        self.files += 1
        self.bytes += size
        if len(self.examples) < EXAMPLES_PER_KIND:
            self.examples.append(path)

    def frozen(self) -> KindTotal:
        return KindTotal(self.files, self.bytes, tuple(self.examples))


def _root(path: str | os.PathLike[str], role: str) -> tuple[str, str, os.stat_result]:
    """(as given, resolved, stat) of SOURCE or TARGET; bad input raises InvalidPathError."""
    given = os.fspath(path)
    if not given:
        raise InvalidPathError(given, f"{role} path is empty")
    if "\0" in given:
        raise InvalidPathError(given, f"{role} path contains a NUL byte")
    try:
        info = os.stat(given)
        real = os.path.realpath(given, strict=True)
    except FileNotFoundError:
        raise InvalidPathError(given, f"{role} does not exist") from None
    except PermissionError:
        raise InvalidPathError(given, f"permission denied: cannot look inside a parent of the {role}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidPathError(given, f"{role} path has a symlink loop") from None
        if exc.errno == errno.ENOTDIR:
            raise InvalidPathError(given, f"a parent of the {role} is not a directory") from None
        raise InvalidPathError(given, f"{role}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidPathError(given, f"{role} is not a directory")
    try:
        with os.scandir(real):
            pass
    except PermissionError:
        raise InvalidPathError(given, f"permission denied: cannot list the {role}") from None
    except OSError as exc:
        raise InvalidPathError(given, f"cannot list the {role}: {exc.strerror or exc}") from None
    return given, real, info


class _Reader:
    """Opens without touching access times where the OS allows (O_NOATIME needs the
    file's owner or CAP_FOWNER: EPERM otherwise, then plain opens from there on)."""

    def __init__(self) -> None:
        self.noatime = _O_NOATIME

    def open(self, name: str, flags: int, dir_fd: int | None = None) -> int:
        if self.noatime:
            try:
                return os.open(name, flags | self.noatime, dir_fd=dir_fd)
            except PermissionError:
                self.noatime = 0  # not ours; a plain open still works if we may read it
        return os.open(name, flags, dir_fd=dir_fd)

    def listing(self, path: str) -> tuple[int | None, list[os.DirEntry[str]]]:
        """An open descriptor of directory ``path`` (None where scandir cannot take one;
        the caller closes it) and its entries, sorted by name: reports are reproducible."""
        if _PATH_WALK:
            with os.scandir(path) as entries:
                return None, sorted(entries, key=_NAME)
        fd = self.open(path, _DIR_FLAGS)
        try:
            with os.scandir(fd) as entries:
                return fd, sorted(entries, key=_NAME)
        except BaseException:
            os.close(fd)
            raise


def _lstat(entry: os.DirEntry[str], directory: str) -> os.stat_result:
    if sys.platform == "win32":
        return os.lstat(os.path.join(directory, entry.name))
    return entry.stat(follow_symlinks=False)


class _SourceIndex:
    """Every file under SOURCE, read once: inodes (hardlinks), and where a copy's content
    may be held (bytes held twice). A file in the same place, i.e. with the same parent
    directory name, name and size (an installed ``packaging/version.py`` is
    ``archive-v0/…/packaging/version.py`` in uv's cache), counts without reading it; one
    with only the same size (a content-addressed store names files by hash) must also
    have the same sampled content."""

    def __init__(self) -> None:
        self.inodes: set[tuple[int, int]] = set()
        self.by_place: set[tuple[str, str, int]] = set()
        #: size -> up to SIZE_CANDIDATES (directory, name) of that size (joined only if used)
        self.by_size: dict[int, list[tuple[str, str]]] = {}


def _read_at(fd: int, offset: int) -> bytes:
    if sys.platform == "win32":  # no pread(); the descriptor is ours alone
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, SAMPLE_BYTES)
    return os.pread(fd, SAMPLE_BYTES, offset)


def _sample(fd: int, size: int) -> tuple[bytes, bytes]:
    """The first and the last SAMPLE_BYTES of the open file (all of it up to twice that)."""
    return _read_at(fd, 0), _read_at(fd, size - SAMPLE_BYTES) if size > SAMPLE_BYTES else b""


class _Audit:
    def __init__(self, source: str, target: str, progress: AuditProgress | None) -> None:
        self.source_given, self.source, self.source_info = _root(source, "source")
        self.target_given, self.target, self.target_info = _root(target, "target")
        if self.source == self.target:
            raise InvalidPathError(self.target_given, "source and target are the same directory")
        self.progress = progress
        self.reader = _Reader()
        self.index = _SourceIndex()
        self.kinds = {kind: _Tally() for kind in KINDS}
        self.reasons: dict[str, _Tally] = {}
        self.duplicated_files = 0
        self.duplicated_bytes = 0
        self.partly_shared_bytes = 0
        self.source_prefix = os.path.join(self.source, "")
        self.target_prefix = os.path.join(self.target, "")

    def fail(self, path: str, exc: OSError) -> AuditReadError:
        return AuditReadError(
            self.source_given, self.target_given, path, exc.errno, exc.strerror or str(exc) or type(exc).__name__
        )

    def report(self, phase: str, count: int) -> None:
        if self.progress is not None:
            self.progress(phase, count)

    def directories(
        self, top: str, skip: tuple[int, int], phase: str
    ) -> Iterator[tuple[str, int | None, str, str, list[os.DirEntry[str]]]]:
        """Yield (directory, its descriptor or None, its path relative to ``top`` with a
        trailing separator, its own name, its entries that are not directories) for ``top``
        and every directory below it. A directory is entered unless it is a symlink or the
        other root (SOURCE inside TARGET, or the other way round). The callers' loops over
        the entries are the hot path (one lstat per file, as ``du``), kept free of calls."""
        pending = [(top, "")]
        seen = 0
        next_report = PROGRESS_EVERY
        while pending:
            directory, relative = pending.pop()
            try:
                dir_fd, entries = self.reader.listing(directory)
            except FileNotFoundError:
                continue  # removed while we walk: it is not part of the tree any more
            except OSError as exc:
                raise self.fail(directory, exc) from None
            files = []
            subdirectories = []
            try:
                for entry in entries:
                    name = entry.name
                    if name.startswith(SCRATCH_PREFIX):
                        continue  # a probe's scratch file, ours or a concurrent one's
                    if not entry.is_dir(follow_symlinks=False):  # d_type: no syscall
                        files.append(entry)
                        continue
                    try:
                        info = _lstat(entry, directory)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise self.fail(os.path.join(directory, name), exc) from None
                    if (info.st_dev, info.st_ino) != skip:
                        subdirectories.append((os.path.join(directory, name), relative + name + os.sep))
                yield directory, dir_fd, relative, os.path.basename(directory), files
            finally:
                if dir_fd is not None:
                    os.close(dir_fd)
            pending.extend(reversed(subdirectories))
            seen += len(entries)
            if seen >= next_report:
                self.report(phase, seen)
                next_report = (seen // PROGRESS_EVERY + 1) * PROGRESS_EVERY
        self.report(phase, seen)

    def lstat_failed(self, exc: OSError, directory: str, entry: os.DirEntry[str]) -> None:
        """An entry's lstat failed: gone (an installer still at work) is skipped, the rest
        is an I/O failure."""
        if not isinstance(exc, FileNotFoundError):
            raise self.fail(os.path.join(directory, entry.name), exc) from None

    def build_index(self) -> None:
        skip = (self.target_info.st_dev, self.target_info.st_ino)
        index = self.index
        inodes, places, by_size = index.inodes, index.by_place, index.by_size
        for directory, _, _, parent, entries in self.directories(self.source, skip, "index"):
            for entry in entries:
                try:
                    info = (
                        os.lstat(os.path.join(directory, entry.name)) if _WINDOWS else entry.stat(follow_symlinks=False)
                    )
                except OSError as exc:
                    self.lstat_failed(exc, directory, entry)
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                inodes.add((info.st_dev, info.st_ino))
                size = info.st_size
                if size == 0:
                    continue
                places.add((parent, entry.name, size))
                if size >= SIZE_MATCH_MIN_BYTES:
                    same_size = by_size.get(size)
                    if same_size is None:
                        by_size[size] = [(directory, entry.name)]
                    elif len(same_size) < SIZE_CANDIDATES:
                        same_size.append((directory, entry.name))

    def count(self, kind: str, reason: str | None, size: int, path: str) -> None:
        self.kinds[kind].add(size, path)
        if reason is not None:
            tally = self.reasons.get(reason)
            if tally is None:
                tally = self.reasons[reason] = _Tally()
            tally.add(size, path)

    def audit_target(self, clone_possible: bool) -> None:
        """Count every entry under TARGET. With ``clone_possible`` false (the probe proved
        that no block of SOURCE can be shared into TARGET) block maps are not read: a file
        with its own inode holds its own data, a copy."""
        skip = (self.source_info.st_dev, self.source_info.st_ino)
        inodes, places = self.index.inodes, self.index.by_place
        # The first rules of classify_file (the same inode: hardlink; no data: empty; no
        # block map needed: copy) are inlined here: they decide most files, and a call per
        # file costs more than the lstat (benchmarks/bench_audit.py).
        hardlinks, copies = self.kinds["hardlink"], self.kinds["copy"]
        for directory, dir_fd, relative, parent, entries in self.directories(self.target, skip, "walk"):
            for entry in entries:
                name = entry.name
                try:
                    info = os.lstat(os.path.join(directory, name)) if _WINDOWS else entry.stat(follow_symlinks=False)
                except OSError as exc:
                    self.lstat_failed(exc, directory, entry)
                    continue
                mode = info.st_mode
                if stat.S_ISREG(mode):
                    size = info.st_size
                    if info.st_nlink > 1 and (info.st_dev, info.st_ino) in inodes:
                        hardlinks.files += 1
                        hardlinks.bytes += size
                        if len(hardlinks.examples) < EXAMPLES_PER_KIND:
                            hardlinks.examples.append(relative + name)
                        continue
                    if size and not clone_possible:
                        copies.files += 1
                        copies.bytes += size
                        if len(copies.examples) < EXAMPLES_PER_KIND:
                            copies.examples.append(relative + name)
                        if (parent, name, size) in places or self.held_by_content(None, directory, dir_fd, name, size):
                            self.duplicated_files += 1
                            self.duplicated_bytes += size
                        continue
                    if size:
                        kind, reason = self.regular_file(directory, dir_fd, parent, name, info)
                    else:
                        kind, reason = OTHER, "empty"
                elif stat.S_ISLNK(mode):
                    kind, reason, size = self.symlink(os.path.join(directory, name))
                elif stat.S_ISDIR(mode):
                    continue  # replaced by a directory since it was listed
                else:
                    kind, reason, size = OTHER, "special", 0
                self.count(kind, reason, size, relative + name)

    def open_target(self, directory: str, dir_fd: int | None, name: str) -> int | None:
        """The file, open read-only; None when we may not read it."""
        try:
            return self.reader.open(
                os.path.join(directory, name) if dir_fd is None else name, _FILE_FLAGS, dir_fd=dir_fd
            )
        except PermissionError:
            return None
        except OSError as exc:
            raise self.fail(os.path.join(directory, name), exc) from None

    def regular_file(
        self, directory: str, dir_fd: int | None, parent: str, name: str, info: os.stat_result
    ) -> tuple[str, str | None]:
        fd = self.open_target(directory, dir_fd, name)
        if fd is None:
            return OTHER, "unreadable"
        size = info.st_size
        try:
            try:
                extent = (
                    fiemap_extent_bytes(fd, size)
                    if _LINUX
                    else fd_extent_bytes(fd, os.path.join(directory, name), info)
                )
            except OSError as exc:
                raise self.fail(os.path.join(directory, name), exc) from None
            kind, reason = classify_file(size=size, same_inode=False, extent=extent, clone_possible=True)
            if kind == "copy" and (
                (parent, name, size) in self.index.by_place or self.held_by_content(fd, directory, dir_fd, name, size)
            ):
                self.duplicated_files += 1
                self.duplicated_bytes += size
            if reason == "partly-shared" and extent is not None:
                self.partly_shared_bytes += extent.shared
        finally:
            os.close(fd)
        return kind, reason

    def held_by_content(self, fd: int | None, directory: str, dir_fd: int | None, name: str, size: int) -> bool:
        """Whether a file under SOURCE of the same size has the same sampled content.
        ``fd``: the copy, if it is open already."""
        candidates = self.index.by_size.get(size) if size >= SIZE_MATCH_MIN_BYTES else None
        if not candidates:
            return False
        own = fd if fd is not None else self.open_target(directory, dir_fd, name)
        if own is None:
            return False
        try:
            mine = _sample(own, size)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return False
            raise
        finally:
            if fd is None:
                os.close(own)
        for where, other_name in candidates:
            try:
                other = self.reader.open(os.path.join(where, other_name), _FILE_FLAGS)
            except OSError:
                continue  # gone or unreadable: no evidence either way
            try:
                if _sample(other, size) == mine:
                    return True
            except OSError:
                continue
            finally:
                os.close(other)
        return False

    def symlink(self, link: str) -> tuple[str, str | None, int]:
        try:
            resolved = os.path.realpath(link, strict=True)
            info = os.stat(resolved)
        except OSError:  # dangling, a loop, or a component we may not look into
            kind, reason = classify_symlink(exists=False, under_source=False)
            return kind, reason, 0
        under_source = resolved == self.source or resolved.startswith(self.source_prefix)
        kind, reason = classify_symlink(exists=True, under_source=under_source)
        if reason == "symlink-elsewhere" and (resolved == self.target or resolved.startswith(self.target_prefix)):
            reason = "symlink-internal"
        # A link into SOURCE gives access to the cache's bytes; any other link's target is
        # counted where it lies (inside TARGET: once already), so the link counts nothing.
        return kind, reason, info.st_size if kind == "symlink" and stat.S_ISREG(info.st_mode) else 0

    def result(self, probed: Probe) -> Audit:
        reasons = {reason: self.reasons[reason].frozen() for reason in OTHER_REASONS if reason in self.reasons}
        return Audit(
            self.source_given,
            self.target_given,
            MappingProxyType({kind: tally.frozen() for kind, tally in self.kinds.items()}),
            MappingProxyType(reasons),
            self.duplicated_files,
            self.duplicated_bytes,
            self.partly_shared_bytes,
            probed,
        )


def _probe_keeping_times(job: _Audit, timeout: float | None) -> Probe:
    """Probe the pair, then give both top directories back the access and modification
    times they had: the probe's scratch files come and go inside them. The change time
    (ctime) cannot be put back; nor can the times of a directory we do not own."""
    before = [(job.source, job.source_info), (job.target, job.target_info)]
    try:
        return probe(job.source_given, job.target_given, cache=False, timeout=timeout)
    finally:
        for path, info in before:
            try:
                now = os.stat(path)
                if (now.st_mtime_ns, now.st_atime_ns) != (info.st_mtime_ns, info.st_atime_ns):
                    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
            except OSError:
                pass  # not the owner (EPERM), or gone: the audit's answer stands


def audit(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: AuditProgress | None = None,
    timeout: float | None = None,
) -> Audit:
    """Say of every entry under ``target`` how it relates to ``source``, and what it costs.

    Kinds: ``hardlink`` (the inode of a file under ``source``), ``clone`` (its own inode,
    every data byte in extents the filesystem marks shared), ``symlink`` (resolves under
    ``source``), ``copy`` (its own inode and its own blocks), ``other`` (see
    :data:`OTHER_REASONS`). Symlinked directories are never followed. ``source`` is read
    once into an index; ``progress(phase, entries)`` is called every
    :data:`PROGRESS_EVERY` entries and at the end of each phase. ``timeout`` is passed to
    the probe.

    :raises InvalidPathError: a path is missing, not a directory, unreadable, or both
        are the same directory (bad input).
    :raises AuditReadError: a directory or file inside the trees could not be read.
    """
    job = _Audit(os.fspath(source), os.fspath(target), progress)
    probed = _probe_keeping_times(job, timeout)
    job.build_index()
    job.audit_target(clone_possible=clone_possible(probed.verdict(LinkMode.CLONE)))
    return job.result(probed)
