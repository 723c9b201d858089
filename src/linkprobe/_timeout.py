"""A probe with a deadline: it runs in a daemon thread, and the caller stops waiting when
the deadline passes. What the probe found so far is kept in a
:class:`~linkprobe._facts.Progress`. Imported only by a probe with a timeout."""

from __future__ import annotations

import atexit
import os
import time
from _thread import allocate_lock

from linkprobe._facts import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Final

    from linkprobe._facts import Findings

__all__ = ["EXIT_GRACE", "EXIT_LIMIT", "Progress", "abandoned", "run_in_thread", "wait_for_abandoned"]

#: At interpreter exit, how long one call of an abandoned probe (timeout=) may take
#: before it is taken for a hung filesystem and no longer waited for; and the most
#: that exit waits in all.
EXIT_GRACE: Final[float] = 0.5
EXIT_LIMIT: Final[float] = 5.0


#: Probe threads whose caller stopped waiting and that have not finished: id -> both.
abandoned: dict[int, tuple[threading.Thread, Progress]] = {}
#: The lock of ``abandoned``, replaced in a forked child.
_lock = [allocate_lock()]
_exit_wait_registered: list[bool] = [False]


def _abandon(thread: threading.Thread, progress: Progress, done: threading.Event) -> None:
    """Tell the probe thread to stop, and have interpreter exit wait for its clean-up."""
    progress.abandoned = True
    with _lock[0]:
        if not done.is_set():
            abandoned[id(progress)] = (thread, progress)
        if not _exit_wait_registered[0]:
            _exit_wait_registered[0] = True
            atexit.register(wait_for_abandoned)


def wait_for_abandoned(grace: float = EXIT_GRACE, limit: float = EXIT_LIMIT) -> None:
    """Runs at interpreter exit (daemon threads still run then): wait for each abandoned
    probe to remove its scratch files, as long as the filesystem keeps answering.

    An abandoned probe makes no new attempt; what is left is the call in progress and
    one unlink per scratch name. Each of them may take up to ``grace`` seconds; a call
    that takes longer is a hung filesystem (a stopped FUSE daemon, an NFS server gone),
    and exit does not wait for it. Never more than ``limit`` seconds in all.
    """
    deadline = time.monotonic() + limit
    with _lock[0]:
        pending = list(abandoned.values())
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


def run_in_thread(work: Callable[[Progress], Findings], progress: Progress, timeout: float) -> bool:
    """Run ``work(progress)`` in a daemon thread; True if it finished within ``timeout``
    seconds (its outcome is then in ``progress.result`` or ``progress.error``)."""
    # Imported here: only a probe with a timeout starts a thread.
    import threading

    done = threading.Event()

    def run() -> None:
        try:
            progress.result = work(progress)
        except BaseException as exc:  # handed to the waiting caller below
            progress.error = exc
        finally:
            done.set()
            with _lock[0]:
                abandoned.pop(id(progress), None)

    # A thread, not a process: the hung call is a syscall that only the kernel can end,
    # and a daemon thread does not keep the interpreter from exiting.
    thread = threading.Thread(target=run, name="linkprobe-probe", daemon=True)
    thread.start()
    try:
        finished = done.wait(timeout)
    except BaseException:  # KeyboardInterrupt while waiting: the thread stops early too
        _abandon(thread, progress, done)
        raise
    if not finished:
        _abandon(thread, progress, done)
    return finished


def _forget_after_fork() -> None:
    """In a forked child only the forking thread exists: a lock held by another thread
    at the fork would never be released, and the abandoned threads are not there."""
    _lock[0] = allocate_lock()
    abandoned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
