"""What importing ``typing`` would add to the command line's start-up.

Runs ``python -c "import linkprobe.cli"`` and ``python -c "import typing, linkprobe.cli"``
interleaved, and prints the best wall time of each plus ``-X importtime``'s cumulative figures.
Run it with an interpreter whose site-packages imports nothing at start-up (a fresh venv):
a ``.pth`` file that imports ``typing`` makes both figures equal.

    python benchmarks/typing_cost.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

_SRC = str(Path(__file__).resolve().parent.parent / "src")
_PLAIN = "import linkprobe.cli"
_WITH_TYPING = "import typing, linkprobe.cli"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=_SRC)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode caches allowed
    return env


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True)
    return time.perf_counter() - start


def cumulative_us(code: str) -> dict[str, int]:
    """Module name -> cumulative import time in microseconds, from ``-X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=_env(), capture_output=True, text=True, check=True
    ).stderr
    found: dict[str, int] = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            found[name] = int(cumulative)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    wall(_PLAIN)  # writes the bytecode caches once
    times: dict[str, list[float]] = {_PLAIN: [], _WITH_TYPING: []}
    for _ in range(args.runs):
        for code, values in times.items():
            values.append(wall(code))
    best = {code: min(values) for code, values in times.items()}
    plain = [cumulative_us(_PLAIN) for _ in range(5)]
    typed = [cumulative_us(_WITH_TYPING) for _ in range(5)]
    print(f"# Python {sys.version.split()[0]}, best of {args.runs}")
    print(f"{_PLAIN!r}: {best[_PLAIN] * 1e3:.1f} ms; {_WITH_TYPING!r}: {best[_WITH_TYPING] * 1e3:.1f} ms")
    print(f"  typing adds {(best[_WITH_TYPING] - best[_PLAIN]) * 1e3:.1f} ms of wall time")
    print(f"  typing loaded by linkprobe.cli alone: {any('typing' in run for run in plain)}")
    print(f"  -X importtime: typing {min(run.get('typing', 0) for run in typed) / 1e3:.1f} ms cumulative")


if __name__ == "__main__":
    main()
