"""Probe a source/target pair by really attempting every mode on tiny scratch files."""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from linkprobe.api import FileIdentity, LinkBackend, SourceHints, remove_quietly
from linkprobe.backends import default_backend
from linkprobe.errors import InvalidPathError, TargetNotDirectoryError
from linkprobe.modes import LinkMode, parse_mode, parse_order
from linkprobe.mounts import (
    Mount,
    find_mount,
    forget_mount_table,
    mount_generation,
    mount_table,
    with_fuse_subtype,
)
from linkprobe.reasons import (
    ReasonContext,
    errno_of,
    existing_file_decides,
    explain_existing_failure,
    explain_failure,
    explain_not_probed,
    explain_success,
    explain_timeout,
)
from linkprobe.result import Probe, SideFacts, Status, Verdict

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "SCRATCH_PREFIX",
    "clear_cache",
    "probe",
    "requested_choice",
    "requested_mode",
    "select",
]

#: Every scratch name starts with this, so litter (if a process is killed with SIGKILL)
#: is recognisable and safe to delete by hand.
SCRATCH_PREFIX: Final[str] = ".linkprobe-"
#: How many directory entries to look at for an existing file on a read-only source.
_SEARCH_LIMIT: Final[int] = 2000
#: The bound on the search for an existing file that clone and hardlink must also work
#: for, when the source could take a scratch file: at most this many directories read
#: (each is an open, a getdents and a close) and this many entries looked at. A package
#: cache has files at its top (uv's CACHEDIR.TAG) or down its first branch (pnpm's
#: files/00/...), so the search goes depth first.
_CHECK_DIRS: Final[int] = 4
_CHECK_ENTRIES: Final[int] = 256
#: A clone from an existing file: with hints, the source is opened with O_NOFOLLOW (a
#: name swapped for a symlink since the search fails with ELOOP instead of cloning what
#: it points to), and the scratch clone gets mode 0600 like every scratch file.
_CHECK_HINTS: Final = SourceHints(0o600, 0)
#: At interpreter exit, how long one call of an abandoned probe (timeout=) may take
#: before it is taken for a hung filesystem and no longer waited for; and the most
#: that exit waits in all.
_EXIT_GRACE: Final[float] = 0.5
_EXIT_LIMIT: Final[float] = 5.0
#: Cached probes kept at most; the oldest goes first.
_CACHE_LIMIT: Final[int] = 256
#: Linux: an O_PATH descriptor holds a scratch file's inode (a symlink's too, with
#: O_NOFOLLOW) without opening its data. While it is held the inode cannot be freed, so
#: its number cannot be reused by a file somebody creates under our name after deleting
#: ours: the (st_dev, st_ino) check before removal then really means "the file we made".
#: Elsewhere there is no pin (Windows cannot unlink an open file), only the check.
_O_PATH: Final[int] = getattr(os, "O_PATH", 0)
_PIN_FLAGS: Final[int] = _O_PATH | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

#: The order of attempts. Copy goes first: if no file can be created in the target at
#: all, its errno explains every other failure too.
_ATTEMPT_ORDER: Final[tuple[LinkMode, ...]] = (LinkMode.COPY, LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.SYMLINK)


@dataclass(frozen=True)
class _Located:
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


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_gid)


def _unchanged(located: _Located) -> bool:
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


class _Locks:
    def __init__(self) -> None:
        self.cache = threading.Lock()
        self.abandoned = threading.Lock()

    def reset(self) -> None:
        self.cache = threading.Lock()
        self.abandoned = threading.Lock()


#: Key: the two paths as given (and the working directory when one is relative).
_cache: dict[tuple[str, ...], tuple[_Located, _Located, Probe]] = {}
#: The locks of the cache and of _abandoned, replaced in a forked child.
_locks = _Locks()
#: The mount-table generation the cached probes were made under (see mount_generation).
_cache_generation: list[int | None] = [None]


def clear_cache() -> None:
    """Forget every cached probe and the mount table. Not needed after a mount: a cached
    probe is used only while both paths lead to the same inodes and the mount table is
    unchanged. (Needed after closing descriptors one did not open: see docs/api.md.)"""
    with _locks.cache:
        _cache.clear()
    forget_mount_table()


def _cache_key(given_source: str, given_target: str) -> tuple[str, ...]:
    if os.path.isabs(given_source) and os.path.isabs(given_target):
        return (given_source, given_target)
    return (given_source, given_target, os.getcwd())


