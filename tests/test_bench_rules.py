"""The pure rules of ``linkprobe bench`` (linkprobe._bench_rules): table tests, no I/O."""

# ruff: noqa: RUF001 -- the advice lines are written with the multiplication sign, as users read them

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkprobe._bench_rules import (
    MAX_SAMPLE_FILE,
    SIZE_QUANTILES,
    Figures,
    advice,
    bar,
    best_timed,
    choose_subtree,
    fastest_timed,
    format_bytes,
    format_count,
    format_seconds,
    median,
    own_bytes,
    size_at,
    synthetic_shape,
)
from linkprobe.modes import LinkMode

CLONE, HARDLINK, SYMLINK, COPY = LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.SYMLINK, LinkMode.COPY


@pytest.mark.parametrize(("u", "size"), SIZE_QUANTILES)
def test_size_at_hits_every_measured_quantile(u: float, size: int) -> None:
    assert size_at(u) == size


def test_size_at_interpolates_in_log_space() -> None:
    # Half-way between the medians of 4,420 and 12,040 bytes (quantiles 0.50 and 0.75) in
    # log space is their geometric mean, not their arithmetic one (8,230).
    assert size_at(0.625) == pytest.approx(math.sqrt(4421 * 12041) - 1, abs=1)


@given(st.floats(0, 1), st.floats(0, 1))
def test_size_at_never_falls_as_the_quantile_rises(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 0 <= size_at(low) <= size_at(high) <= MAX_SAMPLE_FILE


@pytest.mark.parametrize("u", [-0.01, 1.01, math.nan])
def test_size_at_refuses_quantiles_outside_0_1(u: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        size_at(u)


@pytest.mark.parametrize("files", [1, 2, 3, 4, 17, 500, 2000])
def test_synthetic_shape_has_exactly_the_files_asked_for_with_unique_paths(files: int) -> None:
    shape = synthetic_shape(files)
    assert len(shape) == files
    assert len({entry.path for entry in shape}) == files
    # No file is also a directory of another.
    directories = {entry.path.rsplit("/", 1)[0] for entry in shape}
    assert not directories & {entry.path for entry in shape}


def test_synthetic_shape_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    assert synthetic_shape(300, seed=4) == synthetic_shape(300, seed=4)
    assert synthetic_shape(300, seed=4) != synthetic_shape(300, seed=5)


def test_synthetic_shape_is_spread_like_site_packages() -> None:
    shape = synthetic_shape(2000)
    sizes = sorted(entry.size for entry in shape)
    assert round(sum(sizes) / 1e6) == 33  # "2,000 files hold 33 MB" (docs/cli.md)
    # Quartiles within 15 % of the measured ones (2,000 draws of a known distribution).
    for quantile, measured in SIZE_QUANTILES[2:5]:
        assert sizes[int(quantile * len(sizes))] == pytest.approx(measured, rel=0.15)
    # Many small files, a few large ones: half the files hold a few percent of the bytes,
    # the top 5 % more than half of them.
    total = sum(sizes)
    assert sum(sizes[:1000]) < 0.05 * total
    assert sum(sizes[1900:]) > 0.5 * total
    native = [entry for entry in shape if entry.path.endswith(".so")]
    assert 0.02 * len(shape) < len(native) < 0.06 * len(shape)
    assert min(entry.size for entry in native) > 30_000
    assert {"METADATA", "RECORD", "WHEEL"} <= {entry.path.rsplit("/", 1)[1] for entry in shape}
    assert any("/__pycache__/" in entry.path for entry in shape)
    files_per_directory = len(shape) / len({entry.path.rsplit("/", 1)[0] for entry in shape})
    assert 5 < files_per_directory < 12  # the measured venv: 8.6


@pytest.mark.parametrize("files", [0, -1])
def test_synthetic_shape_needs_a_file(files: int) -> None:
    with pytest.raises(ValueError, match="at least one file"):
        synthetic_shape(files)


@pytest.mark.parametrize(
    ("values", "expected"), [([3.0], 3.0), ([3.0, 1.0], 2.0), ([5.0, 1.0, 3.0], 3.0), ([4.0, 1.0, 3.0, 2.0], 2.5)]
)
def test_median(values: list[float], expected: float) -> None:
    assert median(values) == expected


def test_median_of_nothing() -> None:
    with pytest.raises(ValueError, match="no values"):
        median([])


def figures(**seconds: float) -> dict[LinkMode, Figures]:
    disk = {CLONE: 0, HARDLINK: 0, SYMLINK: 0, COPY: 48_000_000}
    return {LinkMode(name): Figures(value, disk[LinkMode(name)]) for name, value in seconds.items()}


@pytest.mark.parametrize(
    ("timed", "best", "fastest"),
    [
        (figures(clone=2.0, hardlink=1.0, copy=3.0, symlink=0.5), CLONE, SYMLINK),
        (figures(hardlink=1.0, copy=3.0), HARDLINK, HARDLINK),
        (figures(copy=3.0, symlink=1.0), COPY, SYMLINK),
        (figures(symlink=1.0), None, SYMLINK),
        ({}, None, None),
        # Equal times: auto's order breaks the tie.
        (figures(hardlink=1.0, copy=1.0), HARDLINK, HARDLINK),
    ],
)
def test_best_and_fastest(timed: dict[LinkMode, Figures], best: LinkMode | None, fastest: LinkMode | None) -> None:
    assert best_timed(timed) is best
    assert fastest_timed(timed) is fastest


@pytest.mark.parametrize(
    ("timed", "files", "line"),
    [
        (
            {HARDLINK: Figures(0.5, 0), COPY: Figures(3.05, 48_000_000)},
            1000,
            "hardlink is 6.1× faster than copy here and saves 48 MB per 1,000 files",
        ),
        (
            {HARDLINK: Figures(0.1, 1000), COPY: Figures(2.5, 32_001_000)},
            2000,
            "hardlink is 25× faster than copy here and saves 16 MB per 1,000 files",
        ),
        (
            {CLONE: Figures(1.2, 0), COPY: Figures(1.0, 4_000_000)},
            500,
            "clone is 1.2× slower than copy here but saves 8.0 MB per 1,000 files",
        ),
        (
            {CLONE: Figures(1.01, 0), COPY: Figures(1.0, 4_000_000)},
            500,
            "clone is as fast as copy here and saves 8.0 MB per 1,000 files",
        ),
        (
            # btrfs serves copy_file_range by sharing extents: the copy holds nothing either.
            {CLONE: Figures(1.0, 0), COPY: Figures(2.0, 0)},
            500,
            "clone is 2.0× faster than copy here and saves no disk space",
        ),
        (
            {CLONE: Figures(2.0, 0), HARDLINK: Figures(1.0, 0), COPY: Figures(4.0, 9_000_000)},
            1000,
            "clone is 2.0× faster than copy here and saves 9.0 MB per 1,000 files; hardlink is 2.0× faster "
            "still, but writes through it change the source's files",
        ),
        (
            {CLONE: Figures(1.0, None), COPY: Figures(2.0, 9_000_000)},
            1000,
            "clone is 2.0× faster than copy here",
        ),
        (
            {HARDLINK: Figures(1.0, 0)},
            1000,
            "hardlink works here (copy could not be timed to compare)",
        ),
        (
            {COPY: Figures(0.5, 16_000_000), SYMLINK: Figures(0.1, 0)},
            2000,
            "only copy works here (no clone, no hardlink): 4,000 files/s, and every 1,000 files take 8.0 MB of disk",
        ),
        (
            {COPY: Figures(0.5, None)},
            2000,
            "only copy works here (no clone, no hardlink): 4,000 files/s",
        ),
        (
            {SYMLINK: Figures(0.1, 0)},
            10,
            "only symlink could be timed here, and no installer picks it on its own",
        ),
        ({}, 10, "no mode could be timed here"),
    ],
)
def test_advice(timed: dict[LinkMode, Figures], files: int, line: str) -> None:
    assert advice(timed, files) == line


def test_advice_says_when_copy_shares_blocks_itself() -> None:
    # btrfs, here: linkprobe's copy (copy_file_range) held 513 kB of a 33 MB sample, the
    # inline small files, as the clone did.
    timed = {CLONE: Figures(0.262, 513_000), HARDLINK: Figures(0.141, 0), COPY: Figures(0.244, 513_000)}
    assert advice(timed, 2000, 32_811_006) == (
        "clone is 1.1× slower than copy here and saves no disk space: copy shares blocks here too (the filesystem "
        "serves copy_file_range as a clone); hardlink is 1.9× faster still, but writes through it change the "
        "source's files"
    )
    # A copy that holds its data: nothing more to say.
    timed[COPY] = Figures(0.5, 30_000_000)
    assert "shares blocks" not in advice(timed, 2000, 32_811_006)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (48_000_000, "48 MB"),
        (9_940_000, "9.9 MB"),
        (1_234_000_000, "1.2 GB"),
        (-16_000_000, "-16 MB"),
    ],
)
def test_format_bytes(value: int, text: str) -> None:
    assert format_bytes(value) == text


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (999.9, "999"), (1000, "1,000"), (1_234_567.8, "1,234,567")])
def test_format_count(value: float, text: str) -> None:
    assert format_count(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(0.041234, "0.0412 s"), (1.234, "1.23 s"), (12.34, "12.3 s"), (123.4, "123 s")]
)
def test_format_seconds(value: float, text: str) -> None:
    assert format_seconds(value) == text


