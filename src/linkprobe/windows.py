"""Windows backend: block cloning with ``FSCTL_DUPLICATE_EXTENTS_TO_FILE`` (ReFS, Dev Drive).

Hard links go through ``os.link`` (``CreateHardLinkW``, NTFS/ReFS, same volume); symlinks
need Developer Mode or SeCreateSymbolicLinkPrivilege (WinError 1314 otherwise).
Verified on Linux only, through a fake ``DeviceIoControl``; see docs/user-guide.md.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

from linkprobe.api import LinkBackend, SourceHints, override

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["DuplicateExtentsData", "WindowsBackend"]

#: CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 209, METHOD_BUFFERED, FILE_WRITE_ACCESS) from winioctl.h.
FSCTL_DUPLICATE_EXTENTS_TO_FILE: Final[int] = 0x00098344
#: ReFS clones whole clusters only; 4 KiB is the smallest ReFS cluster and a multiple of
#: it always covers the file's end (the tail past end of file is ignored by ReFS).
_CLUSTER: Final[int] = 64 * 1024


class DuplicateExtentsData(ctypes.Structure):
    """DUPLICATE_EXTENTS_DATA from winioctl.h."""

    _fields_ = (
        ("FileHandle", ctypes.c_void_p),
        ("SourceFileOffset", ctypes.c_longlong),
        ("TargetFileOffset", ctypes.c_longlong),
        ("ByteCount", ctypes.c_longlong),
    )


#: (target handle, control code, input struct) -> None; raises OSError with winerror set.
DuplicateExtents = Callable[[int, int, DuplicateExtentsData], None]
#: fd -> Win32 HANDLE (msvcrt.get_osfhandle)
HandleOf = Callable[[int], int]


def _device_io_control(handle: int, code: int, data: DuplicateExtentsData) -> None:
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    returned = ctypes.c_ulong(0)
    ok = kernel32.DeviceIoControl(
        ctypes.c_void_p(handle),
        code,
        ctypes.byref(data),
        ctypes.sizeof(data),
        None,
        0,
        ctypes.byref(returned),
        None,
    )
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]


def _handle_of(fd: int) -> int:
    import msvcrt

    return msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined,unused-ignore,no-any-return]


class WindowsBackend(LinkBackend):
    """Windows: block clone on ReFS; ``os.link``/``os.symlink`` for links."""

    name = "windows"

    def __init__(
        self,
        duplicate_extents: DuplicateExtents | None = None,
        handle_of: HandleOf | None = None,
    ) -> None:
        self._duplicate_extents = duplicate_extents or _device_io_control
        self._handle_of = handle_of or _handle_of

    @override
    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self.fill_new_file(source, target, self._duplicate_all, hints)

    def _duplicate_all(self, source_fd: int, target_fd: int, size: int) -> None:
        # The size of the file opened now, not the caller's hint: a clone of a file that
        # changed since must cover exactly its current bytes.
        del size
        size = os.fstat(source_fd).st_size
        # The destination must already be as large as the cloned range.
        os.ftruncate(target_fd, size)
        if size:
            data = DuplicateExtentsData(
                FileHandle=self._handle_of(source_fd),
                SourceFileOffset=0,
                TargetFileOffset=0,
                ByteCount=-(-size // _CLUSTER) * _CLUSTER,
            )
            self._duplicate_extents(self._handle_of(target_fd), FSCTL_DUPLICATE_EXTENTS_TO_FILE, data)
