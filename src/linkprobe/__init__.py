"""linkprobe: which way of materialising files works from here to there — clone,
hardlink, symlink or copy — decided by real attempts on the real paths."""

from __future__ import annotations

from linkprobe.errors import (
    AuditReadError,
    InvalidArgumentError,
    InvalidModeError,
    InvalidPathError,
    InvalidSourceError,
    LinkFailedError,
    LinkModeFallbackWarning,
    LinkprobeError,
    NoUsableModeError,
    SampleError,
    SourceIsDirectoryError,
    SourceNotDirectoryError,
    SourceNotFoundError,
    TargetInsideSourceError,
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
    from linkprobe.benchmarking import BenchResult, bench
    from linkprobe.linker import Fallback, Linker, LinkStats

#: Imported on first use: the linker pulls in concurrent.futures and logging, ~35 ms that
#: the command line (which only probes) should not pay at every CI job start.
_LAZY: Final[frozenset[str]] = frozenset({"Fallback", "Linker", "LinkStats"})
#: Imported on first use too: the benchmark is a command of its own (module not named
#: ``bench`` for the audit's reason below).
_LAZY_BENCH: Final[frozenset[str]] = frozenset({"BenchResult", "bench"})


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
    if name in _LAZY_BENCH:
        from linkprobe import benchmarking

        return getattr(benchmarking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTO_ORDER",
    "SCRATCH_PREFIX",
    "Audit",
    "AuditReadError",
    "BenchResult",
    "Fallback",
    "InvalidArgumentError",
    "InvalidModeError",
    "InvalidPathError",
    "InvalidSourceError",
    "LinkFailedError",
    "LinkMode",
    "LinkModeFallbackWarning",
    "LinkStats",
    "Linker",
    "LinkprobeError",
    "NoUsableModeError",
    "Probe",
    "SampleError",
    "SideFacts",
    "SourceIsDirectoryError",
    "SourceNotDirectoryError",
    "SourceNotFoundError",
    "Status",
    "TargetInsideSourceError",
    "TargetNotDirectoryError",
    "UnsupportedModeError",
    "Verdict",
    "__version__",
    "audit",
    "bench",
    "clear_cache",
    "parse_mode",
    "parse_order",
    "probe",
    "select",
]