def _cache_hit(key: tuple[str, ...], generation: int | None) -> Probe | None:
    """The cached probe for ``key`` if it still holds; a stale one is dropped."""
    with _locks.cache:
        current = _cache_generation[0]
        if generation != current:
            # Something was mounted or unmounted: drop every probe. (A thread that read an
            # older generation than another thread has seen only misses.)
            if generation is None or current is None or generation > current:
                _cache.clear()
                _cache_generation[0] = generation
            return None
        entry = _cache.get(key)
    if entry is None:
        return None
    source, target, result = entry
    if _unchanged(source) and _unchanged(target):
        return result
    with _locks.cache:
        if _cache.get(key) is entry:
            del _cache[key]
    return None


def _cache_store(key: tuple[str, ...], generation: int | None, entry: tuple[_Located, _Located, Probe]) -> None:
    with _locks.cache:
        if generation != _cache_generation[0]:  # the table changed while probing
            return
        _cache.pop(key, None)
        _cache[key] = entry
        while len(_cache) > _CACHE_LIMIT:
            del _cache[next(iter(_cache))]


def _scratch_name(directory: str, tag: str) -> str:
    return os.path.join(directory, f"{SCRATCH_PREFIX}{os.urandom(8).hex()}-{tag}")


def _checked(path: str | os.PathLike[str], role: str) -> str:
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


def _locate(path: str, role: str) -> _Located:
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
        resolved = os.path.realpath(current, strict=True)
    except OSError as exc:  # a symlink loop or a component made unreadable meanwhile
        raise InvalidPathError(path, f"{role} cannot be resolved: {exc.strerror or exc}") from None
    exists = current == given
    identity = _identity(info)
    if stat.S_ISDIR(info.st_mode):
        return _Located(resolved, None, exists, current, identity, missing)
    if role == "source" and stat.S_ISREG(info.st_mode) and exists:
        return _Located(os.path.dirname(resolved), resolved, exists, current, identity, missing)
    if role == "target" and exists:
        raise TargetNotDirectoryError(path)
    raise InvalidPathError(path, f"{current} is not a directory")


def _side_facts(given: str, probed: str, exists: bool, mounts: list[Mount]) -> SideFacts:
    info = os.stat(probed)
    mount = find_mount(probed, mounts)
    if mount is not None:
        mount = with_fuse_subtype(mount)
    return _facts(given, probed, info.st_dev, mount, exists)


def _facts(given: str, probed: str, st_dev: int | None, mount: Mount | None, exists: bool = True) -> SideFacts:
    return SideFacts(
        given=given,
        probed=probed,
        st_dev=st_dev,
        mount_point=mount.mount_point if mount else None,
        fstype=mount.fstype if mount else None,
        mount_device=mount.device if mount else None,
        mount_id=mount.mount_id if mount else None,
        read_only=mount.read_only if mount else False,
        exists=exists,
    )


def _existing_file(directory: str) -> str | None:
    """A regular file under ``directory`` to link from when we may not write there.

    Breadth first, symlinks not followed, at most _SEARCH_LIMIT entries looked at: a
    package cache has files near the top, and a probe must stay cheap. Scratch names
    (ours, or another probe's) are skipped: they are not the source's files.
    """
    pending = deque([directory])
    seen = 0
    while pending and seen < _SEARCH_LIMIT:
        try:
            with os.scandir(pending.popleft()) as entries:
                for entry in entries:
                    seen += 1
                    if entry.name.startswith(SCRATCH_PREFIX):
                        continue
                    if entry.is_file(follow_symlinks=False):
                        return entry.path
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:
            continue
    return None


def _file_to_check(directory: str, st_dev: int | None) -> str | None:
    """One existing regular file of the source, found cheaply: depth first, at most
    _CHECK_DIRS directories read and _CHECK_ENTRIES entries looked at (scandir's
    d_type, so no stat per entry on ext4, XFS, btrfs, tmpfs), symlinks and scratch
    names skipped. A subdirectory on another device (a filesystem mounted inside the
    source, a btrfs subvolume) is not entered: its files say nothing about the source's
    (one lstat per directory entered)."""
    pending = [directory]
    reads = seen = 0
    while pending and reads < _CHECK_DIRS and seen < _CHECK_ENTRIES:
        path = pending.pop()
        subdirectories = []
        try:
            if path != directory and os.lstat(path).st_dev != st_dev:
                continue
            reads += 1
            with os.scandir(path) as entries:
                for entry in entries:
                    seen += 1
                    if seen > _CHECK_ENTRIES:
                        break
                    if entry.name.startswith(SCRATCH_PREFIX):
                        continue
                    if entry.is_file(follow_symlinks=False):
                        return entry.path
                    if entry.is_dir(follow_symlinks=False):
                        subdirectories.append(entry.path)
        except OSError:
            continue
        # The first directory listed is read next; the others wait behind it.
        pending.extend(reversed(subdirectories))
    return None


