"""Emptying what a test put on the session's shared scratch filesystems.

The shared ext4 is 64 MiB with about 16,000 inodes, and lives for the whole session: tests that
install real packages there (a uv cache and venv, a pnpm store and node_modules) must remove what
they made, or later tests find the filesystem full.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def empty(*directories: Path) -> None:
    """Remove everything inside each directory, keeping the directory (it may be a mount point)."""
    for directory in directories:
        if not directory.is_dir():
            continue
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
