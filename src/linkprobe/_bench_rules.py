"""The pure rules of ``linkprobe bench``: the sample's shape, the figures, the advice.

No I/O here: every function takes numbers (or paths as strings) and returns values, so
each rule is table-tested on its own (tests/test_bench_rules.py).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from linkprobe.modes import AUTO_ORDER, LinkMode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "DEFAULT_FILES",
    "DEFAULT_ROUNDS",
    "MAX_SAMPLE_FILE",
    "SIZE_QUANTILES",
    "Figures",
    "SampleFile",
    "advice",
    "bar",
    "best_timed",
    "choose_subtree",
    "fastest_timed",
    "format_bytes",
    "format_count",
    "format_seconds",
    "median",
    "own_bytes",
    "size_at",
    "synthetic_shape",
]

#: "A few thousand files": a small virtual environment. 2,000 files of this shape hold about
#: 33 MB; with three rounds of each mode a default run takes about 15 s on a 2-core VM's ext4.
DEFAULT_FILES: Final[int] = 2000
DEFAULT_ROUNDS: Final[int] = 3

#: File sizes of a real site-packages (a development venv with mypy, ruff, hypothesis, pytest,
#: psutil, coverage, build, twine and their dependencies: 6,664 files, 145 MB), as (quantile,
#: bytes). Median 4.4 KB; the top 1 % are native extensions of 138 KB and more.
SIZE_QUANTILES: Final[tuple[tuple[float, int], ...]] = (
    (0.0, 0),
    (0.10, 351),
    (0.25, 1324),
    (0.50, 4420),
    (0.75, 12040),
    (0.90, 30350),
    (0.95, 51151),
    (0.99, 137728),
    (0.999, 794165),
    (1.0, 4 << 20),
)
#: The largest synthetic file: that venv's largest was 37 MB (one mypy extension), but one such
#: file would be half the data of a default sample and make every copy round about that file.
MAX_SAMPLE_FILE: Final[int] = SIZE_QUANTILES[-1][1]

#: Files per module directory, its ``__pycache__`` included: that venv has 8.6 files per
#: directory (6,664 files in 771 directories), and a module directory is two of them.
_FILES_PER_DIR: Final[int] = 16
#: Directories per package before the next package starts.
_DIRS_PER_PACKAGE: Final[int] = 6
#: Sizes at or above this quantile are native extensions (.so); that venv: 3.7 % of its files.
_NATIVE_QUANTILE: Final[float] = 0.965


@dataclass(frozen=True)
class SampleFile:
    """One file of a synthetic sample: a relative path (``/``-separated) and a size."""

    path: str
    size: int


def size_at(u: float) -> int:
    """The file size at quantile ``u`` (0 <= u <= 1) of :data:`SIZE_QUANTILES`.

    Interpolated linearly in log(size + 1) between the measured quantiles: file sizes spread
    over five orders of magnitude, and a straight line between 30 KB and 51 KB in bytes
    would put too many files at the top of each step.
    """
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], not {u!r}")
    for (q0, s0), (q1, s1) in itertools.pairwise(SIZE_QUANTILES):
        if u <= q1:
            fraction = 0.0 if q1 == q0 else (u - q0) / (q1 - q0)
            low, high = math.log(s0 + 1), math.log(s1 + 1)
            return max(0, round(math.exp(low + fraction * (high - low))) - 1)
    return SIZE_QUANTILES[-1][1]  # pragma: no cover - u <= 1.0 always ends the loop


def synthetic_shape(files: int, seed: int = 0) -> tuple[SampleFile, ...]:
    """``files`` paths and sizes shaped like a Python environment's site-packages.

    Packages of a few directories of ~8 files; each package has a ``.dist-info`` directory
    (METADATA, RECORD, WHEEL) and modules (``.py``, ``.pyi``, and ``.pyc`` in
    ``__pycache__``); the largest sizes are native extensions (``.so``). The same
    (``files``, ``seed``) always gives the same tree, so runs on two machines compare.
    """
    if files < 1:
        raise ValueError(f"a sample needs at least one file, not {files!r}")
    rng = random.Random(seed)  # noqa: S311 - not a secret: the same seed must give the same tree
    shape: list[SampleFile] = []
    package = 0
    while len(shape) < files:
        name = f"pkg{package:04d}"
        shape.extend(
            SampleFile(f"{name}-1.0.dist-info/{meta}", size_at(rng.uniform(0.05, 0.6)))
            for meta in ("METADATA", "RECORD", "WHEEL")
        )
        for directory in range(_DIRS_PER_PACKAGE):
            folder = name if directory == 0 else f"{name}/sub{directory}"
            for index in range(_FILES_PER_DIR):
                u = rng.random()
                kind = rng.random()
                if u >= _NATIVE_QUANTILE:
                    path = f"{folder}/_native{index}.cpython-311-x86_64-linux-gnu.so"
                elif kind < 0.45:
                    path = f"{folder}/mod{index}.py"
                elif kind < 0.85:
                    path = f"{folder}/__pycache__/mod{index}.cpython-311.pyc"
                else:
                    path = f"{folder}/mod{index}.pyi"
                shape.append(SampleFile(path, size_at(u)))
        package += 1
    return tuple(shape[:files])


@dataclass(frozen=True)
class Figures:
    """What a timed mode measured, as the advice reads it."""

    seconds: float
    disk_bytes: int | None


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence (the mean of the middle two for an even length)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def best_timed(timed: Mapping[LinkMode, Figures]) -> LinkMode | None:
    """Auto's rule applied to what was timed: clone > hardlink > copy; symlink never."""
    return next((mode for mode in AUTO_ORDER if mode in timed), None)


