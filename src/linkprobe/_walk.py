"""The tree walk of :meth:`Linker.link_tree`: where a tree may go (never into itself), its
directories created parents first, its files handed out in batches of one directory.
"""

from __future__ import annotations

import errno
import os
import stat

from linkprobe._undo import Tally
from linkprobe.errors import (
    InvalidSourceError,
    LinkFailedError,
    SourceIsDirectoryError,
    SourceNotDirectoryError,
    SourceNotFoundError,
    TargetInsideSourceError,
)
from linkprobe.reasons import errno_of, explain_name_too_long, source_problem, target_inside_source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Final

    from linkprobe._pairs import Pair, PairTable
    from linkprobe._undo import Run
    from linkprobe.mounts import Mount

__all__ = [
    "BATCH_BYTES",
    "Batch",
    "Walk",
    "make_directory",
    "make_parents",
    "measured_batches",
    "raise_for_source",
    "refuse_inside",
]

#: Entries handed out at once: large enough to amortise the hand-off to a worker, small
#: enough that both cores stay busy on a tree of a few thousand small files.
BATCH_FILES: Final[int] = 128
#: In measured_batches: a batch also ends once its regular files hold this many bytes. With
#: ``workers=None``, also what the calling thread copies of a directory before the rest of it
#: is measured (Linker._run_walk).
BATCH_BYTES: Final[int] = 8 << 20


class Batch:
    """Up to BATCH_FILES entries (files and symlinks) of one source directory, and where they go."""

    __slots__ = ("bytes", "entries", "pair", "sized", "source_dir", "target_dir")

    def __init__(self, pair: Pair, source_dir: str, target_dir: str) -> None:
        self.pair = pair
        self.source_dir = source_dir
        self.target_dir = target_dir
        self.entries: list[os.DirEntry[str]] = []
        #: Bytes of the regular files among ``entries``, and how many files they are, when
        #: the walk measured them.
        self.bytes = 0
        self.sized = 0


class Walk:
    """One link_tree walk: the tree's roots and identities, which its directories are
    checked against (a target reached from inside the source would mirror the output
    into itself)."""

    __slots__ = ("real_source", "source_identity", "source_root", "target_identity", "target_root")

    def __init__(
        self,
        source_root: str,
        target_root: str,
        real_source: str,
        source_identity: tuple[int, int],
        target_identity: tuple[int, int],
    ) -> None:
        self.source_root = source_root
        self.target_root = target_root
        self.real_source = real_source
        self.source_identity = source_identity
        self.target_identity = target_identity

    def refuse_target_in_source(self, entry: os.DirEntry[str]) -> None:
        """Raise if the source directory ``entry`` is the target (reached through a mount)."""
        info = entry.stat(follow_symlinks=False)
        if (info.st_dev, info.st_ino) == self.target_identity:
            raise TargetInsideSourceError(
                self.source_root,
                self.target_root,
                f"the source directory {entry.path} is the target itself (a mount inside the source)",
            )

    def batches(self, pairs: PairTable, root_pair: Pair, tally: Tally, run: Run) -> Iterator[Batch]:
        """Create directories (parents first) and yield batches of up to BATCH_FILES
        entries to materialise. Nothing is stat'ed for them: where sizes are wanted,
        measured_batches splits a batch by bytes."""
        source_root, target_root = self.source_root, self.target_root
        real_source = self.real_source
        target_ino = self.target_identity[1]
        points = pairs.mount_points()
        batch_files = BATCH_FILES
        pending = [(source_root, target_root, real_source, os.path.realpath(target_root), root_pair)]
        while pending:
            source_dir, target_dir, real_source_dir, real_target_dir, pair = pending.pop()
            batch = Batch(pair, source_dir, target_dir)
            # The hot loop of every tree: the batch's list and count in locals, its limit
            # read once.
            add = batch.entries.append
            count = 0
            with os.scandir(source_dir) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        real_source_child = os.path.join(real_source_dir, entry.name)
                        # The target reached from inside the source (a bind mount of the
                        # target or of a parent in the source tree): walking on would mirror
                        # the output into itself. d_ino is free from readdir; a mount point
                        # shows the covered inode there, so those are stat'ed too.
                        if entry.inode() == target_ino or real_source_child in points:
                            self.refuse_target_in_source(entry)
                        target_path = os.path.join(target_dir, entry.name)
                        if make_directory(target_path, tally, pair.mode, entry.path, run):
                            real_target_child = os.path.join(real_target_dir, entry.name)
                            child_pair = pairs.child(pair, entry, target_path, real_source_child, real_target_child)
                        else:
                            # A directory the target already had may be a symlink into (or
                            # the mount point of) another filesystem: give it its own pair
                            # now, instead of learning it from a failed link later. It may
                            # also lead into the source itself: refuse that first.
                            real_target_child = os.path.realpath(target_path)
                            refuse_inside(
                                source_root, target_path, real_source, self.source_identity, real_target_child
                            )
                            child_pair = pairs.pair_for(entry.path, target_path)
                        pending.append((entry.path, target_path, real_source_child, real_target_child, child_pair))
                        continue
                    add(entry)
                    count += 1
                    if count >= batch_files:
                        yield batch
                        batch = Batch(pair, source_dir, target_dir)
                        add = batch.entries.append
                        count = 0
            if count:
                yield batch


