"""``linkprobe audit`` against ``du -s SOURCE TARGET``, on the same trees in the same run.

    python benchmarks/bench_audit.py [--files 20000] [--rounds 7] [--dir DIR]

SOURCE is a site-packages-like tree (~17 files per directory, 100 B - 8 KiB); TARGET is a
``cp -r --reflink=never`` of it (every file a copy: the audit's slowest case, a block map
and a "held twice" lookup for each) and, second, a ``cp -al`` of it. Timed: the command as a
process (``python -m linkprobe audit --format json``) and ``audit()`` in process, each
against ``du -s SOURCE TARGET`` (which also walks both trees and stats every file).

Runs are interleaved and the minimum of each is compared, as in bench.py. Not a test:
nothing here asserts; it prints.
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
from collections.abc import Callable
from pathlib import Path

from linkprobe import audit

GOAL = 2.5


def make_tree(root: Path, files: int) -> None:
    """The tree of bench.py: ~17 small files per directory, sizes 100 B - 8 KiB."""
    rng = __import__("random").Random(7)
    for index in range(files):
        package, module = divmod(index, 17)
        path = root / f"pkg{package // 6}" / f"sub{package % 6}" / f"mod{module}.py"
        if index % 17 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(100, 8000)))


def best_of(rounds: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def installed_env() -> dict[str, str]:
    """The environment of an installed package: bytecode caches allowed (as bench.py; an
    image with PYTHONDONTWRITEBYTECODE=1 would otherwise compile linkprobe at every run)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def quiet(*argv: str | Path) -> Callable[[], object]:
    env = installed_env()

    def run() -> object:
        return subprocess.run([os.fspath(a) for a in argv], stdout=subprocess.DEVNULL, check=True, env=env)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="linkprobe-bench-audit-", dir=args.dir))
    try:
        source = work / "cache"
        make_tree(source, args.files)
        copies, links = work / "copies", work / "links"
        subprocess.run(["cp", "-r", "--reflink=never", source, copies], check=True)
        subprocess.run(["cp", "-al", source, links], check=True)
        subprocess.run(["sync"], check=True)  # fresh copies are delayed allocation until written out
        print(
            f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.platform()} Python {platform.python_version()}"
        )
        print(f"# cpus={os.cpu_count()} files={args.files} rounds={args.rounds} dir={work}")
        result = audit(source, copies)
        print(f"# copies: {result.kinds['copy'].files} copy, held twice {result.duplicated_files}")
        for label, target in (("copies", copies), ("hardlinks", links)):
            cli = [sys.executable, "-m", "linkprobe", "audit", "--format", "json", source, target]
            quiet(*cli)()  # writes the bytecode caches of an editable install once
            times = best_of(
                args.rounds,
                {
                    "du": quiet("du", "-s", source, target),
                    "cli": quiet(*cli),
                    "library": lambda target=target: audit(source, target),
                },
            )
            du = times["du"]
            print(
                f"{label}: du -s {du * 1000:.0f} ms; linkprobe audit {times['cli'] * 1000:.0f} ms; "
                f"audit() {times['library'] * 1000:.0f} ms"
            )
            print(f"  ratio linkprobe audit / du -s = {times['cli'] / du:.2f} (goal <= {GOAL})")
            print(f"  ratio audit() / du -s = {times['library'] / du:.2f}")
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
