"""Probe a source/target pair by really attempting every mode on tiny scratch files."""

from __future__ import annotations

import errno
import os
import sys
from collections import deque

from linkprobe import _probe_cache
from linkprobe._facts import Progress, SideFacts
from linkprobe._locate import Located, checked, locate
from linkprobe._scratch import SCRATCH_PREFIX, Attempts
from linkprobe._words import CLONE, COPY, HARDLINK, MODE_WORDS, NOT_PROBED, SUPPORTED, SYMLINK, TIMED_OUT, UNSUPPORTED
from linkprobe.api import LinkBackend, SourceHints
from linkprobe.backends import default_backend
from linkprobe.mounts import (
    Mount,
    find_mount,
    forget_mount_table,
    mount_finder,
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Final

    from linkprobe._facts import Findings
    from linkprobe._words import VerdictLike
    from linkprobe.modes import LinkMode
    from linkprobe.result import Probe

__all__ = [
    "SCRATCH_PREFIX",
    "clear_cache",
    "find",
    "probe",
    "select",
]

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
#: The order of attempts. Copy goes first: if no file can be created in the target at
#: all, its errno explains every other failure too.
_ATTEMPT_ORDER: Final[tuple[str, ...]] = (COPY, CLONE, HARDLINK, SYMLINK)


def clear_cache() -> None:
    """Forget every cached probe and the mount table. Not needed after a mount: a cached
    probe is used only while both paths lead to the same inodes and the mount table is
    unchanged. (Needed after closing descriptors one did not open: see docs/api.md.)"""
    _probe_cache.clear()
    forget_mount_table()


def _side_facts(given: str, probed: str, located: Located, find: Callable[[str], Mount | None]) -> SideFacts:
    # located.identity is the stat of the path as spelled, symlinks followed: the same
    # inode as the resolved ``probed``, so its st_dev is probed's without another stat.
    mount = find(probed)
    if mount is not None:
        mount = with_fuse_subtype(mount)
    return _facts(given, probed, located.identity[0], mount, located.exists)


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


def _verdict(mode: str, progress: Progress, results: Mapping[str, int | None]) -> VerdictLike | None:
    """The verdict on ``mode`` from the attempts so far; None if it has none yet."""
    ctx = progress.ctx
    if mode not in results or ctx is None:
        return None
    failure = results[mode]
    if failure is None:
        return (mode, SUPPORTED, explain_success(mode, ctx), None)
    if mode in progress.existing_failures and ctx.existing_file is not None:
        return (mode, UNSUPPORTED, explain_existing_failure(mode, failure, ctx), failure)
    return (mode, UNSUPPORTED, explain_failure(mode, failure, ctx), failure)


def _run(
    given_source: str,
    given_target: str,
    source: Located,
    target: Located,
    backend: LinkBackend,
    mounts: list[Mount],
    progress: Progress,
) -> Findings:
    source_dir, source_file = source.directory, source.file
    target_dir = target.directory
    find = mount_finder(mounts)
    progress.source_facts = _side_facts(given_source, source_file or source_dir, source, find)
    progress.target_facts = _side_facts(given_target, target_dir, target, find)
    progress.beat()
    attempts = Attempts(backend, progress.beat)
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
            if source_file is None and mode in _LINKS:
                continue
            code = attempts.attempt(mode, source_file, source_dir, target_dir, source_is_scratch=not from_existing)
            # Copy is checked on any existing file; clone and hardlink on one found by the
            # search (when links were made from an existing file, they are its verdicts).
            check = mode == COPY or (to_check is not None and mode in _LINKS)
            if code is None and real_file is not None and check:
                if progress.abandoned:  # a verdict not yet checked on the real file is none
                    break
                code, used = _check_real_file(attempts, progress, mode, real_file, source_dir, target_dir)
                checked = checked or used
            elif code == errno.EPERM and mode == HARDLINK and from_existing and source_file is not None:
                _note_owner(progress, source_file)
            results[mode] = code
    finally:
        attempts.clean()
    verdicts = []
    for mode in MODE_WORDS:
        verdict = _verdict(mode, progress, results)
        if verdict is None:
            why = progress.source_errno if progress.source_errno is not None else errno.ENOENT
            verdict = (mode, NOT_PROBED, explain_not_probed(why, progress.ctx), why)
        verdicts.append(verdict)
    linked_from = source_file if from_existing else None
    return (
        progress.source_facts,
        progress.target_facts,
        tuple(verdicts),
        linked_from,
        from_existing,
        linked_from or checked,
    )


_LINKS: Final[tuple[str, ...]] = (CLONE, HARDLINK)


def _check_real_file(
    attempts: Attempts, progress: Progress, mode: str, path: str, source_dir: str, target_dir: str
) -> tuple[int | None, str | None]:
    """``mode`` worked for the scratch file: does it for ``path``, a file of the source?
    The errno that decides the verdict (None: it holds) and the file if it was used."""
    if mode == COPY:
        # A copy needs to read the source's files; the attempt read ours, or (a read-only
        # source) only created a file. Opening is enough: no byte of a large wheel is read.
        progress.beat()
        code = _unreadable(path)
    elif mode in _LINKS:
        # From the existing file into a scratch name: a clone shares the blocks or fails
        # (FICLONE, clonefile), so no large file is ever copied here.
        code = attempts.attempt(mode, path, source_dir, target_dir, source_is_scratch=False, hints=_CHECK_HINTS)
    else:
        return None, None
    if code is None or not existing_file_decides(mode, code):
        return None, path  # works, or a refusal about that one file only (EMLINK...)
    _note_existing_failure(progress, mode, code, path)
    return code, path


def _note_owner(progress: Progress, path: str) -> None:
    """A hard link from an existing file got EPERM: whose file it is chooses the words."""
    assert progress.ctx is not None
    owner = _other_owner(path)
    if owner is not None:
        progress.ctx = progress.ctx._replace(other_owner=True, existing_owner=owner)


def _note_existing_failure(progress: Progress, mode: str, code: int, path: str) -> None:
    """Set before the verdict is: a timed-out snapshot must see both or neither."""
    assert progress.ctx is not None
    progress.ctx = progress.ctx._replace(existing_file=path)
    if mode == HARDLINK and code == errno.EPERM:
        _note_owner(progress, path)
    progress.existing_failures[mode] = code


def _probe_now(
    given_source: str,
    given_target: str,
    *,
    backend: LinkBackend | None,
    mounts: Callable[[], list[Mount]],
    progress: Progress,
) -> Findings:
    """Probe afresh. Where the two paths were found is left in ``progress.located``."""
    source = locate(given_source, "source")
    target = locate(given_target, "target")
    progress.located = (source, target)
    return _run(given_source, given_target, source, target, backend or default_backend(), mounts(), progress)


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
    given_source: str, given_target: str, progress: Progress, seconds: float, mounts: Callable[[], list[Mount]]
) -> Findings:
    """The probe as far as it got: finished modes keep their verdict, the rest timed out."""
    results = dict(progress.results)
    verdicts = tuple(
        _verdict(mode, progress, results) or (mode, TIMED_OUT, explain_timeout(seconds), errno.ETIMEDOUT)
        for mode in MODE_WORDS
    )
    return (
        progress.source_facts or _unanswered_side(given_source, mounts),
        progress.target_facts or _unanswered_side(given_target, mounts),
        verdicts,
        None,
        False,
        None,
    )


