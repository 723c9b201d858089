"""Materialise files and whole trees with the mode a probe chose.

Auto: the best working mode per (source mount, target mount) pair; if a file later fails
with an error that means "this mode does not work here", step down once, stay there for
the rest of the run and warn once. Explicit: verified before the target is touched and
never replaced by another mode. Either way, a ``link_tree`` that fails removes what it
made, and a wrong argument is an error of that call, never a reason to change modes.

The jobs live in private modules: :mod:`linkprobe._pairs` (the mode of each mount pair and
its one step down), :mod:`linkprobe._walk` (the tree walk and what it refuses),
:mod:`linkprobe._undo` (what a call made, and removing exactly that after a failure). This
module does the files themselves and the rules for one failed file.
"""

from __future__ import annotations

import os
import stat

from linkprobe._link_results import Fallback, LinkStats
from linkprobe._pairs import Pair, PairTable
from linkprobe._undo import Run, Tally
from linkprobe._walk import (
    BATCH_BYTES,
    Batch,
    Walk,
    make_directory,
    make_parents,
    measured_batches,
    raise_for_source,
    refuse_inside,
)
from linkprobe._words import (
    AUTO_ORDER_WORDS,
    COPY,
    HARDLINK,
    SYMLINK,
    choice_words,
    link_mode,
    mode_word,
    requested_word,
)
from linkprobe.api import LinkBackend, SourceHints, looked_at, remove_quietly
from linkprobe.backends import default_backend
from linkprobe.errors import InvalidArgumentError, LinkFailedError, LinkprobeError, TargetInsideSourceError
from linkprobe.probe import SCRATCH_PREFIX
from linkprobe.reasons import errno_of, source_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import Final

    from linkprobe.modes import LinkMode

__all__ = ["Fallback", "LinkStats", "Linker"]

#: With ``workers=None``, a batch of real copies goes to a thread when its files average
#: this many bytes: below it the hand-off and the GIL cost more than the overlap gains
#: (docs/api.md, "workers", for the figures measured here).
_THREAD_FILE_BYTES: Final[int] = 4 << 20
#: With ``workers=None``: at most this many threads, and none on a single CPU.
_DECIDED_WORKERS: Final[int] = 4
#: What a hard link is given for hints: link(2) reads no mode bits and no size. Files get
#: the umask of their directory before any other mode makes them (see ``_run_batch``).
_LINK_ONLY: Final = SourceHints()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool; concurrent.futures is imported only by calls that use threads."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="linkprobe")


