"""Base directories for scratch filesystems: where they go, and sweeping up after killed sessions."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from _fs_teardown import clean_base
from _mountinfo import find_mount

__all__ = ["BASE_PREFIX", "make_base_dir", "scratch_parent", "sweep_stale"]

#: Prefix of base directories created by ``make_base_dir``.
BASE_PREFIX = "linkprobe-fs-"


def scratch_parent() -> Path:
    """Where base directories go: /var/tmp unless that is a RAM filesystem.

    Images are sparse but still hold real data; on a tmpfs /tmp they would
    eat RAM, so prefer a disk-backed directory.
    """
    candidates = [Path("/var/tmp"), Path(tempfile.gettempdir())]
    existing = [c.resolve() for c in candidates if c.is_dir()]
    for candidate in existing:
        if find_mount(candidate).fstype not in ("tmpfs", "ramfs"):
            return candidate
    if not existing:
        raise FileNotFoundError("no /var/tmp or temp directory")
    return existing[0]


def make_base_dir(parent: Path | None = None) -> Path:
    """Create a fresh base directory; its name embeds our pid for sweep_stale()."""
    parent = parent if parent is not None else scratch_parent()
    base = Path(tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{os.getpid()}-", dir=parent))
    # mkdtemp makes 0700; 0755 lets run_as_nobody() tests reach scratch dirs.
    base.chmod(0o755)
    return base.resolve()


def _pid_alive(pid: int) -> bool:
    """True if *pid* is a running process (zombies count as dead).

    A SIGKILLed session can linger as a zombie until its parent reaps it,
    and os.kill(pid, 0) still succeeds on zombies.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave its files alone
    state = stat.rpartition(")")[2].split()[0]  # the command name may contain spaces
    return state not in ("Z", "X")


def sweep_stale(parent: Path | None = None) -> list[str]:
    """Clean base dirs left by sessions that died without cleanup (SIGKILL).

    Only touches ``linkprobe-fs-<pid>-*`` directories whose pid is gone, so
    concurrently running sessions are left alone.  Returns errors seen.
    """
    errors: list[str] = []
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return errors
    parent = parent if parent is not None else scratch_parent()
    pattern = re.compile(re.escape(BASE_PREFIX) + r"(\d+)-")
    for base in sorted(parent.glob(f"{BASE_PREFIX}*")):
        match = pattern.match(base.name)
        if match is None or not base.is_dir() or _pid_alive(int(match.group(1))):
            continue
        clean_base(base.resolve(), errors)
    return errors
