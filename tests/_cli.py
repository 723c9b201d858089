"""The command line in this process: ``main(argv)`` with stdout and stderr captured."""

from __future__ import annotations

import contextlib
import io

from linkprobe.cli import main

__all__ = ["run_main"]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """The exit status, stdout and stderr of ``main(argv)``. argparse's own exits (``--help``,
    ``--version``, a usage error) give their status; any other SystemExit code counts as 1."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()
