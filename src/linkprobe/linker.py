"""Materialise files and whole trees with the mode a probe chose.

Auto: the best working mode per (source mount, target mount) pair; if a file later fails
with an error that means "this mode does not work here", step down once, stay there for
the rest of the run and warn once. Explicit: verified before the target is touched and
never replaced by another mode. Either way, a ``link_tree`` that fails removes what it
made, and a wrong argument is an error of that call, never a reason to change modes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from linkprobe.api import KEPT_MODE_BITS, LinkBackend, SourceHints, remove_quietly
from linkprobe.backends import default_backend
from linkprobe.errors import (
    InvalidArgumentError,
    InvalidSourceError,
    LinkFailedError,
    LinkModeFallbackWarning,
    LinkprobeError,
    NoUsableModeError,
    SourceIsDirectoryError,
    SourceNotDirectoryError,
    SourceNotFoundError,
    TargetInsideSourceError,
)
from linkprobe.modes import AUTO_ORDER, LinkMode, parse_mode
from linkprobe.mounts import Mount, find_mount, mount_table
from linkprobe.probe import SCRATCH_PREFIX, probe, requested_choice
from linkprobe.reasons import (
    FailureAction,
    ReasonContext,
    errno_of,
    error_class,
    explain_failure,
    explain_name_too_long,
    fallback_advice,
    next_mode,
    on_failure,
    on_symlink_failure,
    source_problem,
    target_inside_source,
)
from linkprobe.result import Probe

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["Fallback", "LinkStats", "Linker"]

_log = logging.getLogger("linkprobe")
# A library's logger gets a NullHandler (logging HOWTO, "Configuring Logging for a
# Library"): without one, logging's last-resort handler prints every warning record on
# stderr, next to the LinkModeFallbackWarning that already says the same. With it, an
# application that configures logging still receives the records.
_log.addHandler(logging.NullHandler())

#: Files handed to a worker at once: large enough to amortise the hand-off, small enough
#: that both cores stay busy on a tree of a few thousand small files.
_BATCH: Final[int] = 128


@dataclass(frozen=True)
class LinkStats:
    """What :meth:`Linker.link_tree` did."""

    cloned: int = 0
    hardlinked: int = 0
    symlinked: int = 0
    copied: int = 0
    #: Symlinks found in the source tree and re-created as symlinks.
    symlinks: int = 0
    directories: int = 0
    #: Bytes of the regular files materialised (whatever the mode).
    bytes: int = 0

    @property
    def files(self) -> int:
        return self.cloned + self.hardlinked + self.symlinked + self.copied

    def count(self, mode: LinkMode) -> int:
        return {
            LinkMode.CLONE: self.cloned,
            LinkMode.HARDLINK: self.hardlinked,
            LinkMode.SYMLINK: self.symlinked,
            LinkMode.COPY: self.copied,
        }[mode]


@dataclass(frozen=True)
class Fallback:
    """One step down of auto mode for a mount pair."""

    source_mount: str | None
    target_mount: str | None
    from_mode: LinkMode
    to_mode: LinkMode
    errno: int
    reason: str


@dataclass
class _Pair:
    """The decision for one (source mount, target mount) pair; ``lock`` guards ``mode``."""

    probe: Probe
    mode: LinkMode
    explicit: bool
    warned_symlinks: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def explain(self, mode: LinkMode, code: int, source: str, target: str) -> str:
        """The reason ``mode`` failed with ``code`` from ``source`` to ``target``. The probe
        may have made ``mode`` work here already; then the words blame the file, not the
        filesystem. ENAMETOOLONG names the path that is too long, not the probed one."""
        if code == errno.ENAMETOOLONG:
            return explain_name_too_long((target, source))
        context = ReasonContext(self.probe.source, self.probe.target, mode_worked=self.probe.supports(mode))
        return explain_failure(mode, code, context)


@dataclass
class _Batch:
    """Up to _BATCH entries (files and symlinks) of one source directory, and where they go."""

    pair: _Pair
    source_dir: str
    target_dir: str
    entries: list[os.DirEntry[str]] = field(default_factory=list)


#: The files one make_many call made: (mode, source directory, target directory, names).
_MadeRun = tuple[LinkMode, str, str, list[str]]


class _Run:
    """One call of :meth:`Linker.link` or :meth:`Linker.link_tree`: its stop flag, its
    counts, the names it created (to remove them again if the call fails) and its
    warnings (issued from the caller's thread, so that they point at the caller's line).

    Worker threads only append to the lists (atomic in CPython, with or without the GIL).
    """

    def __init__(self, umask: int | None = None) -> None:
        self.stop = threading.Event()
        self.umask = umask
        self.tallies: list[_Tally] = []
        self.directories: list[str] = []
        self.runs: list[_MadeRun] = []
        #: (mode, source, target) of single files; mode None: a symlink of the source tree.
        self.files: list[tuple[LinkMode | None, str, str]] = []
        #: The names of make_many calls that raised (KeyboardInterrupt) instead of returning:
        #: some prefix of them was made, which prefix is not known.
        self.uncertain: list[_MadeRun] = []
        #: Files changed before this (st_ctime_ns) are not this call's; see undo().
        self.since_ns = time.time_ns()
        self.warnings: list[str] = []

    def tally(self) -> _Tally:
        tally = _Tally()
        self.tallies.append(tally)
        return tally

    def freeze(self) -> LinkStats:
        total = _Tally()
        for tally in list(self.tallies):
            total.add(tally)
        return total.freeze()

    def emit_warnings(self, stacklevel: int) -> None:
        """Issue the queued warnings; ``stacklevel`` counts from the public method's caller."""
        while self.warnings:
            warnings.warn(LinkModeFallbackWarning(self.warnings.pop(0)), stacklevel=stacklevel + 1)

    def undo(self) -> tuple[str, ...]:
        """Remove what this call created, newest directories last; return what was left.

        Every name here was created exclusively (O_EXCL, link(2), symlink(2), mkdir(2) fail
        on an existing name), so none of them existed before the call. A name is removed
        only if it still is what this call made: a hard link still the source's inode, a
        symlink still with the text it was given, a copy or clone still a regular file with
        one link that is not the source; a directory only if empty (rmdir(2)).
        """
        left: list[str] = []
        for mode, source_dir, target_dir, names in self.runs:
            for name in names:
                _remove_made(mode, os.path.join(source_dir, name), os.path.join(target_dir, name), left)
        for file_mode, source, target in self.files:
            _remove_made(file_mode, source, target, left)
        # An interrupted make_many made a prefix of its names, and one of the others may be
        # somebody's file that was there before: remove a name only if it also changed
        # after the call began (its ctime; the filesystem's clock may lag, which errs on
        # the side of leaving one of ours, and its directory, in place).
        for mode, source_dir, target_dir, names in self.uncertain:
            for name in names:
                target = os.path.join(target_dir, name)
                with contextlib.suppress(OSError):
                    if os.lstat(target).st_ctime_ns >= self.since_ns:
                        _remove_made(mode, os.path.join(source_dir, name), target, [])
        for directory in reversed(self.directories):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(directory)
        return tuple(left)


