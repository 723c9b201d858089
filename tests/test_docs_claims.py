"""Claims of the docs that their examples do not show, tried the way a user meets them.

docs/cli.md: "Every error is one line on stderr that starts with ``linkprobe: error:``. There is never a
traceback", and exit 141 when "stdout was closed before linkprobe could write to it".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _mounts import ScratchMounts
from test_scenarios import SCENARIOS

from linkprobe import LinkMode, probe

_NO_DEV_FULL = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


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


@_NO_DEV_FULL
def test_a_full_stdout_is_one_error_line() -> None:
    done = shell(">/dev/full", "/tmp", "/tmp")
    assert done.returncode == 1
    assert done.stderr.startswith("linkprobe: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.xfail(
    strict=True,
    reason="an OSError without a file name is worded 'No space left on device ()': an empty '()' is printed",
)
@_NO_DEV_FULL
def test_an_error_without_a_file_name_has_no_empty_parentheses() -> None:
    done = shell(">/dev/full", "/tmp", "/tmp")
    assert not done.stderr.rstrip("\n").endswith("()"), done.stderr


@pytest.mark.realfs
def test_user_guide_counts_where_the_device_rule_is_wrong(mounts: ScratchMounts) -> None:
    """user-guide.md: in N scenarios, "same st_dev -> hardlink, else copy" picks another mode in M."""
    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text().split())
    match = re.search(
        r"In the (\d+) scenarios of `tests/test_scenarios.py`, .*? picks another mode than linkprobe in (\d+)",
        text,
        re.DOTALL,
    )
    assert match, "the sentence moved: update this test"
    wrong = []
    for scenario in SCENARIOS:
        source, target = scenario.build(mounts)
        result = probe(source, target, cache=False)
        by_device = LinkMode.HARDLINK if result.same_device else LinkMode.COPY
        if by_device is not result.best:
            wrong.append(f"{scenario.name}: {by_device.value} instead of {result.best}")
    assert (int(match[1]), int(match[2])) == (len(SCENARIOS), len(wrong)), wrong
