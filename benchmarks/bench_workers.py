"""Where threads pay for ``Linker.link_tree`` copies: one worker against two, by file size.

    python benchmarks/bench_workers.py [--dir DIR] [--total-mib 128] [--rounds 3] [--sizes KIB ...]

For each file size, a tree of that many MiB in files of that size is copied with
``workers=1``, ``workers=2`` and ``workers=None`` (decide), beside ``cp -r --reflink=never``
as the baseline of the same run. Runs are interleaved and the minimum of each is shown. The
sizes where two workers beat one are what ``workers=None`` is tuned to (docs/api.md).
Not a test: nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from linkprobe import Linker

SIZES_KIB = (16, 64, 256, 1024, 4096, 16384)


def make_tree(root: Path, size: int, total: int) -> None:
    block = os.urandom(size)
    root.mkdir()
    for index in range(max(1, total // size)):
        # 100 files per directory, as in an unpacked wheel or node_modules package.
        directory = root / f"d{index // 100}"
        if index % 100 == 0:
            directory.mkdir()
        (directory / f"f{index}.bin").write_bytes(block)


def cp_copy(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-r", "--reflink=never", str(source), str(target)], check=True)


def best_of(rounds: int, runs: dict[str, Callable[[], object]], clear: Callable[[], None]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            clear()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--total-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES_KIB, help="file sizes in KiB")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="linkprobe-bench-", dir=args.dir))
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.platform()} Python {platform.python_version()}")
    print(f"# cpus={os.cpu_count()} total={args.total_mib} MiB per size, rounds={args.rounds}, dir={base}")
    print("# file size | cp -r --reflink=never | workers=1 | workers=2 | workers=None | 2 / 1")
    try:
        for size_kib in args.sizes:
            source, target = base / f"src{size_kib}", base / "dst"
            make_tree(source, size_kib << 10, args.total_mib << 20)

            def clear(target: Path = target) -> None:
                shutil.rmtree(target, ignore_errors=True)
                os.sync()

            def copy(workers: int | None, source: Path = source, target: Path = target) -> None:
                Linker("copy", env=None, workers=workers).link_tree(source, target)

            timings = best_of(
                args.rounds,
                {
                    "cp": functools.partial(cp_copy, source, target),
                    "1": lambda: copy(1),
                    "2": lambda: copy(2),
                    "None": lambda: copy(None),
                },
                clear,
            )
            clear()
            shutil.rmtree(source)
            ms = {name: f"{value * 1e3:.0f} ms" for name, value in timings.items()}
            ratio = timings["2"] / timings["1"]
            print(f"{size_kib} KiB | {ms['cp']} | {ms['1']} | {ms['2']} | {ms['None']} | {ratio:.2f}")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
