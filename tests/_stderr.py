"""What linkprobe's stderr must look like on failure: one ``linkprobe: error:`` line,
after argparse's usage (only for usage errors, which print it first)."""

from __future__ import annotations

import re

#: argparse's usage: "usage: ..." and its indented continuation lines.
_USAGE = re.compile(r"\Ausage: [^\n]*\n(?:[ \t]+[^\n]*\n)*")


def error_line(err: str) -> str:
    """The one error line of ``err``; fails the test if stderr holds anything else."""
    rest = _USAGE.sub("", err, count=1)
    assert rest.startswith("linkprobe: error: "), err
    assert rest.endswith("\n"), err
    assert rest.count("\n") == 1, err
    return rest.removesuffix("\n")
