"""Capability marks that more than one test module gates on.

A mark asks what this machine can do, by probing it where a probe exists, and says in its
reason what the test needs. A condition only one module uses stays in that module. The
``realfs`` marker (root, loop devices, FUSE) is not here: conftest.py registers it and
``_fs_capability.need`` checks it per filesystem kind, failing instead of skipping in CI.
"""

from __future__ import annotations

import os
import sys
from typing import Final

import pytest

__all__ = ["NEEDS_LINUX_SYSCALLS", "NEEDS_PROC_MOUNTINFO"]

#: LinuxBackend issues Linux ioctl numbers (FICLONE) and calls copy_file_range, O_PATH and
#: linkat with dir fds. There is no probe for "these numbers mean the same thing here" short
#: of the kernel being Linux, so this one mark gates on the platform name.
NEEDS_LINUX_SYSCALLS: Final[pytest.MarkDecorator] = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="exercises LinuxBackend's Linux system calls"
)

#: The mount table as the kernel writes it; psutil and linkprobe.mounts read the same file.
NEEDS_PROC_MOUNTINFO: Final[pytest.MarkDecorator] = pytest.mark.skipif(
    not os.path.exists("/proc/self/mountinfo"), reason="reads /proc/self/mountinfo"
)
