"""The ``linkprobe audit`` examples in the docs are real output, byte counts included.

test_docs_examples.py runs every console block of the docs with sizes normalised; here the
blocks marked ``<!-- setup: audit-cache -->`` (ext4) or ``<!-- setup: audit-cache-btrfs -->``
are run again in a fresh directory holding the cache the user guide describes, and must match
exactly. ``$ cd`` lines are the filesystem's directory; ``$ cp`` lines run as they are.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
from test_docs_examples import make_audit_cache

DOCS = Path(__file__).resolve().parents[1] / "docs"
_EXAMPLE = re.compile(r"<!-- setup: audit-cache(-btrfs)? -->\n```console\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str, str]]:
    found = []
    for page in ("user-guide.md", "cli.md"):
        for index, match in enumerate(_EXAMPLE.finditer((DOCS / page).read_text())):
            found.append((f"{page}-{index}", "btrfs" if match.group(1) else "ext4", match.group(2)))
    return found


def replay(block: str, cwd: Path) -> str:
    """Run each ``$`` line of ``block``; return the block as it would be written now."""
    written = []
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        written.append(line)
        if argv[0] == "cd":
            continue  # the block's filesystem: ``cwd`` already
        if argv[0] == "linkprobe":
            argv = [sys.executable, "-m", "linkprobe", *argv[1:]]
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
        written.extend((result.stdout + result.stderr).splitlines())
    return "\n".join(written) + "\n"


def test_there_are_examples() -> None:
    assert {filesystem for _, filesystem, _ in examples()} == {"ext4", "btrfs"}


@pytest.mark.realfs
@pytest.mark.parametrize(("name", "filesystem", "block"), examples(), ids=[e[0] for e in examples()])
def test_example_is_real_output(name: str, filesystem: str, block: str, mounts: ScratchMounts) -> None:
    top = mounts.ext4() if filesystem == "ext4" else mounts.btrfs("a")
    make_audit_cache(top)
    assert replay(block, top) == block


@pytest.mark.realfs
def test_json_example_is_real_output(mounts: ScratchMounts) -> None:
    """docs/cli.md's JSON document, but for the ``probe`` value (absolute paths), which the
    page cuts out and says so."""
    block = re.search(r"<!-- audit-json-example -->\n```json\n(.*?)```", (DOCS / "cli.md").read_text(), re.DOTALL)
    assert block is not None
    top = mounts.ext4()
    make_audit_cache(top)
    subprocess.run(["cp", "-r", "cache", "venv"], cwd=top, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "linkprobe", "audit", "--format", "json", "cache", "venv"],
        cwd=top,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document.pop("probe")["best"] == "hardlink"
    shown = json.loads(block.group(1))
    assert shown.pop("probe") == {}
    assert shown == document
    assert json.dumps(shown, indent=2) == block.group(1).rstrip().replace(',\n  "probe": {}', "")
