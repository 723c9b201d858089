"""pnpm itself, clone against hardlink: the cost of linkprobe keeping clone first for pnpm.

    python benchmarks/pnpm_import_method.py KIT_DIR [--rounds 5]

KIT_DIR is made once (network) by ``--prepare``: pnpm 12.21.0 (tests/_clients.py's pin) and a
store primed with lodash, typescript, rxjs and date-fns (~7,000 files). Then, on scratch btrfs
and XFS (reflink=1) filesystems built with tests/_fs_build.py (root needed), the store and the
project share one filesystem, and ``pnpm install --offline --frozen-lockfile`` runs with
``package-import-method`` clone and hardlink in turn (A B A B ...), node_modules removed between
runs. Prints the minimum wall time of each and the ratio clone / hardlink. Not a test: it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _clients import PNPM_VERSION, client_env, pnpm_bin
from _fs_base import make_base_dir
from _fs_build import ScratchMounts

DEPENDENCIES = {"lodash": "4.17.21", "typescript": "5.9.3", "rxjs": "7.8.2", "date-fns": "4.1.0"}


def prepare(kit: Path) -> None:
    npm = shutil.which("npm") or "npm"
    subprocess.run([npm, "install", "--no-save", "--prefix", str(kit), f"pnpm@{PNPM_VERSION}"], check=True)
    project = kit / "project"
    project.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "bench", "version": "1.0.0", "private": True, "dependencies": DEPENDENCIES}
    (project / "package.json").write_text(json.dumps(manifest))
    argv = [str(pnpm_bin(kit)), "install", "--store-dir", str(kit / "store"), "--cache-dir", str(kit / "cache")]
    subprocess.run(argv, cwd=project, env=client_env({"HOME": str(kit / "home")}), check=True)
    shutil.rmtree(project / "node_modules")


def install(kit: Path, where: Path, method: str) -> float:
    argv = [str(pnpm_bin(kit)), "install", "--offline", "--frozen-lockfile", "--reporter", "silent"]
    argv += ["--store-dir", str(where / "store"), "--cache-dir", str(where / "cache")]
    argv += ["--package-import-method", method]
    os.sync()
    start = time.perf_counter()
    subprocess.run(argv, cwd=where / "project", env=client_env({"HOME": str(where / "home")}), check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(where / "project" / "node_modules")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kit", type=Path)
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kit = args.kit.resolve()
    if args.prepare:
        prepare(kit)
    files = sum(1 for p in (kit / "store").rglob("*") if p.is_file())
    print(f"# pnpm {PNPM_VERSION}, store of {files} files, {args.rounds} rounds, cpus={os.cpu_count()}")
    with ScratchMounts(make_base_dir(), remove_base=True) as mounts:
        places: list[tuple[str, Callable[[], Path]]] = [
            ("btrfs", lambda: mounts.btrfs("a")),
            ("xfs reflink=1", lambda: mounts.xfs(reflink=True)),
        ]
        for name, make in places:
            where = make()
            for part in ("store", "cache", "project"):
                shutil.copytree(kit / part, where / part, symlinks=True, ignore=shutil.ignore_patterns("projects"))
            install(kit, where, "hardlink")  # warm the page cache
            times: dict[str, list[float]] = {"clone": [], "hardlink": []}
            for _ in range(args.rounds):
                for method, taken in times.items():
                    taken.append(install(kit, where, method))
            clone, hardlink = min(times["clone"]), min(times["hardlink"])
            print(f"{name}: clone {clone * 1000:.0f} ms, hardlink {hardlink * 1000:.0f} ms")
            print(f"  ratio clone / hardlink = {clone / hardlink:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
