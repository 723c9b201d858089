"""Running a command as an unprivileged user, to see what a non-root user of linkprobe meets."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Any

from _commands import which

__all__ = ["run_as_nobody"]


def run_as_nobody(argv: Sequence[str | os.PathLike[str]], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run *argv* as nobody:nogroup with no supplementary groups.

    The environment is minimal but keeps PATH and PYTHONPATH (so
    ``python -m linkprobe`` still resolves); ``env=`` in *kw* is merged on
    top.  Defaults: capture_output=True, text=True, check=False, cwd="/"
    (nobody usually cannot enter root's cwd).  Raises FileNotFoundError if
    neither setpriv nor runuser exists.
    """
    setpriv = which("setpriv")
    if setpriv is not None:
        prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    else:
        runuser = which("runuser")
        if runuser is None:
            raise FileNotFoundError("neither setpriv nor runuser is installed")
        prefix = [runuser, "-u", "nobody", "-g", "nogroup", "--"]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C.UTF-8",
        # nobody cannot write __pycache__ next to root-owned sources anyway.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(kw.pop("env", None) or {})
    check = bool(kw.pop("check", False))
    options: dict[str, Any] = {"capture_output": True, "text": True, "cwd": "/"}
    options.update(kw)
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [*prefix, *(os.fspath(arg) for arg in argv)], check=check, env=env, **options
    )
    return result