def fastest_timed(timed: Mapping[LinkMode, Figures]) -> LinkMode | None:
    """The timed mode with the shortest time (symlink included); ties go to auto's order."""
    if not timed:
        return None
    rank = {mode: index for index, mode in enumerate((*AUTO_ORDER, LinkMode.SYMLINK))}
    return min(timed, key=lambda mode: (timed[mode].seconds, rank[mode]))


def format_count(value: float) -> str:
    """``1234.5`` -> ``"1,234"``: whole numbers with thousands separators."""
    return f"{int(value):,}"


def format_bytes(value: float) -> str:
    """Decimal units as ``df -H`` and disk vendors: ``48 MB``, ``1.2 GB``, ``512 B``."""
    if value < 0:
        return "-" + format_bytes(-value)
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            scaled = value / size
            return f"{scaled:.1f} {unit}" if scaled < 10 else f"{scaled:.0f} {unit}"
    return f"{int(value)} B"


def format_seconds(value: float) -> str:
    """Three significant figures: ``0.0412 s``, ``1.23 s``, ``12.3 s``, ``123 s``."""
    if value >= 100:
        return f"{value:.0f} s"
    return f"{value:.3g} s"


#: The multiplication sign of "6.1 times faster", written as an escape: ruff's RUF001 reads
#: the literal sign as a confusable letter x.
_TIMES: Final[str] = "\N{MULTIPLICATION SIGN}"


def _times(ratio: float) -> str:
    return f"{ratio:.1f}{_TIMES}" if ratio < 10 else f"{ratio:.0f}{_TIMES}"


def advice(timed: Mapping[LinkMode, Figures], files: int, sample_bytes: int | None = None) -> str:
    """One line: what the mode auto would pick gains over copy here, in time and disk.

    ``timed`` holds the modes that were measured, ``files`` is the sample's file count (the
    savings are given per 1,000 files, so that a user can scale them to their own tree),
    ``sample_bytes`` its size: a copy holding under 5 % of it shares blocks itself.
    """
    best = best_timed(timed)
    if best is None:
        if LinkMode.SYMLINK in timed:
            return "only symlink could be timed here, and no installer picks it on its own"
        return "no mode could be timed here"
    if best is LinkMode.COPY:
        only = timed[LinkMode.COPY]
        per_thousand = _per_thousand(only.disk_bytes, files)
        cost = f", and every 1,000 files take {format_bytes(per_thousand)} of disk" if per_thousand is not None else ""
        return f"only copy works here (no clone, no hardlink): {format_count(files / only.seconds)} files/s{cost}"
    copy = timed.get(LinkMode.COPY)
    line = f"{best.value} {_compare(timed[best], copy, files)}"
    if copy is not None and copy.disk_bytes is not None and sample_bytes and copy.disk_bytes < 0.05 * sample_bytes:
        # copy_file_range(2) may share extents (btrfs, XFS with reflink, NFS 4.2): the
        # "copy" holds no data of its own either, so clone cannot save anything over it.
        line += ": copy shares blocks here too (the filesystem serves copy_file_range as a clone)"
    hardlink = timed.get(LinkMode.HARDLINK)
    if best is LinkMode.CLONE and hardlink is not None and hardlink.seconds < timed[best].seconds / 1.05:
        # Clone stays first although hardlink is faster: an edit through a hardlink changes
        # the cache's file too (why pnpm keeps clone first where it works).
        ratio = timed[best].seconds / hardlink.seconds
        line += f"; hardlink is {_times(ratio)} faster still, but writes through it change the source's files"
    return line


