"""External commands (mkfs, mount, losetup) with failures that say what ran and what it printed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["CommandError", "run", "which"]

# environment may not; mkfs.* and losetup live there.
_TOOL_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


class CommandError(RuntimeError):
    """An external command failed; the message carries the command and stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exit status {returncode}"
        super().__init__(f"command failed ({status}): {shlex.join(self.cmd)}\n{stderr.strip()}")


def which(tool: str) -> str | None:
    """Find *tool* on PATH, falling back to the usual sbin directories."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_TOOL_DIRS])
    return shutil.which(tool, path=search)


def run(cmd: Sequence[str | os.PathLike[str]], *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run *cmd*; raise ``CommandError`` (with command and stderr) on failure."""
    argv = [os.fspath(part) for part in cmd]
    exe = argv[0] if os.path.isabs(argv[0]) else which(argv[0])
    if exe is None:
        raise CommandError(argv, 127, f"{argv[0]}: not found")
    # LC_ALL=C keeps error messages stable and English for the exception text.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        return subprocess.run(
            [exe, *argv[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise CommandError(argv, exc.returncode, exc.stderr or exc.stdout or "") from None
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        raise CommandError(argv, None, err) from None
