"""Pick the backend for the running OS (the only place that looks at ``sys.platform``)."""

from __future__ import annotations

import sys
from functools import cache

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


@cache
def default_backend() -> LinkBackend:
    """The live system's backend, made once per process."""
    return backend_for(sys.platform)