@pytest.mark.parametrize(
    ("seconds", "slowest", "width", "cells"),
    [(1.0, 1.0, 30, 30), (0.5, 1.0, 30, 15), (0.001, 1.0, 30, 1), (0.0, 1.0, 30, 0), (2.0, 1.0, 30, 30)],
)
def test_bar_is_scaled_to_the_slowest(seconds: float, slowest: float, width: int, cells: int) -> None:
    assert bar(seconds, slowest, width) == "█" * cells


@pytest.mark.parametrize(
    ("copy", "reasons", "partly_shared", "expected"),
    [
        (0, {}, 0, 0),
        (48_000, {}, 0, 48_000),
        # Inline (btrfs) and unreadable files hold their own bytes; empty files and
        # symlinks none; of a partly shared file only the part that is not shared.
        (100, {"inline": 20, "empty": 0, "symlink-internal": 5000, "unreadable": 7}, 0, 127),
        (100, {"partly-shared": 50}, 30, 120),
        # Cannot be told on this filesystem: unknown, not zero.
        (100, {"clones-unknown": 10}, 0, None),
        (100, {"clones-unknown": 0}, 0, 100),
    ],
)
def test_own_bytes(copy: int, reasons: dict[str, int], partly_shared: int, expected: int | None) -> None:
    assert own_bytes(copy, reasons, partly_shared) == expected


