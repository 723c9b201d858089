"""Materialise files and whole trees with the mode a probe chose.

Auto: the best working mode per (source mount, target mount) pair; if a file later fails
with an error that means "this mode does not work here", step down once, stay there for
the rest of the run and warn once. Explicit: verified before the target is touched and
never replaced by another mode.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from linkprobe.api import KEPT_MODE_BITS, LinkBackend, SourceHints, remove_quietly
from linkprobe.backends import default_backend
from linkprobe.errors import (
    LinkFailedError,
    LinkModeFallbackWarning,
    NoUsableModeError,
    UnsupportedModeError,
)
from linkprobe.modes import AUTO_ORDER, LinkMode, parse_mode
from linkprobe.mounts import Mount, find_mount, mount_table
from linkprobe.probe import SCRATCH_PREFIX, probe, requested_choice
from linkprobe.reasons import (
    MODE_UNSUPPORTED_ERRNOS,
    FailureAction,
    ReasonContext,
    errno_of,
    explain_failure,
    on_failure,
)
from linkprobe.result import Probe

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["Fallback", "LinkStats", "Linker"]

_log = logging.getLogger("linkprobe")

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

    def explain(self, mode: LinkMode, code: int) -> str:
        """The reason ``mode`` failed with ``code`` for a file of this pair. The probe may
        have made ``mode`` work here already; then the words blame the file, not the
        filesystem."""
        context = ReasonContext(self.probe.source, self.probe.target, mode_worked=self.probe.supports(mode))
        return explain_failure(mode, code, context)


@dataclass
class _Batch:
    """Up to _BATCH entries (files and symlinks) of one source directory, and where they go."""

    pair: _Pair
    source_dir: str
    target_dir: str
    entries: list[os.DirEntry[str]] = field(default_factory=list)


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
    :param workers: threads for :meth:`link_tree`. Default 1: on ext4 here 4 threads made
        hardlinking 5,100 files 1.6x slower and copying 2.8x slower (directory locks, GIL).
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
            raise ValueError("prefer must name at least one mode")
        self._replace = replace
        self._workers = max(1, workers if workers is not None else 1)
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

    def _pair_for(self, source: str, target_dir: str) -> _Pair:
        """The pair for a source (file or directory) and a target directory, probed once.

        Keyed by both mounts and both st_dev (btrfs subvolumes share a mount but not a
        device, and link() fails between them).
        """
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

    def _fall_back(self, pair: _Pair, failed: LinkMode, code: int, source: str, target: str) -> None:
        with pair.lock:
            if pair.mode is not failed:
                return  # another thread already stepped down; retry with its choice
            later = self._prefer[self._prefer.index(failed) + 1 :] if failed in self._prefer else ()
            usable = [mode for mode in later if pair.probe.supports(mode)] or [
                mode for mode in later if mode is LinkMode.COPY
            ]
            reason = pair.explain(failed, code)
            if not usable:
                raise LinkFailedError(failed, source, target, code, f"{reason}; no other mode left to fall back to")
            pair.mode = usable[0]
            fallback = Fallback(
                pair.probe.source.mount_point, pair.probe.target.mount_point, failed, pair.mode, code, reason
            )
        with self._lock:
            self._fallbacks.append(fallback)
        message = (
            f"{failed.value} failed from {source} to {target}: {reason}; using {pair.mode.value} for the rest "
            f"of this run on this pair of mounts. Set the mode explicitly (e.g. LINKPROBE_MODE={pair.mode.value}) "
            "to silence this warning."
        )
        _log.warning("%s", message)
        # 5: _fall_back <- _recover <- _run_batch or _place <- link_tree or link <- the caller.
        warnings.warn(LinkModeFallbackWarning(message), stacklevel=5)

    # -- doing -------------------------------------------------------------------------

    def _place(self, pair: _Pair, source: str, target: str, hints: SourceHints | None = None) -> LinkMode:
        """Materialise one regular file; returns the mode that did it."""
        mode = pair.mode
        try:
            self._backend.make(mode, source, target, hints)
        except OSError as exc:
            return self._recover(pair, mode, exc, source, target, hints)
        return mode

    def _recover(
        self, pair: _Pair, mode: LinkMode, exc: OSError, source: str, target: str, hints: SourceHints | None
    ) -> LinkMode:
        """Apply the rules to ``exc``, the failure of making ``target`` with ``mode``: fall
        back (auto), copy this one file, replace, or raise. Returns the mode that made it."""
        if isinstance(exc, FileExistsError):
            if not self._replace:
                raise LinkFailedError(mode, source, target, 17, "destination exists (use replace=True)") from None
            return self._replace_atomically(
                source, target, lambda temporary: self._place(pair, source, temporary, hints)
            )
        code = errno_of(exc)
        action = on_failure(mode, code, explicit=pair.explicit)
        if action is FailureAction.FALL_BACK:
            self._fall_back(pair, mode, code, source, target)  # raises when no mode is left
            return self._place(pair, source, target, hints)
        if action is FailureAction.COPY_FILE:
            self._backend.copy(source, target, hints)
            return LinkMode.COPY
        reason = pair.explain(mode, code)
        if pair.explicit and code in MODE_UNSUPPORTED_ERRNOS:
            raise UnsupportedModeError(mode, source, target, code, reason) from exc
        raise LinkFailedError(mode, source, target, code, reason) from exc

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

    def link(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> LinkMode:
        """Materialise the file ``source`` at ``target``; returns the mode used for it.

        The target's directory is created if missing (after an explicit mode is verified).
        """
        source_path, target_path = os.fspath(source), os.fspath(target)
        pair = self._pair_for(source_path, os.path.dirname(os.path.abspath(target_path)))
        os.makedirs(os.path.dirname(os.path.abspath(target_path)), exist_ok=True)
        return self._place(pair, source_path, target_path)

    def link_tree(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> LinkStats:
        """Mirror the directory ``source`` into ``target`` (which may not exist yet).

        Regular files use the pair's mode; symlinks are re-created with the same text;
        directories are created as needed. Raises on the first failure, naming the file.
        """
        source_root, target_root = os.fspath(source), os.fspath(target)
        if not os.path.isdir(source_root):
            raise LinkFailedError(
                self._requested or self._prefer[0], source_root, target_root, 20, "source is not a directory"
            )
        pair = self._pair_for(source_root, target_root)  # explicit: verified before any write
        tally = _Tally()
        # Missing parents of the target too (like link()), now that the mode is verified.
        os.makedirs(os.path.dirname(os.path.abspath(target_root)), exist_ok=True)
        _make_directory(target_root, tally, pair.mode, source_root)
        stop = threading.Event()
        # Read once per tree: saves an fstat per file (see LinkBackend.create_like).
        umask = self._backend.umask()
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="linkprobe") as pool:
            futures: list[Future[_Tally]] = []
            try:
                for batch in self._walk(pair, source_root, target_root, tally):
                    if stop.is_set():
                        break
                    if self._workers == 1:
                        tally.add(self._run_batch(batch, stop, umask))
                    else:
                        futures.append(pool.submit(self._run_batch, batch, stop, umask))
                for future in futures:
                    tally.add(future.result())
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        return tally.freeze()

    def _walk(self, root_pair: _Pair, source_root: str, target_root: str, tally: _Tally) -> Iterable[_Batch]:
        """Create directories (parents first) and yield batches of entries to materialise."""
        real_source, real_target = os.path.realpath(source_root), os.path.realpath(target_root)
        pending = [(source_root, target_root, real_source, real_target, root_pair)]
        while pending:
            source_dir, target_dir, real_source_dir, real_target_dir, pair = pending.pop()
            batch = _Batch(pair, source_dir, target_dir)
            with os.scandir(source_dir) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        target_path = os.path.join(target_dir, entry.name)
                        if _make_directory(target_path, tally, pair.mode, entry.path):
                            child_pair = self._child_pair(pair, entry, target_path, real_source_dir, real_target_dir)
                            real_target_child = os.path.join(real_target_dir, entry.name)
                        else:
                            # A directory the target already had may be a symlink into (or
                            # the mount point of) another filesystem: give it its own pair
                            # now, instead of learning it from a failed link later.
                            child_pair = self._pair_for(entry.path, target_path)
                            real_target_child = os.path.realpath(target_path)
                        pending.append(
                            (
                                entry.path,
                                target_path,
                                os.path.join(real_source_dir, entry.name),
                                real_target_child,
                                child_pair,
                            )
                        )
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

    def _run_batch(self, batch: _Batch, stop: threading.Event, umask: int | None) -> _Tally:
        """Materialise the regular files and symlinks of one batch (one directory).

        link_tree's hot path: the stat is the one ``os.scandir`` already made, and the
        regular files go to the backend in one ``make_many`` call, which on Linux works
        relative to directory descriptors. A failed file comes back with its error and goes
        through the same rules as :meth:`link` (``_recover``); then the rest continue.
        """
        tally = _Tally()
        pair, source_dir, target_dir = batch.pair, batch.source_dir, batch.target_dir
        if umask is not None and self._backend.has_default_acl(target_dir):
            umask = None  # the ACL, not the umask, cuts the bits there: check every new file
        files: list[tuple[str, SourceHints]] = []
        try:
            for entry in batch.entries:
                if entry.is_symlink():
                    self._copy_symlink(pair, entry.path, os.path.join(target_dir, entry.name), tally)
                    continue
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    raise LinkFailedError(
                        pair.mode,
                        entry.path,
                        os.path.join(target_dir, entry.name),
                        22,
                        "not a regular file, directory or symlink; not copied",
                    )
                files.append(
                    (entry.name, SourceHints(stat.S_IMODE(info.st_mode) & KEPT_MODE_BITS, info.st_size, umask))
                )
                tally.bytes += info.st_size
            start = 0
            while start < len(files) and not stop.is_set():
                mode = pair.mode
                done, error = self._backend.make_many(mode, source_dir, target_dir, files, start)
                tally.by_mode[mode] += done - start
                if error is None:
                    break
                name, hints = files[done]
                source_path, target_path = os.path.join(source_dir, name), os.path.join(target_dir, name)
                tally.by_mode[self._recover(pair, mode, error, source_path, target_path, hints)] += 1
                start = done + 1
        except BaseException:
            stop.set()
            raise
        return tally

    def _copy_symlink(self, pair: _Pair, source_path: str, target_path: str, tally: _Tally) -> None:
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
        except OSError as exc:
            code = errno_of(exc)
            reason = pair.explain(LinkMode.SYMLINK, code)
            if pair.explicit or on_failure(LinkMode.SYMLINK, code, explicit=False) is not FailureAction.FALL_BACK:
                raise LinkFailedError(LinkMode.SYMLINK, source_path, target_path, code, reason) from exc
            # Auto, and the target cannot hold symlinks (exFAT): materialise what the link
            # points to, like `cp -rL`, and say so once per pair.
            if not os.path.isfile(source_path):
                raise LinkFailedError(
                    LinkMode.SYMLINK, source_path, target_path, code, f"{reason}; it does not point to a file"
                ) from exc
            self._warn_symlink_once(pair, reason, source_path)
            mode = self._place(pair, source_path, target_path)
            tally.by_mode[mode] += 1
            tally.bytes += os.stat(source_path).st_size
            return
        tally.symlinks += 1

    def _symlink(self, text: str, target: str) -> LinkMode:
        self._backend.symlink(text, target)
        return LinkMode.SYMLINK

    def _warn_symlink_once(self, pair: _Pair, reason: str, source_path: str) -> None:
        with pair.lock:
            if pair.warned_symlinks:
                return
            pair.warned_symlinks = True
        message = (
            f"{reason}: symlinks such as {source_path} are materialised as the files they point to. "
            "Set the mode explicitly to make this an error instead."
        )
        _log.warning("%s", message)
        # 5: _warn_symlink_once <- _copy_symlink <- _run_batch <- link_tree <- the caller.
        warnings.warn(LinkModeFallbackWarning(message), stacklevel=5)


def _make_directory(path: str, tally: _Tally, mode: LinkMode, source_path: str) -> bool:
    """Create ``path``; False if it was there already (a directory, or a symlink to one)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise LinkFailedError(mode, source_path, path, 17, "exists and is not a directory") from None
        return False
    except OSError as exc:
        raise LinkFailedError(mode, source_path, path, errno_of(exc), exc.strerror or str(exc)) from exc
    tally.directories += 1
    return True