def measured_batches(batch: Batch, entries: Sequence[os.DirEntry[str]]) -> Iterator[Batch]:
    """``entries`` of ``batch``'s directory in batches that end at BATCH_FILES entries or
    once their regular files hold BATCH_BYTES, with the sizes an lstat of each gives, so
    that large files spread over the workers instead of queueing behind one."""
    part = Batch(batch.pair, batch.source_dir, batch.target_dir)
    for entry in entries:
        part.entries.append(entry)
        if entry.is_file(follow_symlinks=False):
            try:  # noqa: SIM105 - contextlib stays out of the linker's import
                part.bytes += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass  # gone since the scan: making it reports that, with its name
            part.sized += 1
        if len(part.entries) >= BATCH_FILES or part.bytes >= BATCH_BYTES:
            yield part
            part = Batch(batch.pair, batch.source_dir, batch.target_dir)
    if part.entries:
        yield part


def make_directory(path: str, tally: Tally, mode: str, source_path: str, run: Run) -> bool:
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
    run.made_directories.add(path)
    tally.directories += 1
    _keep_writable(path, run)
    return True


def _keep_writable(path: str, run: Run) -> None:
    """Give a new directory all its owner's bits until the call ends.

    mkdir(2) applies the umask (or a default ACL), and a umask such as 0o277 leaves a
    directory its creator cannot write into (EACCES for a non-root user). cp -r does the
    same as this (coreutils copy.c: S_IRWXU is added while the directory is filled and
    the mode mkdir gave is set afterwards): :meth:`Run.restore_modes` puts back the
    mode that mkdir gave. With a known umask that leaves the owner's bits, no syscall is made (a
    default ACL whose owner entry lacks them is not looked for).
    """
    if run.umask is not None and not run.umask & stat.S_IRWXU:
        return
    try:
        made = os.stat(path).st_mode & 0o7777
        if made & stat.S_IRWXU != stat.S_IRWXU:
            run.final_modes.append((path, made))  # first: an interrupt after the chmod is undone too
            os.chmod(path, made | stat.S_IRWXU)
    except OSError:
        pass  # the create or link inside reports the real problem, with its path


def make_parents(directory: str, run: Run, mode: str, source_path: str) -> None:
    """Create ``directory`` and its missing parents, recording each one made in ``run``."""
    missing: list[str] = []
    path = directory
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    scratch = Tally()
    for path in reversed(missing):
        make_directory(path, scratch, mode, source_path, run)


def raise_for_source(source: str, target: str, st_mode: int | None, *, tree: bool) -> None:
    """Raise the InvalidSourceError for a source that is missing, of the wrong kind or special."""
    problem = source_problem(st_mode, tree=tree)
    if problem is None:
        return
    code, reason = problem
    kind: type[InvalidSourceError] = {
        errno.ENOENT: SourceNotFoundError,
        errno.EISDIR: SourceIsDirectoryError,
        errno.ENOTDIR: SourceNotDirectoryError,
    }.get(code, InvalidSourceError)
    raise kind(source, target, code, reason)


def refuse_inside(
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
