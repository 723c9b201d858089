"""Pick the backend for the running OS (the only place that looks at ``sys.platform``)."""

from __future__ import annotations

import sys

from linkprobe.api import LinkBackend

__all__ = ["backend_for", "default_backend"]


def backend_for(platform: str) -> LinkBackend:
    """The backend class for a ``sys.platform`` value, instantiated."""
    if platform.startswith("linux"):
        from linkprobe.linux import LinuxBackend

        return LinuxBackend()
    if platform == "darwin":
        from linkprobe.macos import MacOSBackend

        return MacOSBackend()
    if platform == "win32":
        from linkprobe.windows import WindowsBackend

        return WindowsBackend()
    from linkprobe.generic import GenericBackend

    return GenericBackend()


#: default_backend()'s one backend, once made. (Not functools.cache: nothing else on the
#: command line's path imports functools, ~1.4 ms of its start-up.)
_made: list[LinkBackend] = []


def default_backend() -> LinkBackend:
    """The live system's backend, made once per process."""
    if not _made:
        _made.append(backend_for(sys.platform))
    return _made[0]