def _still_made(mode: LinkMode | None, source: str, target: str, info: os.stat_result) -> bool:
    """Whether ``target`` (whose lstat is ``info``) is still what ``mode`` made from ``source``."""
    if mode is None or mode is LinkMode.SYMLINK:
        expected = os.readlink(source) if mode is None else os.path.abspath(source)
        return stat.S_ISLNK(info.st_mode) and os.readlink(target) == expected
    source_info = os.stat(source)
    same_inode = (source_info.st_dev, source_info.st_ino) == (info.st_dev, info.st_ino)
    if mode is LinkMode.HARDLINK:
        return same_inode
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and not same_inode


def _remove_made(mode: LinkMode | None, source: str, target: str, left: list[str]) -> None:
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError:
        left.append(target)
        return
    try:
        if _still_made(mode, source, target, info):
            os.unlink(target)
            return
    except FileNotFoundError:
        return
    except OSError:
        pass
    left.append(target)


@dataclass
class _Tally:
    by_mode: dict[LinkMode, int] = field(default_factory=lambda: dict.fromkeys(LinkMode, 0))
    symlinks: int = 0
    directories: int = 0
    bytes: int = 0

    def add(self, other: _Tally) -> None:
        for mode, count in other.by_mode.items():
            self.by_mode[mode] += count
        self.symlinks += other.symlinks
        self.directories += other.directories
        self.bytes += other.bytes

    def freeze(self) -> LinkStats:
        return LinkStats(
            cloned=self.by_mode[LinkMode.CLONE],
            hardlinked=self.by_mode[LinkMode.HARDLINK],
            symlinked=self.by_mode[LinkMode.SYMLINK],
            copied=self.by_mode[LinkMode.COPY],
            symlinks=self.symlinks,
            directories=self.directories,
            bytes=self.bytes,
        )


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return os.path.realpath(path)


