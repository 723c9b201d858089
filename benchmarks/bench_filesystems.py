"""``linkprobe bench`` on every kind of pair this machine can mount: the table in
docs/benchmarks.md.

    python benchmarks/bench_filesystems.py [--files 2000] [--rounds 3]   # as root

Builds scratch filesystems with tests/_fs_build.py (loop-mounted ext4, btrfs with two
subvolumes, XFS with and without reflink, a tmpfs, a bind mount) plus the machine's own
``/var/tmp`` and ``/dev/shm``, runs ``python -m linkprobe bench --format json`` on each pair,
and prints one markdown row per mode and pair, then each pair's advice line. Everything is
unmounted again at the end. Not a test: nothing here asserts; it prints what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _fs_base import make_base_dir
from _fs_build import ScratchMounts

from linkprobe._bench_rules import DEFAULT_FILES, DEFAULT_ROUNDS, format_bytes, format_count

Pair = Callable[[ScratchMounts], tuple[Path, Path]]
#: Directories made outside the scratch mounts, removed at the end.
_MADE: list[Path] = []


def _temporary(parent: str) -> Path:
    made = Path(tempfile.mkdtemp(prefix="bench-fs-", dir=parent))
    _MADE.append(made)
    return made


def _same(make: Callable[[ScratchMounts], Path]) -> Pair:
    def build(mounts: ScratchMounts) -> tuple[Path, Path]:
        top = make(mounts)
        (top / "cache").mkdir()
        return top / "cache", top / "project" / ".venv"

    return build


def _machine_dir(parent: str) -> Pair:
    def build(mounts: ScratchMounts) -> tuple[Path, Path]:
        del mounts
        top = _temporary(parent)
        (top / "cache").mkdir()
        return top / "cache", top / "project" / ".venv"

    return build


def _btrfs_subvolumes(mounts: ScratchMounts) -> tuple[Path, Path]:
    return mounts.btrfs("cache"), mounts.btrfs("project") / ".venv"


def _bind(mounts: ScratchMounts) -> tuple[Path, Path]:
    top = mounts.small_ext4(size_mb=256)
    (top / "cache").mkdir()
    (top / "project").mkdir()
    return top / "cache", mounts.bind(top / "project") / ".venv"


PAIRS: dict[str, Pair] = {
    "ext4 (loop), one mount": _same(lambda m: m.small_ext4(size_mb=256)),
    "btrfs (loop), one subvolume": _same(lambda m: m.btrfs("one")),
    "btrfs (loop), subvolume to subvolume": _btrfs_subvolumes,
    "XFS reflink=1 (loop), one mount": _same(lambda m: m.xfs(reflink=True)),
    "XFS reflink=0 (loop), one mount": _same(lambda m: m.xfs(reflink=False)),
    "tmpfs, one mount": _same(lambda m: m.tmpfs()),
    "ext4 (loop) to a bind mount of it": _bind,
    "/var/tmp (the VM's ext4 disk), one mount": _machine_dir("/var/tmp"),
    "/dev/shm (tmpfs) to /var/tmp (ext4)": lambda m: (_temporary("/dev/shm"), _temporary("/var/tmp") / ".venv"),
}


def _row(name: str, mode: str, figures: dict[str, Any], sample_bytes: int) -> str:
    if figures["seconds"] is None:
        # The reason names the scratch paths; the errno says which refusal it was.
        return f"| {name} | {mode} | not timed ({figures['status']}, {figures['errno']}) | | | |"
    disk = figures["disk_bytes"]
    share = "?" if disk is None else f"{format_bytes(disk)} ({disk / sample_bytes:.0%})"
    return (
        f"| {name} | {mode} | {figures['seconds'] * 1e3:.0f} ms | {figures['median_seconds'] * 1e3:.0f} ms "
        f"| {format_count(figures['files_per_second'])} | {share} |"
    )


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One ``linkprobe bench --format json`` document per pair (or an error line)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    documents = []
    with ScratchMounts(make_base_dir()) as mounts:
        for name, build in PAIRS.items():
            if args.only and not any(word in name for word in args.only):
                continue
            source, target = build(mounts)
            argv = [sys.executable, "-m", "linkprobe", "bench", str(source), str(target)]
            argv += ["--files", str(args.files), "--rounds", str(args.rounds), "--format", "json"]
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                documents.append({"name": name, "error": done.stderr.strip()})
            else:
                documents.append({"name": name, **json.loads(done.stdout)})
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=DEFAULT_FILES)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--only", action="append", help="run only pairs whose name contains this")
    args = parser.parse_args()
    try:
        documents = measure(args)
    finally:
        for made in _MADE:
            shutil.rmtree(made, ignore_errors=True)
    measured = [document for document in documents if "error" not in document]
    if not measured:
        sys.exit("nothing was measured: " + "; ".join(document["error"] for document in documents))
    machine, sample = measured[-1]["machine"], measured[-1]["sample"]
    print(
        f"# {machine['date']}: {machine['os']} {machine['kernel']} {machine['arch']}, {machine['cpus']} CPUs, "
        f"Python {machine['python']}; sample {format_count(sample['files'])} files, "
        f"{format_bytes(sample['bytes'])} ({sample['from']}), {args.rounds} rounds"
    )
    print("| pair | mode | min | median | files/s | disk (of the sample) |")
    print("|---|---|---|---|---|---|")
    for document in documents:
        if "error" in document:
            print(f"| {document['name']} | | failed: {document['error']} | | | |")
            continue
        for mode in ("clone", "hardlink", "copy", "symlink"):
            print(_row(document["name"], mode, document["modes"][mode], document["sample"]["bytes"]))
    print()
    for document in measured:
        print(f"- {document['name']}: {document['advice']}")


if __name__ == "__main__":
    main()