def _check_seconds(timeout: float) -> None:
    if not timeout > 0 or timeout == float("inf"):  # also rejects NaN
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


def _find(
    given_source: str,
    given_target: str,
    progress: Progress,
    *,
    backend: LinkBackend | None,
    mounts: Callable[[], list[Mount]],
    timeout: float | None,
) -> Findings:
    """Probe, in a daemon thread that is given up on after ``timeout`` when there is one.
    Whether the findings are whole (no timeout ran out) is ``not progress.abandoned``."""
    if timeout is None:
        return _probe_now(given_source, given_target, backend=backend, mounts=mounts, progress=progress)

    def work(progress: Progress) -> Findings:
        return _probe_now(given_source, given_target, backend=backend, mounts=mounts, progress=progress)

    from linkprobe._timeout import run_in_thread  # only a probe with a timeout starts a thread

    if not run_in_thread(work, progress, timeout):
        return _timed_out(given_source, given_target, progress, timeout, mounts)
    if progress.error is not None:
        raise progress.error
    assert progress.result is not None  # done without error means a result
    return progress.result


def find(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    backend: LinkBackend | None = None,
    mounts: Callable[[], list[Mount]] = mount_table,
    timeout: float | None = None,
) -> Findings:
    """:func:`probe` without its cache, answering in words: each verdict a plain
    (mode, status, reason, errno). For the command line's one-word formats, whose start-up
    this keeps free of the enum module; :func:`probe` is this plus the cache and the
    public types (:func:`linkprobe.result.as_probe`). Raises as :func:`probe`."""
    given_source = checked(source, "source")
    given_target = checked(target, "target")
    if timeout is not None:
        _check_seconds(timeout)
    return _find(given_source, given_target, Progress(), backend=backend, mounts=mounts, timeout=timeout)


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
    mount table is unchanged (:func:`linkprobe.mounts.mount_generation`). A cached answer is
    returned at once, also with ``timeout``.

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
    given_source = checked(source, "source")
    given_target = checked(target, "target")
    if timeout is not None:  # checked first: a bad timeout is refused even with an answer cached
        _check_seconds(timeout)
    key = None
    generation = None
    if cache:
        # Read before anything is looked at: a mount from now on changes the generation.
        generation = mount_generation()
        key = _probe_cache.key(given_source, given_target)
        found = _probe_cache.hit(key, generation)
        if found is not None:
            return found
    progress = Progress()
    findings = _find(given_source, given_target, progress, backend=backend, mounts=mounts, timeout=timeout)
    from linkprobe.result import as_probe

    result = as_probe(findings)
    # An abandoned probe stopped early: not a whole answer. The cache keeps it unless the
    # mount table left ``generation`` meanwhile.
    if key is not None and not progress.abandoned and progress.located is not None:
        _probe_cache.store(key, generation, (*progress.located, result))
    return result


def __getattr__(name: str) -> Any:
    # The mode readers, imported from here by older callers, live in linkprobe.modes,
    # which imports enum: only on first use, not at every start of the command line.
    if name in ("requested_choice", "requested_mode"):
        from linkprobe import modes

        return getattr(modes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from linkprobe.modes import requested_choice

    chosen = requested_choice(mode, env)
    if isinstance(chosen, tuple):  # an order word: its first working mode
        return probe(source, target).require(None, order=chosen)
    return probe(source, target).require(chosen)