class Linker:
    """Put files from a source (a cache) into a target (a project) with the best mode.

    :param mode: an explicit mode (or alias); None reads ``env``; neither means auto.
    :param env: environment variable holding an explicit mode; None to ignore the environment.
    :param prefer: the order auto mode tries; modes not listed are never used.
    :param replace: replace existing destination files atomically instead of failing.
    :param workers: threads for :meth:`link_tree` (1 or more). Default 1: on ext4 here 4
        threads made hardlinking 5,100 files 1.6x slower and copying 2.8x slower
        (directory locks, GIL).
    """

    def __init__(
        self,
        mode: LinkMode | str | None = None,
        *,
        env: str | None = "LINKPROBE_MODE",
        prefer: Sequence[LinkMode | str] = AUTO_ORDER,
        replace: bool = False,
        workers: int | None = None,
        backend: LinkBackend | None = None,
    ) -> None:
        chosen = requested_choice(mode, env)
        if isinstance(chosen, tuple):  # an order word (pnpm's clone-or-copy) is the order to use
            prefer = chosen
        self._requested = chosen if isinstance(chosen, LinkMode) else None
        preferred = [parse_mode(item, source="prefer") for item in prefer]
        self._prefer: tuple[LinkMode, ...] = tuple(dict.fromkeys(m for m in preferred if m is not None))
        if not self._prefer:
            raise InvalidArgumentError("prefer", prefer, "must name at least one mode")
        if workers is None:
            workers = 1
        elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidArgumentError("workers", workers, "must be a whole number of threads, 1 or more")
        self._env = env
        self._replace = replace
        self._workers = workers
        self._backend = backend or default_backend()
        self._lock = threading.Lock()
        self._pairs: dict[tuple[object, ...], _Pair] = {}
        self._dir_pairs: dict[tuple[str, str], _Pair] = {}
        self._fallbacks: list[Fallback] = []
        self._last: _Pair | None = None
        self._mounts: list[Mount] | None = None
        self._mount_points: frozenset[str] = frozenset()

    # -- decisions ---------------------------------------------------------------------

    @property
    def mode(self) -> LinkMode | None:
        """The effective mode of the most recently used mount pair (None before any use)."""
        last = self._last
        return last.mode if last else None

    @property
    def explicit(self) -> bool:
        return self._requested is not None

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        """Every step down auto mode took, in order."""
        with self._lock:
            return tuple(self._fallbacks)

    def _mount_table(self) -> list[Mount]:
        """The mount table, read once per Linker (a tree walk asks for every directory)."""
        if self._mounts is None:
            self._mounts = mount_table()
            self._mount_points = frozenset(mount.mount_point for mount in self._mounts)
        return self._mounts

    def _mount_key(self, path: str) -> object:
        mount = find_mount(path, self._mount_table())
        if mount is None:
            return None
        return mount.mount_id if mount.mount_id is not None else mount.mount_point

    def _pair_for(self, source: str, target_dir: str, source_dir: str | None = None) -> _Pair:
        """The pair for a source (file or directory) and a target directory, probed once.
        ``source_dir``: the directory of ``source`` when the caller knows it already.

        Keyed by both mounts and both st_dev (btrfs subvolumes share a mount but not a
        device, and link() fails between them).
        """
        if source_dir is None:
            source_dir = source if os.path.isdir(source) else os.path.dirname(source) or "."
        key_paths = (_nearest_existing(source_dir), _nearest_existing(target_dir))
        with self._lock:
            cached = self._dir_pairs.get(key_paths)
        if cached is not None:
            self._last = cached
            return cached
        key = (
            self._mount_key(key_paths[0]),
            os.stat(key_paths[0]).st_dev,
            self._mount_key(key_paths[1]),
            os.stat(key_paths[1]).st_dev,
        )
        with self._lock:
            pair = self._pairs.get(key)
            if pair is None:
                result = probe(source, target_dir, cache=False, backend=self._backend)
                pair = _Pair(result, self._choose(result), self.explicit)
                self._pairs[key] = pair
            self._dir_pairs[key_paths] = pair
        self._last = pair
        return pair

    def _choose(self, result: Probe) -> LinkMode:
        if self._requested is not None:
            return result.require(self._requested)  # raises UnsupportedModeError
        for mode in self._prefer:
            if result.supports(mode):
                return mode
        raise NoUsableModeError(
            result.source.given,
            result.target.given,
            {mode: result.verdict(mode).reason for mode in self._prefer},
            next((result.verdict(mode).errno for mode in self._prefer if result.verdict(mode).errno), None),
        )

    def _fall_back(self, pair: _Pair, failed: LinkMode, code: int, source: str, target: str, run: _Run) -> None:
        with pair.lock:
            if pair.mode is not failed:
                return  # another thread already stepped down; retry with its choice
            supported = {mode for mode in LinkMode if pair.probe.supports(mode)}
            chosen = next_mode(self._prefer, failed, supported)
            reason = pair.explain(failed, code, source, target)
            if chosen is None:
                raise LinkFailedError(failed, source, target, code, f"{reason}; no other mode left to fall back to")
            pair.mode = chosen
            fallback = Fallback(
                pair.probe.source.mount_point, pair.probe.target.mount_point, failed, chosen, code, reason
            )
        with self._lock:
            self._fallbacks.append(fallback)
        message = (
            f"{failed.value} failed from {source} to {target}: {reason}; using {chosen.value} for the rest "
            f"of this run on this pair of mounts. Set the mode explicitly ({fallback_advice(chosen, self._env)}) "
            "to silence this warning."
        )
        _log.warning("%s", message)
        run.warnings.append(message)

    # -- doing -------------------------------------------------------------------------

    def _place(
        self, pair: _Pair, source: str, target: str, hints: SourceHints | None, run: _Run, *, new: bool = True
    ) -> LinkMode:
        """Materialise one regular file; returns the mode that did it. ``new``: ``target``
        is a name of the caller's (not a temporary), recorded in ``run`` once made."""
        mode = pair.mode
        try:
            self._backend.make(mode, source, target, hints)
        except OSError as exc:
            return self._recover(pair, mode, exc, source, target, hints, run, new=new)
        if new:
            run.files.append((mode, source, target))
        return mode

    def _recover(
        self,
        pair: _Pair,
        mode: LinkMode,
        exc: OSError,
        source: str,
        target: str,
        hints: SourceHints | None,
        run: _Run,
        *,
        new: bool = True,
    ) -> LinkMode:
        """Apply the rules to ``exc``, the failure of making ``target`` with ``mode``: fall
        back (auto), copy this one file, replace, or raise. Returns the mode that made it."""
        if isinstance(exc, FileExistsError):
            if not self._replace:
                raise LinkFailedError(mode, source, target, 17, "destination exists (use replace=True)") from None
            if os.path.realpath(source) == os.path.realpath(target):
                # Renaming a copy over this name would replace the cache's own file.
                raise TargetInsideSourceError(source, target, "the target is the source itself") from None
            # Not recorded as made: the name was there before, and its old file is gone
            # once renamed over, so removing the new one would restore nothing.
            return self._replace_atomically(
                source, target, lambda temporary: self._place(pair, source, temporary, hints, run, new=False)
            )
        code = errno_of(exc)
        action = on_failure(mode, code, explicit=pair.explicit)
        if action is FailureAction.FALL_BACK:
            self._fall_back(pair, mode, code, source, target, run)  # raises when no mode is left
            return self._place(pair, source, target, hints, run, new=new)
        if action is FailureAction.COPY_FILE:
            self._backend.copy(source, target, hints)
            if new:
                run.files.append((LinkMode.COPY, source, target))
            return LinkMode.COPY
        reason = pair.explain(mode, code, source, target)
        raise error_class(code, explicit=pair.explicit)(mode, source, target, code, reason) from exc

    def _replace_atomically(self, source: str, target: str, make: Callable[[str], LinkMode]) -> LinkMode:
        """``make`` the file (or symlink) under a temporary name beside ``target``, then
        rename it over ``target``: readers see the old file or the new one, never neither."""
        temporary = os.path.join(os.path.dirname(target), f"{SCRATCH_PREFIX}{os.urandom(8).hex()}.tmp")
        mode = make(temporary)
        try:
            identity = self._backend.identity(temporary)
            os.replace(temporary, target)
            # rename(2) does nothing when both names are links to one inode (re-linking a
            # file that is already linked): the temporary name is still there.
            self._backend.remove_if_same(temporary, identity)
        except OSError as exc:
            remove_quietly(temporary)
            raise LinkFailedError(mode, source, target, errno_of(exc), exc.strerror or str(exc)) from exc
        return mode

    def _mode_word(self) -> LinkMode:
        """The mode named in errors raised before any pair is known."""
        return self._requested or self._prefer[0]

    def link(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> LinkMode:
        """Materialise the file ``source`` at ``target``; returns the mode used for it.

        The target's missing directories are created (after an explicit mode is verified)
        and removed again if the file cannot be made. A source that is missing, a
        directory or a special file raises :class:`~linkprobe.InvalidSourceError` (a
        ``FileNotFoundError``/``IsADirectoryError`` for the first two) and changes nothing.
        """
        source_path, target_path = os.fspath(source), os.fspath(target)
        try:
            st_mode: int | None = os.stat(source_path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            st_mode = None
        except OSError as exc:
            raise LinkFailedError(
                self._mode_word(), source_path, target_path, errno_of(exc), exc.strerror or str(exc)
            ) from exc
        _raise_for_source(source_path, target_path, st_mode, tree=False)
        target_dir = os.path.dirname(os.path.abspath(target_path))
        pair = self._pair_for(source_path, target_dir, os.path.dirname(source_path) or ".")
        run = _Run()
        try:
            _make_parents(target_dir, run, pair.mode, source_path)
            mode = self._place(pair, source_path, target_path, None, run)
        except BaseException as exc:
            left = run.undo()
            if isinstance(exc, LinkprobeError):
                exc.not_removed = left
            with contextlib.suppress(Warning):  # the failure matters more than a warning filter
                run.emit_warnings(stacklevel=2)
            raise
        run.emit_warnings(stacklevel=2)
        return mode

    def link_tree(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> LinkStats:
        """Mirror the directory ``source`` into ``target`` (which may not exist yet).

        Regular files use the pair's mode; symlinks are re-created with the same text;
        directories are created as needed. A target that is the source or inside it is
        refused before anything is written. On the first failure, what this call created
        is removed again (never what the target had before) and the error, naming the
        file, carries the partial ``stats`` and what could not be removed (``not_removed``).
        """
        source_root, target_root = os.fspath(source), os.fspath(target)
        try:
            source_info: os.stat_result | None = os.stat(source_root)
        except (FileNotFoundError, NotADirectoryError):
            source_info = None
        except OSError as exc:
            raise LinkFailedError(
                self._mode_word(), source_root, target_root, errno_of(exc), exc.strerror or str(exc)
            ) from exc
        _raise_for_source(source_root, target_root, source_info.st_mode if source_info else None, tree=True)
        assert source_info is not None
        real_source = os.path.realpath(source_root)
        source_identity = (source_info.st_dev, source_info.st_ino)
        _refuse_inside(source_root, target_root, real_source, source_identity, mounts=self._mount_table())
        # Read once per tree: saves an fstat per file (see LinkBackend.create_like).
        run = _Run(self._backend.umask())
        tally = run.tally()  # directories, counted by this thread
        pair: _Pair | None = None
        try:
            pair = self._pair_for(source_root, target_root)  # explicit: verified before any write
            # Missing parents of the target too (like link()), now that the mode is verified.
            _make_parents(os.path.dirname(os.path.abspath(target_root)), run, pair.mode, source_root)
            created_root = _make_directory(target_root, tally, pair.mode, source_root, run)
            target_info = os.stat(target_root)
            if created_root:  # the filesystem's own clock: what is made in the new root is not older
                run.since_ns = target_info.st_ctime_ns
            walk = _Walk(source_root, real_source, source_identity, (target_info.st_dev, target_info.st_ino))
            with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="linkprobe") as pool:
                futures: list[Future[None]] = []
                try:
                    for batch in self._walk(pair, source_root, target_root, tally, run, walk):
                        if run.stop.is_set():
                            break
                        if self._workers == 1:
                            self._run_batch(batch, run)
                        else:
                            futures.append(pool.submit(self._run_batch, batch, run))
                        if run.warnings:
                            run.emit_warnings(stacklevel=2)
                    for future in futures:
                        future.result()
                        if run.warnings:
                            run.emit_warnings(stacklevel=2)
                except BaseException:
                    run.stop.set()
                    for future in futures:
                        future.cancel()
                    raise
                # Leaving the with block waits for every worker, so nothing is made after
                # the undo below.
        except BaseException as exc:
            error = self._failed(exc, run, pair.mode if pair else self._mode_word(), source_root, target_root)
            if error is exc:
                raise
            raise error from exc
        run.emit_warnings(stacklevel=2)
        return run.freeze()

    def _failed(
        self, exc: BaseException, run: _Run, mode: LinkMode, source_root: str, target_root: str
    ) -> BaseException:
        """Undo ``run`` after ``exc`` and return the exception to raise: a LinkprobeError
        carrying the partial stats (an OSError of the walk is wrapped into one)."""
        left = run.undo()
        with contextlib.suppress(Warning):  # the failure matters more than a warning filter
            run.emit_warnings(stacklevel=3)
        error: BaseException = exc
        if isinstance(exc, OSError) and not isinstance(exc, LinkprobeError):
            error = LinkFailedError(
                mode,
                exc.filename if isinstance(exc.filename, str) else source_root,
                exc.filename2 if isinstance(exc.filename2, str) else target_root,
                errno_of(exc),
                exc.strerror or str(exc),
            )
        if isinstance(error, LinkprobeError):
            error.stats = run.freeze()
            error.not_removed = left
        return error

    def _walk(
        self, root_pair: _Pair, source_root: str, target_root: str, tally: _Tally, run: _Run, walk: _Walk
    ) -> Iterable[_Batch]:
        """Create directories (parents first) and yield batches of entries to materialise."""
        real_source, real_target = walk.real_source, os.path.realpath(target_root)
        target_ino = walk.target_identity[1]
        points = self._mount_points
        pending = [(source_root, target_root, real_source, real_target, root_pair)]
        while pending:
            source_dir, target_dir, real_source_dir, real_target_dir, pair = pending.pop()
            batch = _Batch(pair, source_dir, target_dir)
            with os.scandir(source_dir) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        real_source_child = os.path.join(real_source_dir, entry.name)
                        # The target reached from inside the source (a bind mount of the
                        # target or of a parent in the source tree): walking on would mirror
                        # the output into itself. d_ino is free from readdir; a mount point
                        # shows the covered inode there, so those are stat'ed too.
                        if entry.inode() == target_ino or real_source_child in points:
                            walk.refuse_target_in_source(entry, target_root)
                        target_path = os.path.join(target_dir, entry.name)
                        if _make_directory(target_path, tally, pair.mode, entry.path, run):
                            child_pair = self._child_pair(pair, entry, target_path, real_source_dir, real_target_dir)
                            real_target_child = os.path.join(real_target_dir, entry.name)
                        else:
                            # A directory the target already had may be a symlink into (or
                            # the mount point of) another filesystem: give it its own pair
                            # now, instead of learning it from a failed link later. It may
                            # also lead into the source itself: refuse that first.
                            real_target_child = os.path.realpath(target_path)
                            identity = walk.source_identity
                            _refuse_inside(source_root, target_path, real_source, identity, real_target_child)
                            child_pair = self._pair_for(entry.path, target_path)
                        pending.append((entry.path, target_path, real_source_child, real_target_child, child_pair))
                        continue
                    batch.entries.append(entry)
                    if len(batch.entries) >= _BATCH:
                        yield batch
                        batch = _Batch(pair, source_dir, target_dir)
            if batch.entries:
                yield batch

    def _child_pair(
        self,
        pair: _Pair,
        entry: os.DirEntry[str],
        target_path: str,
        real_source_dir: str,
        real_target_dir: str,
    ) -> _Pair:
        """A subdirectory keeps its parent's pair unless it is another mount or device."""
        self._mount_table()
        points = self._mount_points
        source_child = os.path.join(real_source_dir, entry.name)
        target_child = os.path.join(real_target_dir, entry.name)
        # Mount points are few: compare strings first, and only stat when one matches or
        # the device changed (btrfs subvolumes, nested mounts).
        parent_dev = pair.probe.source.st_dev
        if source_child in points or target_child in points or entry.stat(follow_symlinks=False).st_dev != parent_dev:
            return self._pair_for(entry.path, target_path)
        return pair

    def _run_batch(self, batch: _Batch, run: _Run) -> None:
        """Materialise the regular files and symlinks of one batch (one directory).

        link_tree's hot path: the stat is the one ``os.scandir`` already made, and the
        regular files go to the backend in one ``make_many`` call, which on Linux works
        relative to directory descriptors. A failed file comes back with its error and goes
        through the same rules as :meth:`link` (``_recover``); then the rest continue.
        """
        tally = run.tally()
        stop, umask = run.stop, run.umask
        pair, source_dir, target_dir = batch.pair, batch.source_dir, batch.target_dir
        if umask is not None and self._backend.has_default_acl(target_dir):
            umask = None  # the ACL, not the umask, cuts the bits there: check every new file
        files: list[tuple[str, SourceHints]] = []
        try:
            for entry in batch.entries:
                if entry.is_symlink():
                    self._copy_symlink(pair, entry.path, os.path.join(target_dir, entry.name), tally, run)
                    continue
                info = entry.stat(follow_symlinks=False)
                problem = None if stat.S_ISREG(info.st_mode) else source_problem(info.st_mode, tree=False)
                if problem is not None:
                    target_path = os.path.join(target_dir, entry.name)
                    raise LinkFailedError(pair.mode, entry.path, target_path, problem.errno, problem.reason)
                files.append(
                    (entry.name, SourceHints(stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size, umask))
                )
                tally.bytes += info.st_size
            start = 0
            while start < len(files) and not stop.is_set():
                mode = pair.mode
                try:
                    done, error = self._backend.make_many(mode, source_dir, target_dir, files, start)
                except BaseException:
                    run.uncertain.append((mode, source_dir, target_dir, [name for name, _ in files[start:]]))
                    raise
                if done > start:
                    # Only the names: holding on to the (name, hints) tuples of a whole tree
                    # keeps two GC-tracked objects per file alive for the cyclic collector
                    # to traverse (hardlinking 5,000 files on tmpfs took 1.05x as long);
                    # a list of str is one tracked object.
                    run.runs.append((mode, source_dir, target_dir, [name for name, _ in files[start:done]]))
                    tally.by_mode[mode] += done - start
                if error is None:
                    break
                name, hints = files[done]
                source_path, target_path = os.path.join(source_dir, name), os.path.join(target_dir, name)
                tally.by_mode[self._recover(pair, mode, error, source_path, target_path, hints, run)] += 1
                start = done + 1
        except BaseException:
            stop.set()
            raise

    def _copy_symlink(self, pair: _Pair, source_path: str, target_path: str, tally: _Tally, run: _Run) -> None:
        """Re-create a symlink of the source tree with the same text."""
        text = os.readlink(source_path)
        try:
            self._backend.symlink(text, target_path)
        except FileExistsError:
            if not self._replace:
                raise LinkFailedError(
                    LinkMode.SYMLINK, source_path, target_path, 17, "destination exists (use replace=True)"
                ) from None
            self._replace_atomically(source_path, target_path, lambda temporary: self._symlink(text, temporary))
            tally.symlinks += 1
            return
        except OSError as exc:
            code = errno_of(exc)
            reason = pair.explain(LinkMode.SYMLINK, code, source_path, target_path)
            if on_symlink_failure(code, explicit=pair.explicit) is FailureAction.RAISE:
                raise LinkFailedError(LinkMode.SYMLINK, source_path, target_path, code, reason) from exc
            # Auto, and the target cannot hold symlinks (exFAT): materialise what the link
            # points to, like `cp -rL`, and say so once per pair.
            if not os.path.isfile(source_path):
                raise LinkFailedError(
                    LinkMode.SYMLINK, source_path, target_path, code, f"{reason}; it does not point to a file"
                ) from exc
            self._warn_symlink_once(pair, reason, source_path, run)
            mode = self._place(pair, source_path, target_path, None, run)
            tally.by_mode[mode] += 1
            tally.bytes += os.stat(source_path).st_size
            return
        run.files.append((None, source_path, target_path))
        tally.symlinks += 1

    def _symlink(self, text: str, target: str) -> LinkMode:
        self._backend.symlink(text, target)
        return LinkMode.SYMLINK

    def _warn_symlink_once(self, pair: _Pair, reason: str, source_path: str, run: _Run) -> None:
        with pair.lock:
            if pair.warned_symlinks:
                return
            pair.warned_symlinks = True
        message = (
            f"{reason}: symlinks such as {source_path} are materialised as the files they point to. "
            f"Set the mode explicitly ({fallback_advice(pair.mode, self._env)}) to make this an error instead."
        )
        _log.warning("%s", message)
        run.warnings.append(message)


def _make_directory(path: str, tally: _Tally, mode: LinkMode, source_path: str, run: _Run) -> bool:
    """Create ``path``; False if it was there already (a directory, or a symlink to one)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise LinkFailedError(mode, source_path, path, 17, "exists and is not a directory") from None
        return False
    except OSError as exc:
        code = errno_of(exc)
        reason = explain_name_too_long((path,)) if code == errno.ENAMETOOLONG else exc.strerror or str(exc)
        raise LinkFailedError(mode, source_path, path, code, reason) from exc
    run.directories.append(path)
    tally.directories += 1
    return True


def _make_parents(directory: str, run: _Run, mode: LinkMode, source_path: str) -> None:
    """Create ``directory`` and its missing parents, recording each one made in ``run``."""
    missing: list[str] = []
    path = directory
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    scratch = _Tally()
    for path in reversed(missing):
        _make_directory(path, scratch, mode, source_path, run)


def _raise_for_source(source: str, target: str, st_mode: int | None, *, tree: bool) -> None:
    problem = source_problem(st_mode, tree=tree)
    if problem is None:
        return
    kind: type[InvalidSourceError] = {
        errno.ENOENT: SourceNotFoundError,
        errno.EISDIR: SourceIsDirectoryError,
        errno.ENOTDIR: SourceNotDirectoryError,
    }.get(problem.errno, InvalidSourceError)
    raise kind(source, target, problem.errno, problem.reason)


def _refuse_inside(
    source_root: str,
    target: str,
    real_source: str,
    source_identity: tuple[int, int],
    real_target: str | None = None,
    *,
    mounts: Sequence[Mount] = (),
) -> None:
    """Raise TargetInsideSourceError if ``target`` is the source or lies inside it.

    By path, with symlinks resolved (a target that does not exist yet resolves through its
    nearest existing parent); then by identity, for the target and each of its existing
    parents: a bind mount of the source has another path but the same (st_dev, st_ino).
    Last, ``mounts`` inside the source: one that is the target or a parent of it (a bind
    mount of the project inside the cache) would lead the walk into its own output.
    """
    if real_target is None:
        real_target = os.path.realpath(target)
    reason = target_inside_source(os.path.normcase(real_source), os.path.normcase(real_target))
    parents: dict[tuple[int, int], str] = {}
    path = real_target
    while reason is None:
        try:
            info = os.stat(path)
        except OSError:
            info = None
        if info is not None:
            parents[(info.st_dev, info.st_ino)] = path
            if (info.st_dev, info.st_ino) == source_identity:
                where = "the target" if path == real_target else f"the target is inside {path}, which"
                reason = f"{where} is the source directory under another path (a bind mount?)"
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    inner = real_source.rstrip(os.sep) + os.sep
    for mount in mounts if reason is None else ():
        if not mount.mount_point.startswith(inner):
            continue
        try:
            info = os.stat(mount.mount_point)
        except OSError:
            continue
        reached = parents.get((info.st_dev, info.st_ino))
        if reached is not None:
            reason = f"the source holds {mount.mount_point}, a mount of {reached}, which is or holds the target"
            break
    if reason is not None:
        raise TargetInsideSourceError(source_root, target, reason)


@dataclass(frozen=True)
class _Walk:
    """What one link_tree walk checks its directories against."""

    source_root: str
    real_source: str
    source_identity: tuple[int, int]
    target_identity: tuple[int, int]

    def refuse_target_in_source(self, entry: os.DirEntry[str], target_root: str) -> None:
        """Raise if the source directory ``entry`` is the target (reached through a mount)."""
        info = entry.stat(follow_symlinks=False)
        if (info.st_dev, info.st_ino) == self.target_identity:
            raise TargetInsideSourceError(
                self.source_root,
                target_root,
                f"the source directory {entry.path} is the target itself (a mount inside the source)",
            )