#: Opening to read, never to follow a symlink swapped in since the search, nor to wait
#: on a FIFO swapped in (O_NONBLOCK is no-op for regular files).
_READ_CHECK_FLAGS: Final[int] = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _unreadable(path: str) -> int | None:
    """The errno of opening ``path`` to read (no byte is read), or None if it opens."""
    try:
        os.close(os.open(path, _READ_CHECK_FLAGS))
    except OSError as exc:
        return errno_of(exc)
    return None


def _other_owner(path: str) -> int | None:
    """The owner of ``path`` when it is not us and we are not root (root may link any
    file: fs.protected_hardlinks, proc(5), does not apply to CAP_FOWNER); else None."""
    if sys.platform == "win32":  # no fs.protected_hardlinks, no euid
        return None
    euid = os.geteuid()
    if euid == 0:
        return None
    try:
        uid = os.lstat(path).st_uid
    except OSError:
        return None
    return uid if uid != euid else None


class _Attempts:
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
        name = _scratch_name(directory, "src")
        self.beat()
        try:
            self.record(name, self.backend.create_scratch(name))
        except OSError as exc:
            return None, errno_of(exc)
        return name, None

    def attempt(
        self,
        mode: LinkMode,
        source_file: str | None,
        source_dir: str,
        target_dir: str,
        *,
        source_is_scratch: bool,
        hints: SourceHints | None = None,
    ) -> int | None:
        """Try one mode; None on success, else the errno. ``hints`` go to a clone."""
        name = _scratch_name(target_dir, mode.value)
        backend = self.backend
        self.beat()
        try:
            if mode is LinkMode.SYMLINK:
                backend.symlink(source_file or source_dir, name)
            elif source_file is None or (mode is LinkMode.COPY and not source_is_scratch):
                # A copy from a file that is not our scratch file (a read-only source's,
                # or the source file given) only checks that files can be created: that
                # file may be a large wheel.
                self.record(name, backend.create_scratch(name))
                return None
            elif mode is LinkMode.COPY:
                backend.copy(source_file, name)
            elif mode is LinkMode.CLONE:
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
                # Nothing more can be done on failure; the name carries SCRATCH_PREFIX.
                with contextlib.suppress(OSError):
                    self.backend.remove_if_same(name, identity)
        finally:
            self.created.clear()
            for pin in self.pins:  # only now may the inode numbers be reused
                os.close(pin)
            self.pins.clear()


class _Progress:
    """What a probe has found so far; read by the caller when a deadline passes first."""

    def __init__(self) -> None:
        self.source_facts: SideFacts | None = None
        self.target_facts: SideFacts | None = None
        self.ctx: ReasonContext | None = None
        self.source_errno: int | None = None
        # Filled mode by mode; a dict assignment is atomic, so a snapshot is consistent.
        self.results: dict[LinkMode, int | None] = {}
        self.result: Probe | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        #: Set when the caller stopped waiting: make no further attempt, clean up as soon
        #: as the call in progress returns.
        self.abandoned = False
        #: Modes whose attempt from a scratch file worked but whose attempt from an
        #: existing file of the source failed, with that errno.
        self.existing_failures: dict[LinkMode, int] = {}
        #: time.monotonic() when the probe last started a call that may wait for the
        #: filesystem: how long the call in progress has taken so far.
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()


def _verdict(mode: LinkMode, progress: _Progress, results: Mapping[LinkMode, int | None]) -> Verdict | None:
    """The verdict on ``mode`` from the attempts so far; None if it has none yet."""
    ctx = progress.ctx
    if mode not in results or ctx is None:
        return None
    failure = results[mode]
    if failure is None:
        return Verdict(mode, Status.SUPPORTED, explain_success(mode, ctx))
    if mode in progress.existing_failures and ctx.existing_file is not None:
        return Verdict(mode, Status.UNSUPPORTED, explain_existing_failure(mode, failure, ctx), failure)
    return Verdict(mode, Status.UNSUPPORTED, explain_failure(mode, failure, ctx), failure)


