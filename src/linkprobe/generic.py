"""Fallback backend for any other OS: no clone, POSIX links and a plain copy loop."""

from __future__ import annotations

import errno

from linkprobe.api import LinkBackend, SourceHints, override

__all__ = ["GenericBackend"]


class GenericBackend(LinkBackend):
    """An OS linkprobe has no clone call for (FreeBSD, ...): clone reports ENOTSUP."""

    name = "generic"

    @override
    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        del hints  # nothing to save: no fd is opened
        raise OSError(errno.EOPNOTSUPP, "no clone call known for this OS", source, None, target)
