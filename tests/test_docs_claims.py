"""Claims of the docs that their examples do not show, tried the way a user meets them.

docs/cli.md: "Every error is one line on stderr that starts with ``linkprobe: error:``. There is never a
traceback", and exit 141 when "stdout was closed before linkprobe could write to it".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
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


_COUNT_PROBE = """
import os, sys, linkprobe
source, target = sys.argv[1:]
linkprobe.probe(source, target, cache=False)  # imports and first-use work happen here
for marker in ("/.linkprobe-test-start", None, "/.linkprobe-test-end"):
    if marker is None:
        linkprobe.probe(source, target, cache=False)
    else:
        try:
            os.stat(marker)  # a marker in the trace: it does not exist
        except FileNotFoundError:
            pass
"""


@pytest.mark.skipif(
    shutil.which("strace") is None and os.environ.get("LINKPROBE_REQUIRE_REAL_FS") != "1", reason="needs strace"
)
def test_user_guide_system_call_count_of_a_probe(tmp_path: Path) -> None:
    """user-guide.md, Costs: "about a dozen calls that create, link or remove a name" and "about N
    system calls in all on Linux"; measured between two markers, one probe, one directory to another."""
    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text().split())
    match = re.search(r"That is about (\d+) system calls in all on Linux", text)
    assert match, "the sentence moved: update this test"
    (tmp_path / "cache").mkdir()
    trace = tmp_path / "trace"
    subprocess.run(
        ["strace", "-o", trace, sys.executable, "-c", _COUNT_PROBE, tmp_path / "cache", tmp_path / "project" / ".venv"],
        check=True,
        timeout=60,
    )
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "/.linkprobe-test-start" in line)
    end = next(i for i, line in enumerate(lines) if "/.linkprobe-test-end" in line)
    calls = [line.split("(", 1)[0] for line in lines[start + 1 : end]]
    naming = [
        line
        for line in lines[start + 1 : end]
        if "O_EXCL" in line or line.startswith(("ioctl(", "copy_file_range(", "link(", "symlink(", "unlink("))
    ]
    assert 0.8 * int(match[1]) <= len(calls) <= 1.2 * int(match[1]), calls
    assert 9 <= len(naming) <= 15, naming  # "about a dozen"
