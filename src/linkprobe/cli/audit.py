"""Say what an installer did: how each file under TARGET relates to SOURCE,
and what it costs.

``linkprobe audit SOURCE TARGET``: a table of hardlinks, clones, symlinks, copies and other
files under TARGET (an installed tree) against SOURCE (the cache it came from), and one line
of advice. Exit codes as :func:`linkprobe.cli.main.exit_status`; ``--expect MODE`` adds 1
when files that could be MODE are not.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from linkprobe._audit_rules import not_as_expected
from linkprobe.auditing import Audit, audit
from linkprobe.cli._common import DEFAULT_ENV, EXIT_NO_MODE, EXIT_OK, Terminated, one_line, write
from linkprobe.modes import VALID_WORDS, LinkMode, parse_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, TextIO

__all__ = ["advice", "configure", "human_bytes", "render_text", "run"]

_FORMATS: Final[tuple[str, ...]] = ("text", "json")
#: Progress shows only when the walk has taken this long (a small tree prints nothing).
PROGRESS_AFTER: Final[float] = 0.5
_PROGRESS_EVERY: Final[float] = 0.1
_PHASES: Final[dict[str, str]] = {"index": "reading SOURCE", "walk": "reading TARGET"}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """The audit command's arguments."""
    parser.add_argument("source", metavar="SOURCE", help="the cache the files came from, e.g. uv's cache directory")
    parser.add_argument("target", metavar="TARGET", help="the installed tree to audit, e.g. a .venv or node_modules")
    parser.add_argument("--format", choices=_FORMATS, default="text", help="a table and advice (default), or json")
    parser.add_argument(
        "--expect",
        metavar="MODE",
        help=f"exit 1 when files that could be MODE are not ({', '.join(VALID_WORDS)}; auto: the best mode here)",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        default=DEFAULT_ENV,
        help=f"the variable the advice tells you to set, e.g. UV_LINK_MODE (default {DEFAULT_ENV})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up waiting for a filesystem that does not answer the probe after SECONDS",
    )


