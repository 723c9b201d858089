"""Probe a source/target pair by really attempting every mode on tiny scratch files."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace

from linkprobe.api import FileIdentity, LinkBackend, remove_quietly
from linkprobe.backends import default_backend
from linkprobe.errors import InvalidPathError, TargetNotDirectoryError
from linkprobe.modes import LinkMode, parse_mode, parse_order
from linkprobe.mounts import Mount, find_mount, mount_table, with_fuse_subtype
from linkprobe.reasons import (
    ReasonContext,
    errno_of,
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

_cache: dict[tuple[str, str], Probe] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached probe (e.g. after mounting something)."""
    with _cache_lock:
        _cache.clear()


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


def _locate(path: str, role: str) -> tuple[str, str | None]:
    """The nearest existing directory of ``path`` (symlinks resolved) and, for a source
    that is a regular file, that file. Never creates anything."""
    current = os.path.abspath(path)
    while True:
        info = _stat_or_none(current, role)
        if info is not None:
            break
        parent = os.path.dirname(current)
        if parent == current:  # a missing drive root on Windows
            raise InvalidPathError(path, f"no part of the {role} path exists")
        current = parent
    try:
        resolved = os.path.realpath(current, strict=True)
    except OSError as exc:  # a symlink loop or a component made unreadable meanwhile
        raise InvalidPathError(path, f"{role} cannot be resolved: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        return resolved, None
    if role == "source" and stat.S_ISREG(info.st_mode) and current == os.path.abspath(path):
        return os.path.dirname(resolved), resolved
    if role == "target" and current == os.path.abspath(path):
        raise TargetNotDirectoryError(path)
    raise InvalidPathError(path, f"{current} is not a directory")


def _side_facts(given: str, probed: str, mounts: list[Mount]) -> SideFacts:
    info = os.stat(probed)
    mount = find_mount(probed, mounts)
    if mount is not None:
        mount = with_fuse_subtype(mount)
    return _facts(given, probed, info.st_dev, mount)


def _facts(given: str, probed: str, st_dev: int | None, mount: Mount | None) -> SideFacts:
    return SideFacts(
        given=given,
        probed=probed,
        st_dev=st_dev,
        mount_point=mount.mount_point if mount else None,
        fstype=mount.fstype if mount else None,
        mount_device=mount.device if mount else None,
        mount_id=mount.mount_id if mount else None,
        read_only=mount.read_only if mount else False,
    )


def _existing_file(directory: str) -> str | None:
    """A regular file under ``directory`` to link from when we may not write there.

    Breadth first, symlinks not followed, at most _SEARCH_LIMIT entries looked at: a
    package cache has files near the top, and a probe must stay cheap.
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


def _is_other_owner(path: str) -> bool:
    if sys.platform == "win32":  # no fs.protected_hardlinks, no euid
        return False
    euid = os.geteuid()
    if euid == 0:
        return False
    try:
        return os.stat(path).st_uid != euid
    except OSError:
        return False


class _Attempts:
    """Runs the attempts and removes every name it created, whatever happens."""

    def __init__(self, backend: LinkBackend) -> None:
        self.backend = backend
        self.created: list[tuple[str, FileIdentity | None]] = []
        self.pins: list[int] = []  # O_PATH descriptors, closed by clean()

    def record(self, name: str, identity: FileIdentity | None) -> None:
        """Remember ``name`` for clean(), and pin its inode where the OS allows."""
        self.created.append((name, identity))
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
        try:
            self.record(name, self.backend.create_scratch(name))
        except OSError as exc:
            return None, errno_of(exc)
        return name, None

    def attempt(
        self, mode: LinkMode, source_file: str | None, source_dir: str, target_dir: str, *, source_is_scratch: bool
    ) -> int | None:
        """Try one mode; None on success, else the errno."""
        name = _scratch_name(target_dir, mode.value)
        backend = self.backend
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
                backend.clone(source_file, name)
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


def _verdict(mode: LinkMode, progress: _Progress, results: Mapping[LinkMode, int | None]) -> Verdict | None:
    """The verdict on ``mode`` from the attempts so far; None if it has none yet."""
    ctx = progress.ctx
    if mode not in results or ctx is None:
        return None
    failure = results[mode]
    if failure is None:
        return Verdict(mode, Status.SUPPORTED, explain_success(mode, ctx))
    return Verdict(mode, Status.UNSUPPORTED, explain_failure(mode, failure, ctx), failure)


def _run(
    given_source: str,
    given_target: str,
    source: tuple[str, str | None],
    target_dir: str,
    backend: LinkBackend,
    mounts: list[Mount],
    progress: _Progress,
) -> Probe:
    source_dir, source_file = source
    progress.source_facts = _side_facts(given_source, source_file or source_dir, mounts)
    progress.target_facts = _side_facts(given_target, target_dir, mounts)
    attempts = _Attempts(backend)
    results = progress.results
    existing = source_file is not None
    try:
        if source_file is None:
            source_file, progress.source_errno = attempts.make_source(source_dir)
            if source_file is None:
                source_file = _existing_file(source_dir)
                existing = source_file is not None
        progress.ctx = ReasonContext(
            progress.source_facts,
            progress.target_facts,
            other_owner=existing and _is_other_owner(source_file or ""),
        )
        for mode in _ATTEMPT_ORDER:
            if progress.abandoned:
                break
            if source_file is None and mode in (LinkMode.CLONE, LinkMode.HARDLINK):
                continue
            results[mode] = attempts.attempt(
                mode, source_file, source_dir, target_dir, source_is_scratch=source_file is not None and not existing
            )
    finally:
        attempts.clean()
    verdicts = []
    for mode in LinkMode:
        verdict = _verdict(mode, progress, results)
        if verdict is None:
            why = progress.source_errno if progress.source_errno is not None else errno.ENOENT
            verdict = Verdict(mode, Status.NOT_PROBED, explain_not_probed(why, progress.ctx), why)
        verdicts.append(verdict)
    return Probe(
        progress.source_facts, progress.target_facts, tuple(verdicts), source_file if existing else None, existing
    )


def _probe_now(
    given_source: str,
    given_target: str,
    *,
    cache: bool,
    backend: LinkBackend | None,
    mounts: Callable[[], list[Mount]],
    progress: _Progress,
) -> Probe:
    located_source = _locate(given_source, "source")
    target_dir, _ = _locate(given_target, "target")
    key = (located_source[1] or located_source[0], target_dir)
    if cache:
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            # Same probed pair under other spellings (a relative path, a symlink).
            return replace(
                hit, source=replace(hit.source, given=given_source), target=replace(hit.target, given=given_target)
            )
    result = _run(
        given_source, given_target, located_source, target_dir, backend or default_backend(), mounts(), progress
    )
    if cache and not progress.abandoned:  # an abandoned probe stopped early: not a whole answer
        with _cache_lock:
            _cache[key] = result
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

    Paths that do not exist yet are probed at their nearest existing ancestor; nothing
    is created but scratch files, which are removed before returning (also on errors and
    KeyboardInterrupt). Results are cached per probed pair unless ``cache`` is False.

    With ``timeout`` (seconds), the probe runs in a daemon thread and returns by then
    whatever happens: modes without an answer get :attr:`Status.TIMED_OUT`, auto then
    answers copy and an explicit mode fails. The abandoned thread makes no further attempt
    and removes its scratch files as soon as the call it is blocked in returns, if the
    process is still running then; a process that exits first leaves them (named
    ``.linkprobe-…``). A timed-out result is not cached.

    :raises InvalidPathError: an empty path, a NUL byte, an unsearchable parent.
    :raises TargetNotDirectoryError: ``target`` exists and is not a directory.
    :raises ValueError: ``timeout`` is not a positive number.
    """
    given_source = _checked(source, "source")
    given_target = _checked(target, "target")
    progress = _Progress()
    if timeout is None:
        return _probe_now(given_source, given_target, cache=cache, backend=backend, mounts=mounts, progress=progress)
    if not timeout > 0 or timeout == float("inf"):  # also rejects NaN
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")

    def work() -> None:
        try:
            progress.result = _probe_now(
                given_source, given_target, cache=cache, backend=backend, mounts=mounts, progress=progress
            )
        except BaseException as exc:  # handed to the waiting caller below
            progress.error = exc
        finally:
            progress.done.set()

    # A thread, not a process: the hung call is a syscall that only the kernel can end,
    # and a daemon thread does not keep the interpreter from exiting.
    threading.Thread(target=work, name="linkprobe-probe", daemon=True).start()
    try:
        finished = progress.done.wait(timeout)
    except BaseException:  # KeyboardInterrupt while waiting: the thread stops early too
        progress.abandoned = True
        raise
    if not finished:
        progress.abandoned = True
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
