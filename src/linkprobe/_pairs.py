"""The per-mount-pair decisions of a :class:`~linkprobe.Linker`: which mode each (source
mount, target mount) pair uses, probed once, and the one step down auto mode may take.

Keyed by both mounts and both ``st_dev`` (btrfs subvolumes share a mount but not a device,
and link() fails between them). The rules themselves are pure functions of
:mod:`linkprobe.reasons`; this module keeps their state per pair.
"""

from __future__ import annotations

import errno
import os
from _thread import allocate_lock  # threading's Lock, without importing threading

from linkprobe._link_results import Fallback
from linkprobe._words import MODE_WORDS, link_mode, required, supported
from linkprobe.errors import LinkFailedError
from linkprobe.mounts import Mount, find_mount, mount_table
from linkprobe.probe import find
from linkprobe.reasons import ReasonContext, explain_failure, explain_name_too_long

TYPE_CHECKING = False
if TYPE_CHECKING:
    from linkprobe._facts import Findings
    from linkprobe._undo import Run
    from linkprobe.api import LinkBackend

__all__ = ["Pair", "PairTable"]


class Pair:
    """The decision for one (source mount, target mount) pair; ``lock`` guards ``mode``.

    Modes are words here, as the probe's ``found`` has them (linkprobe._words): the
    linker builds a LinkMode only where it returns one."""

    __slots__ = ("explicit", "found", "lock", "mode", "warned_symlinks")

    def __init__(self, found: Findings, mode: str, explicit: bool) -> None:
        self.found = found
        self.mode = mode
        self.explicit = explicit
        self.warned_symlinks = False
        self.lock = allocate_lock()

    def explain(self, mode: str, code: int, source: str, target: str) -> str:
        """The reason ``mode`` failed with ``code`` from ``source`` to ``target``. The probe
        may have made ``mode`` work here already; then the words blame the file, not the
        filesystem. ENAMETOOLONG names the path that is too long, not the probed one."""
        if code == errno.ENAMETOOLONG:
            return explain_name_too_long((target, source))
        source_facts, target_facts, verdicts, *_ = self.found
        context = ReasonContext(source_facts, target_facts, mode_worked=supported(verdicts, mode))
        return explain_failure(mode, code, context)


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return os.path.realpath(path)


