"""linkprobe: which way of materialising files works from here to there — clone,
hardlink, symlink or copy — decided by real attempts on the real paths."""

from __future__ import annotations

from linkprobe.errors import (
    AuditReadError,
    InvalidModeError,
    InvalidPathError,
    LinkFailedError,
    LinkModeFallbackWarning,
    LinkprobeError,
    NoUsableModeError,
    TargetNotDirectoryError,
    UnsupportedModeError,
)
from linkprobe.modes import AUTO_ORDER, LinkMode, parse_mode, parse_order
from linkprobe.probe import SCRATCH_PREFIX, clear_cache, probe, select
from linkprobe.result import Probe, SideFacts, Status, Verdict

# typing is imported for type checkers only: it costs ~7 ms at every CLI start (issue 2).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__version__ = "0.1.0"

if TYPE_CHECKING:
    from linkprobe.auditing import Audit, audit
    from linkprobe.linker import Fallback, Linker, LinkStats

#: Imported on first use: the linker pulls in concurrent.futures and logging, ~35 ms that
#: the command line (which only probes) should not pay at every CI job start.
_LAZY: Final[frozenset[str]] = frozenset({"Fallback", "Linker", "LinkStats"})


#: The audit walks trees; the probe command does not need it either. Its module is not
#: named ``audit``: importing a submodule sets it as an attribute of this package, and
#: ``linkprobe.audit`` would then be the module instead of the function.
_LAZY_AUDIT: Final[frozenset[str]] = frozenset({"Audit", "audit"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_AUDIT:
        from linkprobe import auditing

        return getattr(auditing, name)
    if name in _LAZY:
        from linkprobe import linker

        return getattr(linker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTO_ORDER",
    "SCRATCH_PREFIX",
    "Audit",
    "AuditReadError",
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
    "audit",
    "clear_cache",
    "parse_mode",
    "parse_order",
    "probe",
    "select",
]
