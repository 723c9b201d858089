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
from linkprobe.probe import SCRATCH_PREFIX, clear_cache, probe, select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__version__ = "0.1.0"

if TYPE_CHECKING:
    from linkprobe.auditing import Audit, audit
    from linkprobe.benchmarking import BenchResult, bench
    from linkprobe.linker import Fallback, Linker, LinkStats
    from linkprobe.modes import AUTO_ORDER, LinkMode, parse_mode, parse_order
    from linkprobe.result import Probe, SideFacts, Status, Verdict

#: Public names imported on first use, each from its module: the linker pulls in
#: concurrent.futures and logging, ~35 ms that the command line (which only probes) should
#: not pay at every CI job start; the audit and the benchmark walk trees, which the probe does not need either.
#: LinkMode, Status and the results are enums and classes over them: the enum module
#: alone costs the command line more than a third of Python's own start-up, and its
#: one-word formats never need it (linkprobe._words).
#: Their modules are not named ``audit`` and ``bench``: importing a submodule sets it as an
#: attribute of this package, and ``linkprobe.audit`` would then be the module, not the function.
_LAZY: Final[dict[str, str]] = {
    "AUTO_ORDER": "linkprobe.modes",
    "LinkMode": "linkprobe.modes",
    "parse_mode": "linkprobe.modes",
    "parse_order": "linkprobe.modes",
    "Probe": "linkprobe.result",
    "SideFacts": "linkprobe.result",
    "Status": "linkprobe.result",
    "Verdict": "linkprobe.result",
    "Audit": "linkprobe.auditing",
    "audit": "linkprobe.auditing",
    "BenchResult": "linkprobe.benchmarking",
    "bench": "linkprobe.benchmarking",
    "Fallback": "linkprobe.linker",
    "Linker": "linkprobe.linker",
    "LinkStats": "linkprobe.linker",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__, the function behind the import statement, rather than
    # importlib.import_module: importing the importlib package (and warnings with it) costs
    # ~0.4 ms that `from linkprobe import Linker` need not pay. It returns the top-level
    # package; sys.modules holds the submodule.
    import sys

    __import__(module_name)
    value = getattr(sys.modules[module_name], name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    # Without this, dir(linkprobe) lists only what is already imported, hiding the lazy names.
    return list(__all__)


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