def _run(
    given_source: str,
    given_target: str,
    source: _Located,
    target: _Located,
    backend: LinkBackend,
    mounts: list[Mount],
    progress: _Progress,
) -> Probe:
    source_dir, source_file = source.directory, source.file
    target_dir = target.directory
    progress.source_facts = _side_facts(given_source, source_file or source_dir, source.exists, mounts)
    progress.target_facts = _side_facts(given_target, target_dir, target.exists, mounts)
    progress.beat()
    attempts = _Attempts(backend, progress.beat)
    results = progress.results
    # Links are made from an existing file (the source given, or a read-only source's):
    # its verdicts are already the real files' verdicts.
    from_existing = source_file is not None
    # Otherwise an existing file that clone and hardlink must also work for.
    to_check: str | None = None
    checked: str | None = None
    try:
        if source_file is None and not progress.abandoned:
            source_file, progress.source_errno = attempts.make_source(source_dir)
            progress.beat()
            if source_file is None:
                source_file = _existing_file(source_dir)
                from_existing = source_file is not None
            else:
                to_check = _file_to_check(source_dir, progress.source_facts.st_dev)
        progress.ctx = ReasonContext(
            progress.source_facts, progress.target_facts, existing_file=source_file if from_existing else None
        )
        real_file = to_check or (source_file if from_existing else None)
        for mode in _ATTEMPT_ORDER:
            if progress.abandoned:
                break
            if source_file is None and mode in (LinkMode.CLONE, LinkMode.HARDLINK):
                continue
            code = attempts.attempt(mode, source_file, source_dir, target_dir, source_is_scratch=not from_existing)
            # Copy is checked on any existing file; clone and hardlink on one found by the
            # search (when links were made from an existing file, they are its verdicts).
            check = mode is LinkMode.COPY or (to_check is not None and mode in _LINKS)
            if code is None and real_file is not None and check:
                if progress.abandoned:  # a verdict not yet checked on the real file is none
                    break
                code, used = _check_real_file(attempts, progress, mode, real_file, source_dir, target_dir)
                checked = checked or used
            elif code == errno.EPERM and mode is LinkMode.HARDLINK and from_existing and source_file is not None:
                _note_owner(progress, source_file)
            results[mode] = code
    finally:
        attempts.clean()
    verdicts = []
    for mode in LinkMode:
        verdict = _verdict(mode, progress, results)
        if verdict is None:
            why = progress.source_errno if progress.source_errno is not None else errno.ENOENT
            verdict = Verdict(mode, Status.NOT_PROBED, explain_not_probed(why, progress.ctx), why)
        verdicts.append(verdict)
    linked_from = source_file if from_existing else None
    return Probe(
        progress.source_facts,
        progress.target_facts,
        tuple(verdicts),
        linked_from,
        from_existing,
        linked_from or checked,
    )


_LINKS: Final[tuple[LinkMode, ...]] = (LinkMode.CLONE, LinkMode.HARDLINK)


def _check_real_file(
    attempts: _Attempts, progress: _Progress, mode: LinkMode, path: str, source_dir: str, target_dir: str
) -> tuple[int | None, str | None]:
    """``mode`` worked for the scratch file: does it for ``path``, a file of the source?
    The errno that decides the verdict (None: it holds) and the file if it was used."""
    if mode is LinkMode.COPY:
        # A copy needs to read the source's files; the attempt read ours, or (a read-only
        # source) only created a file. Opening is enough: no byte of a large wheel is read.
        progress.beat()
        code = _unreadable(path)
    elif mode in (LinkMode.CLONE, LinkMode.HARDLINK):
        # From the existing file into a scratch name: a clone shares the blocks or fails
        # (FICLONE, clonefile), so no large file is ever copied here.
        code = attempts.attempt(mode, path, source_dir, target_dir, source_is_scratch=False, hints=_CHECK_HINTS)
    else:
        return None, None
    if code is None or not existing_file_decides(mode, code):
        return None, path  # works, or a refusal about that one file only (EMLINK...)
    _note_existing_failure(progress, mode, code, path)
    return code, path


def _note_owner(progress: _Progress, path: str) -> None:
    """A hard link from an existing file got EPERM: whose file it is chooses the words."""
    assert progress.ctx is not None
    owner = _other_owner(path)
    if owner is not None:
        progress.ctx = replace(progress.ctx, other_owner=True, existing_owner=owner)


