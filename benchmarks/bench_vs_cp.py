"""Are ``linkprobe bench``'s figures sane? Its copy against ``cp -r``, its hardlink against
``cp -al``, on the same tree, in one run.

    python benchmarks/bench_vs_cp.py [--files 2000] [--rounds 5] [--dir DIR | --scratch KIND]

``--scratch ext4|btrfs|xfs|tmpfs`` (as root) builds that filesystem with tests/_fs_build.py, on a
loop device, and tears it down afterwards: a filesystem of its own, away from the other writers of
a shared machine's disk.

A synthetic sample (bench's own, the same seed) is written once under DIR; then, round
after round, ``linkprobe.bench(..., sample=that tree, rounds=1)`` times every mode the way
``linkprobe bench`` does (a fresh ``Linker(mode).link_tree`` into a new directory, the
filesystem written back before each timed round), and ``cp -al`` / ``cp -r`` copy the same
tree into a new directory, written back before each round the same way. The minimum of each
is compared (interleaved rounds; on a shared machine the minimum is the least disturbed
figure). ``cp`` is timed as a whole process, about 1 ms of start-up included. Not a test:
nothing here asserts; it prints, with the ratios the project's goal names (within 1.5x).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from linkprobe import LinkMode, bench, probe
from linkprobe._bench_rules import DEFAULT_FILES
from linkprobe.benchmarking import _settle, _write_synthetic

#: What each mode is held against, and the goal for the ratio.
BASELINES = {LinkMode.HARDLINK: ["cp", "-al"], LinkMode.COPY: ["cp", "-r"]}
GOAL = 1.5


def time_command(argv: list[str], settle_dir: Path) -> float:
    _settle(str(settle_dir))
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=DEFAULT_FILES)
    parser.add_argument("--rounds", type=int, default=5)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", default=None, help="where the tree and the copies go (default: a temp dir)")
    where.add_argument("--scratch", choices=("ext4", "btrfs", "xfs", "tmpfs"), help="a loop-mounted scratch filesystem")
    args = parser.parse_args()
    if args.scratch is None:
        base = Path(tempfile.mkdtemp(prefix="bench-vs-cp-", dir=args.dir))
        try:
            run(base, args.files, args.rounds)
        finally:
            shutil.rmtree(base)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _fs_base import make_base_dir
    from _fs_build import ScratchMounts

    with ScratchMounts(make_base_dir()) as mounts:
        build = {
            "ext4": lambda: mounts.small_ext4(size_mb=256),
            "btrfs": lambda: mounts.btrfs("a"),
            "xfs": lambda: mounts.xfs(reflink=True),
            "tmpfs": mounts.tmpfs,
        }[args.scratch]
        run(build(), args.files, args.rounds)


def run(base: Path, files: int, rounds: int) -> None:
    sample, work = base / "sample", base / "work"
    sample.mkdir()
    work.mkdir()
    count, size = _write_synthetic(str(sample), files, 0, None)
    fstype = probe(sample, work, cache=False).target.fstype
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.platform()} Python {platform.python_version()}")
    print(f"# cpus={os.cpu_count()} files={count} bytes={size} rounds={rounds} dir={base} ({fstype})")
    ours: dict[LinkMode, list[float]] = {mode: [] for mode in BASELINES}
    theirs: dict[LinkMode, list[float]] = {mode: [] for mode in BASELINES}
    for _ in range(rounds):
        result = bench(sample, work / "venv", sample=sample, rounds=1)
        for mode in BASELINES:
            seconds = result.mode(mode).seconds
            if seconds is None:
                sys.exit(f"{mode.value} was not timed here: {result.mode(mode).reason}")
            ours[mode].append(seconds)
        for mode, argv in BASELINES.items():
            destination = work / f"cp-{mode.value}"
            theirs[mode].append(time_command([*argv, str(sample), str(destination)], work))
            shutil.rmtree(destination)
    for mode, argv in BASELINES.items():
        label = " ".join(argv)
        mine, baseline = min(ours[mode]), min(theirs[mode])
        verdict = "within" if mine / baseline <= GOAL else "NOT within"
        print(f"bench {mode.value}: {mine * 1e3:.0f} ms; {label} {baseline * 1e3:.0f} ms")
        print(f"  ratio bench {mode.value} / {label} = {mine / baseline:.2f} ({verdict} {GOAL}x)")


if __name__ == "__main__":
    main()