def human_bytes(count: int) -> str:
    """Decimal units, as ``du --si``: 999 B, 1.2 kB, 212 MB."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.5 or unit == "PB":
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def advice(result: Audit, env: str) -> str:
    """One line: what was found, and what to do about it."""
    kinds = result.kinds
    files = result.files
    linked = kinds["hardlink"].files + kinds["clone"].files + kinds["symlink"].files
    best = result.best
    if files == 0:
        return "TARGET holds no files: nothing to audit."
    if result.duplicated_files:
        copies = (
            f"{result.duplicated_files:,} of {files:,} files are copies of files in SOURCE "
            f"({human_bytes(result.duplicated_bytes)})"
        )
        if best in (LinkMode.CLONE, LinkMode.HARDLINK):
            unset = " (or leave it unset: auto picks it)" if env == DEFAULT_ENV else ""
            return (
                f"{copies}; {best.value} works here and would save {human_bytes(result.savable_bytes)}: "
                f"set {env}={best.value}{unset}"
            )
        return f"{copies}; only copy works between these directories, so there is nothing to save here"
    if linked:
        parts = ", ".join(
            f"{kind} {kinds[kind].files:,}" for kind in ("hardlink", "clone", "symlink") if kinds[kind].files
        )
        line = f"The {linked:,} files SOURCE holds are linked ({parts}): nothing to save"
        if kinds["copy"].files:
            line += f"; the {kinds['copy'].files:,} copies are not files of SOURCE"
        return line
    if kinds["copy"].files:
        return (
            f"No file under TARGET is linked to SOURCE and none of its {kinds['copy'].files:,} copies "
            "matches a file in SOURCE: is SOURCE the cache TARGET was installed from?"
        )
    return f"Nothing under TARGET is linked to SOURCE or copied from it ({files:,} other files)."


def render_text(result: Audit, env: str, out: TextIO) -> None:
    """The table and the advice line."""
    probe = result.probe
    lines = [
        # one_line: a line break in a directory name must not break the table
        f"source: {one_line(result.source)} ({probe.source.fstype or 'unknown filesystem'})",
        f"target: {one_line(result.target)} ({probe.target.fstype or 'unknown filesystem'})",
        f"{'kind':<10}{'files':>10}{'bytes':>11}",
    ]
    for kind, total in result.kinds.items():
        note = ""
        if kind == "copy" and result.duplicated_files:
            note = f"  {result.duplicated_files:,} also in SOURCE ({human_bytes(result.duplicated_bytes)})"
        elif kind == "other" and result.other_reasons:
            note = "  " + ", ".join(f"{reason} {part.files:,}" for reason, part in result.other_reasons.items())
        lines.append(f"{kind:<10}{total.files:>10,}{human_bytes(total.bytes):>11}{note}")
    lines.append(f"{'total':<10}{result.files:>10,}{human_bytes(result.bytes):>11}")
    works = [verdict.mode.value for verdict in probe.verdicts if verdict.supported]
    lines.append(f"works here: {', '.join(works) or 'nothing'}; best: {result.best.value if result.best else 'none'}")
    unknown = result.other_reasons.get("clones-unknown")
    if unknown is not None:
        lines.append(
            f"note: this system cannot tell clones from copies here ({unknown.files:,} files counted as other)"
        )
    lines.append(advice(result, env))
    out.write("\n".join(lines) + "\n")


class _Progress:
    """``reading TARGET: 12,000 entries`` on stderr, overwritten in place, once the walk
    has taken PROGRESS_AFTER seconds, on a terminal only; ``clear()`` removes it."""

    def __init__(self, stream: TextIO, clock: Any = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.last = 0.0
        self.shown = False

    def __call__(self, phase: str, entries: int) -> None:
        now = self.clock()
        if now - self.started < PROGRESS_AFTER or now - self.last < _PROGRESS_EVERY:
            return
        self.last = now
        self.shown = True
        self.stream.write(f"\r\x1b[Klinkprobe audit: {_PHASES.get(phase, phase)}: {entries:,} entries")
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises Terminated, so the probe's ``finally`` removes its scratch files.
    Signals are not blocked (unlike the probe command's few milliseconds): a long walk must
    stay interruptible."""

    def on_term(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    """Audit, print the report in ``args.format``; 1 when ``--expect`` does not hold."""
    expected_word = args.expect
    expected = parse_mode(expected_word, source="--expect") if expected_word is not None else None
    progress = _Progress(sys.stderr) if _is_terminal(sys.stderr) else None
    try:
        with _sigterm_unwinds():
            result = audit(args.source, args.target, progress=progress, timeout=args.timeout)
    finally:
        if progress is not None:
            progress.clear()
    if expected_word is not None and expected is None:
        expected = result.best  # --expect auto: the best mode of this pair
    linked = {kind: total.files for kind, total in result.kinds.items()}
    missing = not_as_expected(expected, linked, result.duplicated_files) if expected is not None else 0
    out = io.StringIO()
    if args.format == "json":
        import json  # only here: ~2 ms of start-up that the text format does not need

        document = result.to_dict()
        if expected_word is not None:
            document["expect"] = {
                "mode": expected.value if expected else None,
                "not_as_expected": missing,
                "ok": expected is not None and missing == 0,
            }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        render_text(result, args.env, out)
    write(sys.stdout, out.getvalue())
    if expected_word is None:
        return EXIT_OK
    if expected is None:
        sys.stderr.write("linkprobe: error: --expect auto: no mode works between SOURCE and TARGET\n")
        return EXIT_NO_MODE
    if missing:
        counts = ", ".join(
            f"{kind} {count:,}"
            for kind, count in (
                ("hardlink", linked["hardlink"]),
                ("clone", linked["clone"]),
                ("symlink", linked["symlink"]),
                ("copy held twice", result.duplicated_files),
            )
            if count and kind != expected.value and not (kind.startswith("copy") and expected is LinkMode.COPY)
        )
        could = linked["hardlink"] + linked["clone"] + linked["symlink"] + result.duplicated_files
        message = f"expected {expected.value}: {missing:,} of the {could:,} files SOURCE holds are not ({counts})"
        sys.stderr.write(f"linkprobe: error: {one_line(message)}\n")
        return EXIT_NO_MODE
    return EXIT_OK