def _note_existing_failure(progress: _Progress, mode: LinkMode, code: int, path: str) -> None:
    """Set before the verdict is: a timed-out snapshot must see both or neither."""
    assert progress.ctx is not None
    progress.ctx = replace(progress.ctx, existing_file=path)
    if mode is LinkMode.HARDLINK and code == errno.EPERM:
        _note_owner(progress, path)
    progress.existing_failures[mode] = code


def _probe_now(
    given_source: str,
    given_target: str,
    *,
    cache: bool,
    backend: LinkBackend | None,
    mounts: Callable[[], list[Mount]],
    progress: _Progress | None = None,
) -> Probe:
    key: tuple[str, ...] = ()
    generation = None
    if cache:
        # Before anything is looked at: a mount from now on changes the generation.
        generation = mount_generation()
        key = _cache_key(given_source, given_target)
        hit = _cache_hit(key, generation)
        if hit is not None:
            return hit
    if progress is None:  # made only now: a hit needs none (an Event costs microseconds)
        progress = _Progress()
    source = _locate(given_source, "source")
    target = _locate(given_target, "target")
    result = _run(given_source, given_target, source, target, backend or default_backend(), mounts(), progress)
    if cache and not progress.abandoned:  # an abandoned probe stopped early: not a whole answer
        _cache_store(key, generation, (source, target, result))
    return result


def _unanswered_side(given: str, mounts: Callable[[], list[Mount]]) -> SideFacts:
    """Facts for a side whose filesystem never answered: only the mount table (a /proc
    read, which does not wait for the filesystem) and the path as given."""
    probed = os.path.abspath(given)
    try:
        mount = find_mount(probed, mounts())
    except OSError:
        mount = None
    return _facts(given, probed, None, mount)


def _timed_out(
    given_source: str, given_target: str, progress: _Progress, seconds: float, mounts: Callable[[], list[Mount]]
) -> Probe:
    """The probe as far as it got: finished modes keep their verdict, the rest timed out."""
    results = dict(progress.results)
    verdicts = tuple(
        _verdict(mode, progress, results) or Verdict(mode, Status.TIMED_OUT, explain_timeout(seconds), errno.ETIMEDOUT)
        for mode in LinkMode
    )
    return Probe(
        progress.source_facts or _unanswered_side(given_source, mounts),
        progress.target_facts or _unanswered_side(given_target, mounts),
        verdicts,
        None,
        False,
    )


#: Probe threads whose caller stopped waiting and that have not finished: id -> both.
_abandoned: dict[int, tuple[threading.Thread, _Progress]] = {}
_exit_wait_registered: list[bool] = [False]


def _abandon(thread: threading.Thread, progress: _Progress) -> None:
    """Tell the probe thread to stop, and have interpreter exit wait for its clean-up."""
    progress.abandoned = True
    with _locks.abandoned:
        if not progress.done.is_set():
            _abandoned[id(progress)] = (thread, progress)
        if not _exit_wait_registered[0]:
            _exit_wait_registered[0] = True
            atexit.register(_wait_for_abandoned)


def _wait_for_abandoned(grace: float = _EXIT_GRACE, limit: float = _EXIT_LIMIT) -> None:
    """Runs at interpreter exit (daemon threads still run then): wait for each abandoned
    probe to remove its scratch files, as long as the filesystem keeps answering.

    An abandoned probe makes no new attempt; what is left is the call in progress and
    one unlink per scratch name. Each of them may take up to ``grace`` seconds; a call
    that takes longer is a hung filesystem (a stopped FUSE daemon, an NFS server gone),
    and exit does not wait for it. Never more than ``limit`` seconds in all.
    """
    deadline = time.monotonic() + limit
    with _locks.abandoned:
        pending = list(_abandoned.values())
    try:
        for thread, progress in pending:
            while thread.is_alive():
                now = time.monotonic()
                wait = min(grace - (now - progress.last_beat), deadline - now)
                if wait <= 0:
                    break
                thread.join(wait)
    except KeyboardInterrupt:  # Ctrl-C at exit: stop waiting, without a traceback
        return