def _compare(mine: Figures, copy: Figures | None, files: int) -> str:
    if copy is None:
        return "works here (copy could not be timed to compare)"
    ratio = copy.seconds / mine.seconds
    if ratio >= 1.05:
        speed = f"is {_times(ratio)} faster than copy here"
    elif ratio <= 1 / 1.05:
        speed = f"is {_times(1 / ratio)} slower than copy here"
    else:
        speed = "is as fast as copy here"
    saved = None
    if mine.disk_bytes is not None and copy.disk_bytes is not None:
        saved = _per_thousand(copy.disk_bytes - mine.disk_bytes, files)
    if saved is None:
        return speed
    joint = "but" if ratio <= 1 / 1.05 else "and"
    if saved > 0:
        return f"{speed} {joint} saves {format_bytes(saved)} per 1,000 files"
    return f"{speed} and saves no disk space"


def _per_thousand(value: int | None, files: int) -> float | None:
    if value is None or files <= 0:
        return None
    return value * 1000 / files


def bar(seconds: float, slowest: float, width: int) -> str:
    """A bar of ``width`` cells for the slowest time, scaled for ``seconds``; at least one
    cell for any time above zero, so a fast mode never looks like nothing was done."""
    if width < 1 or slowest <= 0 or seconds <= 0:
        return ""
    cells = round(width * min(seconds, slowest) / slowest)
    return "█" * max(1, cells)


def choose_subtree(
    counts: Mapping[str, tuple[int, int]], wanted: int, *, excluded: Sequence[str] = (), max_bytes: int = 1 << 30
) -> str | None:
    """The directory (of ``counts``: path -> (regular files, bytes) under it) whose file
    count is nearest to ``wanted`` by ratio, for sampling a read-only source.

    Directories holding none of the files, more than ``max_bytes``, or containing (or being
    inside) an ``excluded`` path are skipped. Ties go to the shorter path, then the smaller
    in sort order: the choice is the same on every run over the same tree.
    """
    separators = ("/", "\\")

    def related(path: str, other: str) -> bool:
        if path == other:
            return True
        return any(
            other.startswith(path.rstrip(sep) + sep) or path.startswith(other.rstrip(sep) + sep) for sep in separators
        )

    best: tuple[float, int, str] | None = None
    for path, (files, size) in counts.items():
        if files < 1 or size > max_bytes or any(related(path, other) for other in excluded):
            continue
        key = (abs(math.log(files / wanted)), len(path), path)
        if best is None or key < best:
            best = key
    return best[2] if best else None


#: Reasons the audit gives for ``other`` files whose bytes the result holds itself: data in
#: metadata (a btrfs inline file is duplicated by a clone too), a file only partly shared,
#: a file it could not map (counted whole: nothing says it is shared).
_OWN_OTHER_REASONS: Final[frozenset[str]] = frozenset({"inline", "partly-shared", "unreadable"})
#: Reasons that leave the answer unknown: an own inode on a filesystem that cannot say
#: which blocks are shared, where clone works (it may be a clone or a copy).
_UNKNOWN_OTHER_REASONS: Final[frozenset[str]] = frozenset({"clones-unknown"})
#: Reasons whose entries hold no data of their own: empty and sparse files, symlinks (the
#: audit counts a symlink's bytes as its target's, which the tree holds once already),
#: FIFOs, sockets and devices. The three sets name every reason the audit gives.
_NO_DATA_OTHER_REASONS: Final[frozenset[str]] = frozenset(
    {"empty", "no-data", "symlink-internal", "symlink-elsewhere", "symlink-dangling", "special"}
)


def own_bytes(copy_bytes: int, other_reasons: Mapping[str, int], partly_shared_bytes: int) -> int | None:
    """Disk bytes a materialised tree holds that it shares with nothing, from the audit's
    totals: its copies, plus the ``other`` files that hold data of their own, less the part
    of partly shared files that is shared. Hardlinks, clones, symlinks, empty files: none.
    None when some file's sharing cannot be known on this filesystem."""
    if any(other_reasons.get(reason, 0) for reason in _UNKNOWN_OTHER_REASONS):
        return None
    own = copy_bytes + sum(size for reason, size in other_reasons.items() if reason in _OWN_OTHER_REASONS)
    return own - partly_shared_bytes
