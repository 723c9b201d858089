"""Measure what each working mode costs from SOURCE to TARGET on this machine:
time and disk.

``linkprobe bench SOURCE TARGET``: materialises a sample tree (synthetic, shaped like a
Python environment, or ``--sample DIR``) with every mode that works here, several rounds
each, in scratch directories named ``.linkprobe-…`` that are removed again, and prints the
figures and one line of advice. Exit codes as :func:`linkprobe.cli.main.exit_status`.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from linkprobe._bench_rules import (
    DEFAULT_FILES,
    DEFAULT_ROUNDS,
    bar,
    format_bytes,
    format_count,
    format_seconds,
)
from linkprobe.cli._common import EXIT_NO_MODE, EXIT_OK, Terminated, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, TextIO

    from linkprobe.benchmarking import BenchResult, ModeBench

__all__ = ["configure", "run"]

_FORMATS: Final[tuple[str, ...]] = ("text", "json")
#: Cells of the longest bar (the slowest mode).
_BAR_WIDTH: Final[int] = 30
#: The order of the table: auto's preference, then symlink (which auto never picks).
_ROW_ORDER: Final[tuple[str, ...]] = ("clone", "hardlink", "copy", "symlink")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    """The bench command's arguments."""
    parser.add_argument("source", metavar="SOURCE", help="directory files come from, e.g. a cache")
    parser.add_argument("target", metavar="TARGET", help="directory files go to; may not exist yet (never created)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--files",
        metavar="N",
        type=_positive,
        help=f"files in the synthetic sample (default {DEFAULT_FILES:,}), shaped like a Python environment",
    )
    what.add_argument(
        "--sample",
        metavar="DIR",
        help="materialise this real tree instead (only read; copied under SOURCE first when on another filesystem)",
    )
    parser.add_argument(
        "--rounds",
        metavar="N",
        type=_positive,
        default=DEFAULT_ROUNDS,
        help=f"timed rounds per mode (default {DEFAULT_ROUNDS}); more rounds, steadier figures",
    )
    parser.add_argument("--seed", metavar="N", type=_seed, default=0, help="seed of the synthetic sample (default 0)")
    parser.add_argument(
        "--scale-to",
        metavar="DIR",
        help="also project the figures to the files and bytes of DIR (e.g. the whole cache)",
    )
    parser.add_argument("--format", choices=_FORMATS, default="text", help="text (default) or json")


class _Progress:
    """One line on stderr, rewritten in place; only on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, message: str) -> None:
        write(self.stream, f"\r\033[Klinkprobe bench: {message}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises Terminated, so that bench's ``finally`` removes its scratch trees.

    Unlike the probe command, the signals are not held for the whole run (seconds long):
    bench holds them itself around each step that creates or removes a scratch name.
    """

    def on_term(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _encodable(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _row(entry: ModeBench) -> str:
    if entry.seconds is None:
        code = f" [{entry.errno_name}]" if entry.errno_name else ""
        return f"  {entry.mode.value:<9} not timed ({entry.status}){code}: {entry.reason}"
    disk = "?" if entry.disk_bytes is None else format_bytes(entry.disk_bytes)
    return (
        f"  {entry.mode.value:<9} {format_seconds(entry.seconds):>9} {format_seconds(entry.median_seconds or 0.0):>9}"
        f" {format_count(entry.files_per_second or 0.0):>10} {(entry.bytes_per_second or 0.0) / 1e6:>8.1f}"
        f" {disk:>9}"
    )


def _render_text(result: BenchResult, out: TextIO, block: str) -> None:
    sample = result.sample
    origin = {
        "synthetic": f"synthetic, shaped like a Python environment (seed {sample.seed})",
        "sample": f"{sample.path}{', copied to the source side first' if sample.copied else ''}",
        "existing": f"{sample.path} (the source takes no new files: an existing tree there)",
    }[sample.origin]
    source, target = result.source, result.target
    lines = [
        f"source: {source.given} ({source.fstype}, mount {source.mount_point})",
        f"target: {target.given} ({target.fstype}, mount {target.mount_point})",
        f"sample: {format_count(sample.files)} files, {format_bytes(sample.bytes)}: {origin}",
        f"rounds: {result.rounds} per mode; min and median wall time",
        "",
        f"  {'mode':<9} {'min':>9} {'median':>9} {'files/s':>10} {'MB/s':>8} {'disk':>9}",
    ]
    by_name = {entry.mode.value: entry for entry in result.modes}
    rows = [by_name[name] for name in _ROW_ORDER]
    lines.extend(_row(entry) for entry in rows if entry.seconds is not None)
    lines.extend(_row(entry) for entry in rows if entry.seconds is None)
    timed = [entry for entry in rows if entry.seconds is not None]
    if timed:
        slowest = max(entry.seconds or 0.0 for entry in timed)
        lines.append("")
        for entry in timed:
            seconds = entry.seconds or 0.0
            cells = bar(seconds, slowest, _BAR_WIDTH).replace("█", block)
            lines.append(f"  {entry.mode.value:<9} {cells:<{_BAR_WIDTH}} {format_seconds(seconds)}")
    if result.scale is not None:
        scale = result.scale
        lines.append("")
        lines.append(
            f"scaled to {scale.path} ({format_count(scale.files)} files, {format_bytes(scale.bytes)}; "
            "a straight line from this sample, not a measurement):"
        )
        for scaled in scale.modes:
            disk = "?" if scaled.disk_bytes is None else format_bytes(scaled.disk_bytes)
            lines.append(f"  {scaled.mode.value:<9} {format_seconds(scaled.seconds):>9}, disk {disk}")
    machine = result.machine
    lines.append("")
    lines.append(
        f"machine: {machine.os} {machine.kernel} {machine.arch}, {machine.cpus} CPUs, Python {machine.python}, "
        f"{machine.date}"
    )
    lines.append(result.advice)
    out.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print it; 1 when no mode could be timed at all."""
    from linkprobe.benchmarking import bench

    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    try:
        with _sigterm_unwinds():
            result = bench(
                args.source,
                args.target,
                files=args.files,
                sample=args.sample,
                rounds=args.rounds,
                seed=args.seed,
                scale_to=args.scale_to,
                progress=progress,
            )
    finally:
        if progress is not None:
            progress.clear()
    out = io.StringIO()  # rendered whole, then written once
    if args.format == "json":
        import json

        out.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        _render_text(result, out, "█" if _encodable(sys.stdout, "█") else "#")
    write(sys.stdout, out.getvalue())
    return EXIT_OK if any(entry.timed for entry in result.modes) else EXIT_NO_MODE