def _forget_after_fork() -> None:
    """In a forked child only the forking thread exists: a lock held by another thread
    at the fork would never be released, and the abandoned threads are not there."""
    _locks.reset()
    _abandoned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def probe(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    cache: bool = True,
    backend: LinkBackend | None = None,
    mounts: Callable[[], list[Mount]] = mount_table,
    timeout: float | None = None,
) -> Probe:
    """Find out which modes work from ``source`` to ``target`` by attempting each.

    Paths that do not exist yet are probed at their nearest existing ancestor
    (``SideFacts.exists`` is False); nothing is created but scratch files, which are
    removed before returning (also on errors and KeyboardInterrupt). Clone and hardlink
    are also attempted from one existing file of the source, so that their verdicts hold
    for the source's own files (``Probe.existing_file``).

    Results are cached by the given paths unless ``cache`` is False. A cached result is
    used only while both paths stat the same (device, inode, mode bits, owner) and the
    mount table is unchanged (:func:`linkprobe.mounts.mount_generation`).

    With ``timeout`` (seconds), the probe runs in a daemon thread and returns by then
    whatever happens: modes without an answer get :attr:`Status.TIMED_OUT`, auto then
    answers copy and an explicit mode fails. The abandoned thread makes no further attempt
    and removes its scratch files as soon as the call it is in returns. At interpreter
    exit, each abandoned probe is waited for while it keeps getting answers (each call
    within 0.5 s, 5 s in all), so a filesystem that answers is left clean; only one that
    hangs longer can keep ``.linkprobe-…`` names. A timed-out result is not cached.

    :raises InvalidPathError: an empty path, a NUL byte, an unsearchable parent.
    :raises TargetNotDirectoryError: ``target`` exists and is not a directory.
    :raises ValueError: ``timeout`` is not a positive number.
    """
    given_source = _checked(source, "source")
    given_target = _checked(target, "target")
    if timeout is None:
        return _probe_now(given_source, given_target, cache=cache, backend=backend, mounts=mounts)
    if not timeout > 0 or timeout == float("inf"):  # also rejects NaN
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    progress = _Progress()

    def work() -> None:
        try:
            progress.result = _probe_now(
                given_source, given_target, cache=cache, backend=backend, mounts=mounts, progress=progress
            )
        except BaseException as exc:  # handed to the waiting caller below
            progress.error = exc
        finally:
            progress.done.set()
            with _locks.abandoned:
                _abandoned.pop(id(progress), None)

    # A thread, not a process: the hung call is a syscall that only the kernel can end,
    # and a daemon thread does not keep the interpreter from exiting.
    thread = threading.Thread(target=work, name="linkprobe-probe", daemon=True)
    thread.start()
    try:
        finished = progress.done.wait(timeout)
    except BaseException:  # KeyboardInterrupt while waiting: the thread stops early too
        _abandon(thread, progress)
        raise
    if not finished:
        _abandon(thread, progress)
        return _timed_out(given_source, given_target, progress, timeout, mounts)
    if progress.error is not None:
        raise progress.error
    assert progress.result is not None  # done without error means a result
    return progress.result


def _requested_word(
    mode: LinkMode | str | None, env: str | None, environ: Mapping[str, str] | None, mode_source: str
) -> tuple[LinkMode | str | None, str]:
    """The word that was asked for and where it came from: ``mode``, else the variable ``env``."""
    if mode is not None:
        return mode, mode_source
    if not env:
        return None, mode_source
    return (os.environ if environ is None else environ).get(env), f"environment variable {env}"


def requested_mode(
    mode: LinkMode | str | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    mode_source: str = "mode",
) -> LinkMode | None:
    """The explicit mode: ``mode`` itself, or else the environment variable ``env``."""
    word, source = _requested_word(mode, env, environ, mode_source)
    return parse_mode(word, source=source)


def requested_choice(
    mode: LinkMode | str | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    mode_source: str = "mode",
) -> LinkMode | tuple[LinkMode, ...] | None:
    """What was asked for: one mode (explicit), an order of modes (pnpm's
    ``clone-or-copy``, see :func:`~linkprobe.modes.parse_order`), or None (auto).

    ``mode`` wins over the environment variable ``env``, as in :func:`requested_mode`.
    """
    word, source = _requested_word(mode, env, environ, mode_source)
    return parse_order(word) or parse_mode(word, source=source)


def select(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    mode: LinkMode | str | None = None,
    *,
    env: str | None = "LINKPROBE_MODE",
) -> LinkMode:
    """The mode to use from ``source`` to ``target``, verified by a probe.

    Explicit (``mode``, or the environment variable named ``env``): that mode if it works,
    else :class:`~linkprobe.UnsupportedModeError` — never another mode. Auto: the best
    working mode, else :class:`~linkprobe.NoUsableModeError`.
    """
    chosen = requested_choice(mode, env)
    if isinstance(chosen, tuple):  # an order word: its first working mode
        return probe(source, target).require(None, order=chosen)
    return probe(source, target).require(chosen)
