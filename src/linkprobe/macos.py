"""macOS backend: clone with ``clonefile(2)`` (APFS), everything else plain POSIX.

Verified on Linux only, through fakes of ``clonefile`` at the ctypes boundary; see
docs/user-guide.md ("What was verified where").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable

from linkprobe.api import LinkBackend, SourceHints, override

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["MacOSBackend"]

#: clonefile() flags from <sys/clonefile.h>. CLONE_NOOWNERCOPY keeps the new file owned
#: by the caller, as a copy would be, instead of by the source's owner.
CLONE_NOFOLLOW: Final[int] = 0x0001
CLONE_NOOWNERCOPY: Final[int] = 0x0002

CloneFile = Callable[[bytes, bytes, int], int]


def _load_clonefile() -> CloneFile:
    """libSystem's clonefile; raises OSError(ENOTSUP) where it does not exist."""
    library = ctypes.util.find_library("c") or "libc.dylib"
    libc = ctypes.CDLL(library, use_errno=True)
    try:
        function = libc.clonefile
    except AttributeError:  # not macOS, or macOS < 10.12
        raise OSError(errno.ENOTSUP, "clonefile() is not available") from None
    function.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return,unused-ignore]


class MacOSBackend(LinkBackend):
    """macOS: ``clonefile`` for clones (APFS; ENOTSUP elsewhere, EXDEV across volumes)."""

    name = "macos"

    def __init__(self, clonefile: CloneFile | None = None) -> None:
        # Injected in tests; loaded lazily so importing this module costs nothing.
        self._clonefile = clonefile

    @override
    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        del hints  # clonefile() copies the mode itself and opens nothing
        if self._clonefile is None:
            self._clonefile = _load_clonefile()
        # clonefile creates target itself and fails with EEXIST if it exists, which is
        # the exclusive-create rule every backend keeps.
        if self._clonefile(os.fsencode(source), os.fsencode(target), CLONE_NOOWNERCOPY) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), source, None, target)