class Linker:
    """Put files from a source (a cache) into a target (a project) with the best mode.

    :param mode: an explicit mode (or alias); None reads ``env``; neither means auto.
    :param env: environment variable holding an explicit mode; None to ignore the environment.
    :param prefer: the order auto mode tries; modes not listed are never used.
    :param replace: replace existing destination files atomically instead of failing.
    :param workers: threads for :meth:`link_tree` (1 or more). Default None: decide, which
        uses threads only for real copies of files of 4 MiB or more on average, where they
        pay; hardlinks, clones and small copies stay on the calling thread, where
        threads were slower here (directory locks, the GIL). The sizes are looked at only
        in a directory whose first files copied hold 8 MiB.
    """

    def __init__(
        self,
        mode: LinkMode | str | None = None,
        *,
        env: str | None = "LINKPROBE_MODE",
        prefer: Sequence[LinkMode | str] = AUTO_ORDER_WORDS,
        replace: bool = False,
        workers: int | None = None,
        backend: LinkBackend | None = None,
    ) -> None:
        # Modes are words inside (linkprobe._words): link_tree never imports enum.
        word, source = requested_word(mode, env, os.environ)
        chosen = choice_words(word, source=source)
        if isinstance(chosen, tuple):  # an order word (pnpm's clone-or-copy) is the order to use
            prefer = chosen
        requested = chosen if isinstance(chosen, str) else None
        preferred = [mode_word(item, source="prefer") for item in prefer]
        ordered: tuple[str, ...] = tuple(dict.fromkeys(m for m in preferred if m is not None))
        if not ordered:
            raise InvalidArgumentError("prefer", prefer, "must name at least one mode")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InvalidArgumentError("workers", workers, "must be a whole number of threads, 1 or more")
        self._requested = requested
        self._prefer = ordered
        self._replace = replace
        self._workers = workers
        self._backend = backend or default_backend()
        self._pairs = PairTable(requested, ordered, env, self._backend)

    # -- decisions ---------------------------------------------------------------------

    @property
    def mode(self) -> LinkMode | None:
        """The effective mode of the most recently used mount pair (None before any use)."""
        last = self._pairs.last
        return link_mode(last.mode) if last else None

    @property
    def explicit(self) -> bool:
        return self._requested is not None

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        """Every step down auto mode took, in order."""
        with self._pairs.lock:
            return tuple(self._pairs.fallbacks)

    def _threads_for(self, batch: Batch, decided: int) -> bool:
        """Whether ``batch`` goes to a worker thread (else the calling thread makes it)."""
        if self._workers is not None:
            return self._workers > 1
        return decided > 1 and batch.sized > 0 and batch.bytes >= _THREAD_FILE_BYTES * batch.sized

    # -- doing -------------------------------------------------------------------------

    def _place(
        self, pair: Pair, source: str, target: str, hints: SourceHints | None, run: Run, *, new: bool = True
    ) -> str:
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
        pair: Pair,
        mode: str,
        exc: OSError,
        source: str,
        target: str,
        hints: SourceHints | None,
        run: Run,
        *,
        new: bool = True,
    ) -> str:
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
        from linkprobe.fallback import FailureAction, error_class, on_failure  # a file failed: see there

        code = errno_of(exc)
        action = on_failure(mode, code, explicit=pair.explicit)
        if action is FailureAction.FALL_BACK:
            self._pairs.fall_back(pair, mode, code, source, target, run)  # raises when no mode is left
            return self._place(pair, source, target, hints, run, new=new)
        if action is FailureAction.COPY_FILE:
            self._backend.copy(source, target, hints)
            if new:
                run.files.append((COPY, source, target))
            return COPY
        reason = pair.explain(mode, code, source, target)
        raise error_class(code, explicit=pair.explicit)(mode, source, target, code, reason) from exc

    def _replace_atomically(self, source: str, target: str, make: Callable[[str], str]) -> str:
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

    def _mode_word(self) -> str:
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
        raise_for_source(source_path, target_path, st_mode, tree=False)
        target_dir = os.path.dirname(os.path.abspath(target_path))
        pair = self._pairs.pair_for(source_path, target_dir, os.path.dirname(source_path) or ".")
        run = Run()
        try:
            make_parents(target_dir, run, pair.mode, source_path)
            mode = self._place(pair, source_path, target_path, None, run)
        except BaseException as exc:
            left = run.undo()
            run.restore_modes()
            if isinstance(exc, LinkprobeError):
                exc.not_removed = left
            run.emit_warnings_after_failure(stacklevel=2)
            raise
        run.restore_modes()
        run.emit_warnings(stacklevel=2)
        return link_mode(mode)

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
        raise_for_source(source_root, target_root, source_info.st_mode if source_info else None, tree=True)
        assert source_info is not None
        real_source = os.path.realpath(source_root)
        source_identity = (source_info.st_dev, source_info.st_ino)
        refuse_inside(source_root, target_root, real_source, source_identity, mounts=self._pairs.mount_table())
        # Read once per tree: saves an fstat per file (see LinkBackend.create_like).
        run = Run(self._backend.umask())
        tally = run.tally()  # directories, counted by this thread
        pair: Pair | None = None
        try:
            pair = self._pairs.pair_for(source_root, target_root)  # explicit: verified before any write
            # Missing parents of the target too (like link()), now that the mode is verified.
            make_parents(os.path.dirname(os.path.abspath(target_root)), run, pair.mode, source_root)
            created_root = make_directory(target_root, tally, pair.mode, source_root, run)
            target_info = os.stat(target_root)
            if created_root:  # the filesystem's own clock: what is made in the new root is not older
                run.since_ns = target_info.st_ctime_ns
            walk = Walk(
                source_root, target_root, real_source, source_identity, (target_info.st_dev, target_info.st_ino)
            )
            self._run_walk(walk, pair, tally, run)
        except BaseException as exc:
            error = self._failed(exc, run, pair.mode if pair else self._mode_word(), source_root, target_root)
            if error is exc:
                raise
            raise error from exc
        run.restore_modes()
        run.emit_warnings(stacklevel=2)
        return run.freeze()

    def _run_walk(self, walk: Walk, pair: Pair, tally: Tally, run: Run) -> None:
        """Make every batch of the walk, on this thread or on worker threads (``workers``)."""
        decided = 1 if self._workers is not None else min(os.cpu_count() or 1, _DECIDED_WORKERS)
        pool: ThreadPoolExecutor | None = None
        futures: list[Future[list[os.DirEntry[str]]]] = []
        try:
            # workers=None, with threads to decide: this thread makes a directory's files
            # until they hold BATCH_BYTES, and only the rest of such a directory is measured
            # (an lstat each) and spread. A tree of small files is never measured.
            budget = BATCH_BYTES if self._workers is None and decided > 1 else None
            for batch in walk.batches(self._pairs, pair, tally, run):
                if run.stopped:
                    break
                if self._threads_for(batch, decided):
                    # Explicit threads: copies split by bytes, so that large files spread
                    # over the workers instead of queueing in one batch of a directory.
                    parts = measured_batches(batch, batch.entries) if batch.pair.mode == COPY else (batch,)
                    for part in parts:
                        pool = self._submit(pool, futures, part, run, decided)
                else:
                    for part in measured_batches(batch, self._run_batch(batch, run, tally, budget)):
                        if self._threads_for(part, decided):
                            pool = self._submit(pool, futures, part, run, decided)
                        else:
                            self._run_batch(part, run, tally)
                if run.warnings:
                    run.emit_warnings(stacklevel=3)
            for future in futures:
                future.result()
                if run.warnings:
                    run.emit_warnings(stacklevel=3)
        except BaseException:
            run.stopped = True
            for future in futures:
                future.cancel()
            raise
        finally:
            # Wait for every worker, so that nothing is made after the caller's undo.
            if pool is not None:
                pool.shutdown(wait=True)

    def _submit(
        self,
        pool: ThreadPoolExecutor | None,
        futures: list[Future[list[os.DirEntry[str]]]],
        batch: Batch,
        run: Run,
        decided: int,
    ) -> ThreadPoolExecutor:
        """Hand ``batch`` to a worker thread, starting the pool at the first one."""
        if pool is None:
            pool = _pool(self._workers or decided)
        futures.append(pool.submit(self._run_batch, batch, run))
        return pool

    def _failed(self, exc: BaseException, run: Run, mode: str, source_root: str, target_root: str) -> BaseException:
        """Undo ``run`` after ``exc`` and return the exception to raise: a LinkprobeError
        carrying the partial stats (an OSError of the walk is wrapped into one)."""
        left = run.undo()
        run.restore_modes()
        run.emit_warnings_after_failure(stacklevel=3)
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

    def _batch_umask(self, run: Run, target_dir: str) -> int | None:
        """The umask new files in ``target_dir`` get, or None: check every new file."""
        if run.umask is not None and self._default_acl(run, target_dir):
            return None  # the ACL, not the umask, cuts the bits there
        return run.umask

    def _default_acl(self, run: Run, directory: str) -> bool:
        """Whether new files in ``directory`` take their permission bits from a default ACL.

        A directory this call made has its parent's default ACL as its own, or none if the
        parent has none (acl(5), "OBJECT CREATION AND DEFAULT ACLs"), so the filesystem is
        asked once for the nearest directory the call did not make, and the answer holds
        for every directory made below it. A parent spelled differently (``out/`` against
        ``out``) is only asked again.
        """
        chain: list[str] = []
        known = run.default_acl.get(directory)
        while known is None:
            chain.append(directory)
            parent = os.path.dirname(directory)
            if directory not in run.made_directories or parent == directory:
                known = self._backend.has_default_acl(directory)
                break
            directory = parent
            known = run.default_acl.get(directory)
        for path in chain:
            run.default_acl[path] = known
        return known

    def _regular_files(
        self, batch: Batch, tally: Tally, run: Run
    ) -> tuple[list[os.DirEntry[str]], list[tuple[str, SourceHints]]]:
        """Re-create the batch's symlinks; return its regular files and their (name, hints).
        Anything else (a FIFO, a device, a socket) is an error naming it.

        A file that ``readdir``'s d_type says is regular is not lstat'ed (``os.DirEntry``
        makes one only where the filesystem reports DT_UNKNOWN): a hard link reads neither
        its permission bits nor its size, and a copy or a clone reads both from the file it
        opened, with an ``fstat`` (hints with only the umask). That lstat was 2.2 us of the
        6-8 us a hard link costs here, and 7-8 % of a small copy (docs/benchmarks.md). The
        backend counts the bytes it made.
        """
        pair, target_dir = batch.pair, batch.target_dir
        hints = _LINK_ONLY if pair.mode == HARDLINK else SourceHints(None, None, self._batch_umask(run, target_dir))
        regular: list[os.DirEntry[str]] = []
        files: list[tuple[str, SourceHints]] = []
        for entry in batch.entries:
            if not entry.is_file(follow_symlinks=False):  # d_type (or an lstat on DT_UNKNOWN)
                if entry.is_symlink():
                    self._copy_symlink(pair, entry.path, os.path.join(target_dir, entry.name), tally, run)
                    continue
                self._refuse_special(pair, entry, target_dir)
            regular.append(entry)
            files.append((entry.name, hints))
        return regular, files

    def _refuse_special(self, pair: Pair, entry: os.DirEntry[str], target_dir: str) -> None:
        """Raise the error naming ``entry`` if it is not a regular file (a FIFO, a device, a
        socket: nothing to link or copy); return if it is one after all."""
        info = entry.stat(follow_symlinks=False)
        problem = None if stat.S_ISREG(info.st_mode) else source_problem(info.st_mode, tree=False)
        if problem is not None:
            target_path = os.path.join(target_dir, entry.name)
            raise LinkFailedError(pair.mode, entry.path, target_path, *problem)

    def _run_batch(
        self, batch: Batch, run: Run, tally: Tally | None = None, budget: int | None = None
    ) -> list[os.DirEntry[str]]:
        """Materialise the regular files and symlinks of one batch (one directory).

        link_tree's hot path: the regular files go to the backend in one ``make_many``
        call, which on Linux works relative to directory descriptors. A failed file comes
        back with its error and goes through the same rules as :meth:`link`
        (``_recover``); then the rest continue. ``tally``: the calling thread's counts (a
        worker's batch gets its own). ``budget``: stop once the files made hold that many
        bytes, and return the regular files left (else nothing is left).
        """
        if tally is None:
            tally = run.tally()
        pair, source_dir, target_dir = batch.pair, batch.source_dir, batch.target_dir
        try:
            regular, files = self._regular_files(batch, tally, run)
            start = 0
            while start < len(files) and not run.stopped:
                mode = pair.mode  # one read: another worker may step it down
                if mode != HARDLINK and files[start][1] is _LINK_ONLY:  # stepped down from hardlink
                    hints = SourceHints(None, None, self._batch_umask(run, target_dir))
                    files[start:] = [(name, hints) for name, _ in files[start:]]
                try:
                    done, error, made_bytes = self._backend.make_many(
                        mode, source_dir, target_dir, files, start, budget=budget
                    )
                except BaseException:
                    run.uncertain.append((mode, source_dir, target_dir, [name for name, _ in files[start:]]))
                    raise
                tally.bytes += made_bytes
                if done > start:
                    # Only the names: holding on to the (name, hints) tuples of a whole tree
                    # keeps two GC-tracked objects per file alive for the cyclic collector
                    # to traverse (hardlinking 5,000 files on tmpfs took 1.05x as long);
                    # a list of str is one tracked object.
                    run.runs.append((mode, source_dir, target_dir, [name for name, _ in files[start:done]]))
                    tally.by_mode[mode] += done - start
                if error is None:
                    return regular[done:]
                name, hints = files[done]
                source_path, target_path = os.path.join(source_dir, name), os.path.join(target_dir, name)
                # The rules may make this one file another way: its bits and size (an
                # lstat, on this failure path only).
                try:  # noqa: SIM105 - contextlib stays out of the linker's import
                    hints = looked_at(source_path, hints)
                except OSError:
                    pass  # gone or unreadable: the rules judge the error the backend saw
                made = self._recover(pair, mode, error, source_path, target_path, hints, run)
                tally.by_mode[made] += 1
                if made != HARDLINK:
                    tally.bytes += hints.size or 0
                start = done + 1
        except BaseException:
            run.stopped = True
            raise
        return []

    def _copy_symlink(self, pair: Pair, source_path: str, target_path: str, tally: Tally, run: Run) -> None:
        """Re-create a symlink of the source tree with the same text."""
        text = os.readlink(source_path)
        try:
            self._backend.symlink(text, target_path)
        except FileExistsError:
            if not self._replace:
                raise LinkFailedError(
                    SYMLINK, source_path, target_path, 17, "destination exists (use replace=True)"
                ) from None
            self._replace_atomically(source_path, target_path, lambda temporary: self._symlink(text, temporary))
            tally.symlinks += 1
            return
        except OSError as exc:
            from linkprobe.fallback import FailureAction, on_symlink_failure  # a symlink failed: see there

            code = errno_of(exc)
            reason = pair.explain(SYMLINK, code, source_path, target_path)
            if on_symlink_failure(code, explicit=pair.explicit) is FailureAction.RAISE:
                raise LinkFailedError(SYMLINK, source_path, target_path, code, reason) from exc
            # Auto, and the target cannot hold symlinks (exFAT): materialise what the link
            # points to, like `cp -rL`, and say so once per pair.
            if not os.path.isfile(source_path):
                raise LinkFailedError(
                    SYMLINK, source_path, target_path, code, f"{reason}; it does not point to a file"
                ) from exc
            self._pairs.warn_symlinks_once(pair, reason, source_path, run)
            mode = self._place(pair, source_path, target_path, None, run)
            tally.by_mode[mode] += 1
            if mode != HARDLINK:
                tally.bytes += os.stat(source_path).st_size
            return
        run.files.append((None, source_path, target_path))
        tally.symlinks += 1

    def _symlink(self, text: str, target: str) -> str:
        self._backend.symlink(text, target)
        return SYMLINK
