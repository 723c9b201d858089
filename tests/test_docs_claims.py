"""Claims of docs/cli.md that its examples do not show, tried the way a user meets them.

"Every error is one line on stderr that starts with ``linkprobe: error:``. There is never a
traceback", and exit 141 when "stdout was closed before linkprobe could write to it".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def shell(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m linkprobe ARGS REDIRECT`` under bash, stderr captured."""
    command = f'"$0" -m linkprobe {" ".join(args)} {redirect}'
    env = {key: value for key, value in os.environ.items() if key != "LINKPROBE_MODE"}
    return subprocess.run(
        ["bash", "-c", command, sys.executable],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.xfail(
    strict=True,
    reason="with fd 1 closed (>&-), sys.stdout is None and cli/_common.write raises AttributeError: a traceback",
)
def test_a_closed_stdout_is_silent_and_exits_141() -> None:
    done = shell(">&-", "/tmp", "/tmp")
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, done.stderr) == (141, "")


def test_a_full_stdout_is_one_error_line() -> None:
    done = shell(">/dev/full", "/tmp", "/tmp")
    assert done.returncode == 1
    assert done.stderr.startswith("linkprobe: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.xfail(
    strict=True,
    reason="an OSError without a file name is worded 'No space left on device ()': an empty '()' is printed",
)
def test_an_error_without_a_file_name_has_no_empty_parentheses() -> None:
    done = shell(">/dev/full", "/tmp", "/tmp")
    assert not done.stderr.rstrip("\n").endswith("()"), done.stderr
