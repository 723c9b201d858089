"""Probe two fresh directories in the runner's temp directory with the installed command line.

Runs ``python -m linkprobe --format json SOURCE TARGET`` and checks the JSON: every mode has a
status, the best mode is one that was found supported, and copy works. With ``--expect-clone``
(the macOS job: the runner's disk is APFS) clone must be supported, and ``--mode clone`` must
then pass its own verification (exit 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def linkprobe(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "linkprobe", *argv], capture_output=True, text=True, check=False)
    print("$ linkprobe", " ".join(argv), f"-> exit {done.returncode}")
    print(done.stdout, done.stderr, sep="")
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--expect-clone", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linkprobe-ci-") as scratch:
        source, target = Path(scratch, "source"), Path(scratch, "target")
        source.mkdir()
        target.mkdir()
        done = linkprobe("--format", "json", str(source), str(target))
        if done.returncode != 0:
            return 1
        result = json.loads(done.stdout)
        modes = result["modes"]
        problems = [f"{name}: no status" for name, mode in modes.items() if not mode.get("status")]
        if not modes["copy"]["supported"]:
            problems.append(f"copy is not supported: {modes['copy']['reason']}")
        if result["best"] is None or not modes[result["best"]]["supported"]:
            problems.append(f"best mode {result['best']!r} is not one found supported")
        if args.expect_clone:
            if not modes["clone"]["supported"]:
                problems.append(f"clone is not supported here: {modes['clone']['reason']}")
            elif linkprobe("--mode", "clone", str(source), str(target)).returncode != 0:
                problems.append("--mode clone failed its verification")
    for problem in problems:
        print(f"probe_here: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
