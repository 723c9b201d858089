"""The command line, ``linkprobe [COMMAND] ...``: one module per command (see :mod:`linkprobe.cli.main`)."""

from __future__ import annotations

from linkprobe.cli._common import EXIT_NO_MODE, EXIT_OK, EXIT_USAGE
from linkprobe.cli.main import main, main_exit

__all__ = ["EXIT_NO_MODE", "EXIT_OK", "EXIT_USAGE", "main", "main_exit"]
