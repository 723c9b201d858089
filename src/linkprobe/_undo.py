"""One Linker call's record: what it made (so that a failure can remove exactly that), what
it counted, and the warnings it has to issue.

Every name recorded here was created exclusively (O_EXCL, link(2), symlink(2), mkdir(2)
fail on an existing name), so none of them existed before the call, and :meth:`Run.undo`
removes a name only while it still is what the call made.
"""

from __future__ import annotations

import os
import stat
import time

from linkprobe._link_results import LinkStats
from linkprobe._words import CLONE, COPY, HARDLINK, MODE_WORDS, SYMLINK
from linkprobe.errors import LinkModeFallbackWarning

TYPE_CHECKING = False
if TYPE_CHECKING:
    #: The files one make_many call made: (mode word, source directory, target directory, names).
    MadeRun = tuple[str, str, str, list[str]]

__all__ = ["MadeRun", "Run", "Tally", "log_warning"]


def log_warning(message: str) -> None:
    """Send ``message`` to the ``linkprobe`` logger; logging is imported on the first warning.

    A library's logger gets a NullHandler (logging HOWTO, "Configuring Logging for a
    Library"): without one, logging's last-resort handler prints every warning record on
    stderr, next to the LinkModeFallbackWarning that already says the same. With it, an
    application that configures logging still receives the records.
    """
    import logging

    logger = logging.getLogger("linkprobe")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.warning("%s", message)


class Tally:
    """Counts of one thread's share of a call (merged by :meth:`Run.freeze`)."""

    __slots__ = ("by_mode", "bytes", "directories", "symlinks")

    def __init__(self) -> None:
        self.by_mode: dict[str, int] = dict.fromkeys(MODE_WORDS, 0)
        self.symlinks = 0
        self.directories = 0
        self.bytes = 0

    def add(self, other: Tally) -> None:
        for mode, count in other.by_mode.items():
            self.by_mode[mode] += count
        self.symlinks += other.symlinks
        self.directories += other.directories
        self.bytes += other.bytes

    def freeze(self) -> LinkStats:
        return LinkStats(
            cloned=self.by_mode[CLONE],
            hardlinked=self.by_mode[HARDLINK],
            symlinked=self.by_mode[SYMLINK],
            copied=self.by_mode[COPY],
            symlinks=self.symlinks,
            directories=self.directories,
            bytes=self.bytes,
        )


class Run:
    """One call of :meth:`Linker.link` or :meth:`Linker.link_tree`: its stop flag, its
    counts, the names it created (to remove them again if the call fails) and its
    warnings (issued from the caller's thread, so that they point at the caller's line).

    Worker threads only append to the lists (atomic in CPython, with or without the GIL).
    """

    def __init__(self, umask: int | None = None) -> None:
        #: Set by the first failure, so that the batches of other threads stop early. A
        #: plain attribute, as threading.Event keeps one (its is_set() only reads it), and
        #: the linker does not import threading for it.
        self.stopped = False
        self.umask = umask
        self.tallies: list[Tally] = []
        self.directories: list[str] = []
        #: The same directories, to look up: they have their parent's default ACL, if any.
        self.made_directories: set[str] = set()
        #: Whether new files in a target directory take their bits from a default ACL.
        self.default_acl: dict[str, bool] = {}
        self.runs: list[MadeRun] = []
        #: (mode, source, target) of single files; mode None: a symlink of the source tree.
        self.files: list[tuple[str | None, str, str]] = []
        #: The names of make_many calls that raised (KeyboardInterrupt) instead of returning:
        #: some prefix of them was made, which prefix is not known.
        self.uncertain: list[MadeRun] = []
        #: Files changed before this (st_ctime_ns) are not this call's; see undo().
        self.since_ns = time.time_ns()
        self.warnings: list[str] = []
        #: Directories made writable for their owner while the call fills them, with the
        #: mode mkdir gave them (see _walk._keep_writable), put back by restore_modes().
        self.final_modes: list[tuple[str, int]] = []

    def tally(self) -> Tally:
        tally = Tally()
        self.tallies.append(tally)
        return tally

    def freeze(self) -> LinkStats:
        total = Tally()
        for tally in list(self.tallies):
            total.add(tally)
        return total.freeze()

    def warn(self, message: str) -> None:
        """Log ``message`` now and queue it as a warning for the caller's thread."""
        log_warning(message)
        self.warnings.append(message)

    def emit_warnings(self, stacklevel: int) -> None:
        """Issue the queued warnings; ``stacklevel`` counts from the public method's caller."""
        if not self.warnings:
            return
        import warnings  # only a run that has something to say imports it

        while self.warnings:
            warnings.warn(LinkModeFallbackWarning(self.warnings.pop(0)), stacklevel=stacklevel + 1)

    def emit_warnings_after_failure(self, stacklevel: int) -> None:
        """:meth:`emit_warnings` while a failure is being raised: a warnings filter that
        turns them into errors must not replace that failure."""
        import contextlib  # a failure's path only: not imported by every link_tree

        with contextlib.suppress(Warning):
            self.emit_warnings(stacklevel + 1)

    def restore_modes(self) -> None:
        """Give the directories :attr:`final_modes` names the modes mkdir gave them, the
        deepest first (a parent without its search bit would hide its children)."""
        while self.final_modes:
            path, mode = self.final_modes.pop()
            try:  # noqa: SIM105 - contextlib stays out of the linker's import
                os.chmod(path, mode)
            except OSError:
                pass  # removed by undo(), or no longer ours to change

    def undo(self) -> tuple[str, ...]:
        """Remove what this call created, newest directories last; return what was left.

        A name is removed only if it still is what this call made: a hard link still the
        source's inode, a symlink still with the text it was given, a copy or clone still a
        regular file with one link that is not the source; a directory only if empty
        (rmdir(2)).
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
                try:
                    changed = os.lstat(target).st_ctime_ns
                except OSError:
                    continue
                if changed >= self.since_ns:
                    _remove_made(mode, os.path.join(source_dir, name), target, [])
        for directory in reversed(self.directories):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(directory)
        return tuple(left)


def _still_made(mode: str | None, source: str, target: str, info: os.stat_result) -> bool:
    """Whether ``target`` (whose lstat is ``info``) is still what ``mode`` made from ``source``."""
    if mode is None or mode == SYMLINK:
        expected = os.readlink(source) if mode is None else os.path.abspath(source)
        return stat.S_ISLNK(info.st_mode) and os.readlink(target) == expected
    source_info = os.stat(source)
    same_inode = (source_info.st_dev, source_info.st_ino) == (info.st_dev, info.st_ino)
    if mode == HARDLINK:
        return same_inode
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and not same_inode


def _remove_made(mode: str | None, source: str, target: str, left: list[str]) -> None:
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