def test_own_bytes_decides_every_reason_the_audit_gives() -> None:
    from linkprobe import _bench_rules
    from linkprobe._audit_rules import OTHER_REASONS

    own = _bench_rules._OWN_OTHER_REASONS
    unknown = _bench_rules._UNKNOWN_OTHER_REASONS
    none = _bench_rules._NO_DATA_OTHER_REASONS
    assert own | unknown | none == set(OTHER_REASONS)  # a new reason needs a decision here
    assert len(own) + len(unknown) + len(none) == len(OTHER_REASONS)  # and no reason in two sets


def test_choose_subtree_takes_the_count_nearest_by_ratio() -> None:
    counts = {"/c": (5000, 10), "/c/a": (1000, 5), "/c/b": (3000, 5), "/c/b/x": (1500, 1), "/c/d": (0, 0)}
    assert choose_subtree(counts, 2000) == "/c/b/x"  # 2000/1500 = 1.33 beats 3000/2000 = 1.5
    assert choose_subtree(counts, 4000) == "/c"  # 5000/4000 = 1.25 beats 4000/3000 = 1.33
    assert choose_subtree(counts, 5000) == "/c"
    assert choose_subtree(counts, 1) == "/c/a"


def test_choose_subtree_skips_trees_around_excluded_paths_and_huge_ones() -> None:
    counts = {"/c": (5000, 10), "/c/a": (2000, 5), "/c/b": (2000, 5), "/c/e": (2000, 1 << 40)}
    assert choose_subtree(counts, 2000, excluded=("/c/a/target",)) == "/c/b"
    assert choose_subtree(counts, 2000, excluded=("/c/a", "/c/b")) is None  # /c holds both
    assert choose_subtree({"/c": (0, 0)}, 10) is None


def test_choose_subtree_breaks_ties_by_shorter_then_sorted_path() -> None:
    counts = {"/c/bb": (10, 1), "/c/aa": (10, 1), "/c/z": (10, 1)}
    assert choose_subtree(counts, 10) == "/c/z"
    assert choose_subtree({"/c/bb": (10, 1), "/c/aa": (10, 1)}, 10) == "/c/aa"
