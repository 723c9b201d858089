"""linkprobe: which way of materialising files works from here to there — clone,
hardlink, symlink or copy — decided by real attempts on the real paths."""

from __future__ import annotations

from linkprobe.errors import (
    InvalidModeError,
    InvalidPathError,
    LinkFailedError,
    LinkModeFallbackWarning,
    LinkprobeError,
    NoUsableModeError,
    TargetNotDirectoryError,
    UnsupportedModeError,
)
from linkprobe.linker import Fallback, Linker, LinkStats
from linkprobe.modes import AUTO_ORDER, LinkMode, parse_mode
from linkprobe.probe import SCRATCH_PREFIX, clear_cache, probe, select
from linkprobe.result import Probe, SideFacts, Status, Verdict

__version__ = "0.1.0"

__all__ = [
    "AUTO_ORDER",
    "SCRATCH_PREFIX",
    "Fallback",
    "InvalidModeError",
    "InvalidPathError",
    "LinkFailedError",
    "LinkMode",
    "LinkModeFallbackWarning",
    "LinkStats",
    "Linker",
    "LinkprobeError",
    "NoUsableModeError",
    "Probe",
    "SideFacts",
    "Status",
    "TargetNotDirectoryError",
    "UnsupportedModeError",
    "Verdict",
    "__version__",
    "clear_cache",
    "parse_mode",
    "probe",
    "select",
]
