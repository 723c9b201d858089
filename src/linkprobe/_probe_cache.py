"""The process-wide cache of probes: keyed by the paths as given, each answer used only
while both paths lead to the same inodes and the mount table is unchanged."""

from __future__ import annotations

import os
from _thread import allocate_lock

from linkprobe._locate import unchanged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from linkprobe._locate import Located
    from linkprobe.result import Probe

    #: What is kept per key: where both paths were found, and the answer.
    Entry = tuple[Located, Located, Probe]

__all__ = ["CACHE_LIMIT", "clear", "hit", "key", "store"]

#: POSIX paths are absolute exactly when they start with "/" (posixpath.isabs).
_POSIX: Final[bool] = os.path.sep == "/" and os.name == "posix"
#: Cached probes kept at most; the oldest goes first.
CACHE_LIMIT: Final[int] = 256

#: Key: the two paths as given (and the working directory when one is relative).
_cache: dict[tuple[str, ...], Entry] = {}
#: The lock of the cache, replaced in a forked child.
_lock = [allocate_lock()]
#: The mount-table generation the cached probes were made under (see mount_generation).
_generation: list[int | None] = [None]


def clear() -> None:
    with _lock[0]:
        _cache.clear()


def key(given_source: str, given_target: str) -> tuple[str, ...]:
    """The paths as given, and the working directory when either is relative."""
    if _POSIX:  # posixpath.isabs's own rule, without its two calls per path
        absolute = given_source.startswith("/") and given_target.startswith("/")
    else:
        absolute = os.path.isabs(given_source) and os.path.isabs(given_target)
    if absolute:
        return (given_source, given_target)
    return (given_source, given_target, os.getcwd())


def hit(cache_key: tuple[str, ...], generation: int | None) -> Probe | None:
    """The cached probe for ``cache_key`` if it still holds; a stale one is dropped.

    The common case reads without the lock: each read of ``_generation`` and ``_cache`` is
    atomic, and an entry found after another thread moved to a newer generation was made
    under that newer table, which is the answer a call a moment later would get anyway.
    """
    if generation != _generation[0]:
        with _lock[0]:
            current = _generation[0]
            # Something was mounted or unmounted: drop every probe. (A thread that read an
            # older generation than another thread has seen only misses.)
            if generation is None or current is None or generation > current:
                _cache.clear()
                _generation[0] = generation
        return None
    entry = _cache.get(cache_key)
    if entry is None:
        return None
    source, target, result = entry
    if unchanged(source) and unchanged(target):
        return result
    with _lock[0]:
        if _cache.get(cache_key) is entry:
            del _cache[cache_key]
    return None


def store(cache_key: tuple[str, ...], generation: int | None, entry: Entry) -> None:
    """Keep ``entry`` unless the mount table changed while it was made; at most
    CACHE_LIMIT entries, the oldest dropped first."""
    with _lock[0]:
        if generation != _generation[0]:  # the table changed while probing
            return
        _cache.pop(cache_key, None)
        _cache[cache_key] = entry
        while len(_cache) > CACHE_LIMIT:
            del _cache[next(iter(_cache))]


def _forget_after_fork() -> None:
    """A lock held by another thread at the fork would never be released in the child."""
    _lock[0] = allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