class PairTable:
    """The pairs one Linker has met, its fallbacks, and the mount table it reads once."""

    def __init__(
        self,
        requested: str | None,
        prefer: tuple[str, ...],
        env: str | None,
        backend: LinkBackend,
    ) -> None:
        self.requested = requested
        self.prefer = prefer
        self.env = env
        self.backend = backend
        self.lock = allocate_lock()
        self.pairs: dict[tuple[object, ...], Pair] = {}
        self.dir_pairs: dict[tuple[str, str], Pair] = {}
        self.fallbacks: list[Fallback] = []
        #: The pair used most recently (None before any use).
        self.last: Pair | None = None
        self._mounts: list[Mount] | None = None
        self._mount_points: frozenset[str] = frozenset()

    @property
    def explicit(self) -> bool:
        return self.requested is not None

    def mount_table(self) -> list[Mount]:
        """The mount table, read once per Linker (a tree walk asks for every directory), and
        the one its probes use. Read, not watched: nothing here is cached past the Linker,
        so a watch (an open descriptor and the select module) would buy nothing."""
        if self._mounts is None:
            self._mounts = mount_table(watch=False)
            self._mount_points = frozenset(mount.mount_point for mount in self._mounts)
        return self._mounts

    def mount_points(self) -> frozenset[str]:
        self.mount_table()
        return self._mount_points

    def _mount_key(self, path: str) -> object:
        mount = find_mount(path, self.mount_table())
        if mount is None:
            return None
        return mount.mount_id if mount.mount_id is not None else mount.mount_point

    def pair_for(self, source: str, target_dir: str, source_dir: str | None = None) -> Pair:
        """The pair for a source (file or directory) and a target directory, probed once.
        ``source_dir``: the directory of ``source`` when the caller knows it already."""
        if source_dir is None:
            source_dir = source if os.path.isdir(source) else os.path.dirname(source) or "."
        key_paths = (_nearest_existing(source_dir), _nearest_existing(target_dir))
        with self.lock:
            cached = self.dir_pairs.get(key_paths)
        if cached is not None:
            self.last = cached
            return cached
        key = (
            self._mount_key(key_paths[0]),
            os.stat(key_paths[0]).st_dev,
            self._mount_key(key_paths[1]),
            os.stat(key_paths[1]).st_dev,
        )
        with self.lock:
            pair = self.pairs.get(key)
            if pair is None:
                found = find(source, target_dir, backend=self.backend, mounts=self.mount_table)
                pair = Pair(found, self.choose(found), self.explicit)
                self.pairs[key] = pair
            self.dir_pairs[key_paths] = pair
        self.last = pair
        return pair

    def child(
        self, pair: Pair, entry: os.DirEntry[str], target_path: str, real_source_child: str, real_target_child: str
    ) -> Pair:
        """A subdirectory keeps its parent's pair unless it is another mount or device.
        ``real_source_child``/``real_target_child``: ``entry`` and ``target_path`` with
        symlinks resolved (the walk knows them from the parents' resolved paths)."""
        points = self.mount_points()
        # Mount points are few: compare strings first, and only stat when one matches or
        # the device changed (btrfs subvolumes, nested mounts).
        parent_dev = pair.found[0].st_dev
        if (
            real_source_child in points
            or real_target_child in points
            or entry.stat(follow_symlinks=False).st_dev != parent_dev
        ):
            return self.pair_for(entry.path, target_path)
        return pair

    def choose(self, found: Findings) -> str:
        """The pair's mode by the two rules (``_words.required``): the requested mode,
        verified (UnsupportedModeError), or the best working mode of ``prefer``
        (NoUsableModeError)."""
        source, target, verdicts, *_ = found
        return required(verdicts, self.requested, self.prefer, source.given, target.given)

    def fall_back(self, pair: Pair, failed: str, code: int, source: str, target: str, run: Run) -> None:
        """Step ``pair`` down from ``failed`` to the next mode (auto), once, and say so."""
        from linkprobe.fallback import fallback_advice, next_mode  # a file failed: see there

        with pair.lock:
            if pair.mode != failed:
                return  # another thread already stepped down; retry with its choice
            source_facts, target_facts, verdicts, *_ = pair.found
            working = {mode for mode in MODE_WORDS if supported(verdicts, mode)}
            chosen = next_mode(self.prefer, failed, working)
            reason = pair.explain(failed, code, source, target)
            if chosen is None:
                raise LinkFailedError(failed, source, target, code, f"{reason}; no other mode left to fall back to")
            pair.mode = chosen
            fallback = Fallback(
                source_facts.mount_point, target_facts.mount_point, link_mode(failed), link_mode(chosen), code, reason
            )
        with self.lock:
            self.fallbacks.append(fallback)
        run.warn(
            f"{failed!s} failed from {source} to {target}: {reason}; using {chosen!s} for the rest "
            f"of this run on this pair of mounts. Set the mode explicitly ({fallback_advice(chosen, self.env)}) "
            "to silence this warning."
        )

    def warn_symlinks_once(self, pair: Pair, reason: str, source_path: str, run: Run) -> None:
        """Say once per pair that its symlinks are materialised as the files they point to."""
        from linkprobe.fallback import fallback_advice  # a symlink failed: see there

        with pair.lock:
            if pair.warned_symlinks:
                return
            pair.warned_symlinks = True
        run.warn(
            f"{reason}: symlinks such as {source_path} are materialised as the files they point to. "
            f"Set the mode explicitly ({fallback_advice(pair.mode, self.env)}) to make this an error instead."
        )
