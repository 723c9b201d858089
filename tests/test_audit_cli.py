"""``linkprobe audit`` as a process: exit codes, one-line errors, JSON, ``--expect``, ``--env``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
from _fs_nobody import run_as_nobody


def linkprobe(*argv: str | Path | bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", "audit", *argv],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=False,
        timeout=60,
    )


def tree(top: Path, how: str) -> tuple[Path, Path]:
    """A small cache, and a target made from it by ``cp`` with ``how``."""
    source = top / "cache"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.py").write_bytes(b"a" * 5000)
    (source / "pkg" / "b.py").write_bytes(b"b" * 7000)
    target = top / "venv"
    result = subprocess.run(["cp", *how.split(), source, target], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return source, target


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("linkprobe: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_target_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    assert_one_line_error(linkprobe(tmp_path / "cache", tmp_path / "nope"), 2, "target does not exist")


def test_missing_source_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    assert_one_line_error(linkprobe(tmp_path / "nope", tmp_path / "venv"), 2, "source does not exist")


def test_target_a_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "file").touch()
    assert_one_line_error(linkprobe(tmp_path / "cache", tmp_path / "file"), 2, "target is not a directory")


def test_a_symlink_loop_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    (tmp_path / "loop").symlink_to("loop")
    assert_one_line_error(linkprobe(tmp_path / "loop", tmp_path / "venv"), 2, "symlink loop")


def test_the_same_directory_twice_is_bad_input(tmp_path: Path) -> None:
    assert_one_line_error(linkprobe(tmp_path, tmp_path), 2, "same directory")


def test_a_bad_expect_word_is_bad_input(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-al")
    assert_one_line_error(linkprobe("--expect", "hardlinks", source, target), 2, "invalid --expect 'hardlinks'")


def test_a_missing_name_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    name = os.fsdecode(bytes(tmp_path / "venv") + b"-\xff\xfe")
    assert_one_line_error(linkprobe(tmp_path / "cache", name), 2, "target does not exist", "\\udcff")


def test_names_that_are_not_utf8_inside_target_are_audited(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-al")
    os.link(source / "pkg" / "a.py", os.fsencode(target) + b"/caf\xe9.py")
    result = linkprobe("--format", "json", source, target)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kinds"]["hardlink"]["files"] == 3
    assert "caf\udce9.py" in document["examples"]["hardlink"]
    text = linkprobe(source, target)
    assert text.returncode == 0, text.stderr


@pytest.mark.realfs
def test_an_unreadable_target_is_bad_input(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    source, target = tree(top, "-al")
    target.chmod(0o700)
    assert_one_line_error(run_as_nobody([sys.executable, "-m", "linkprobe", "audit", source, target]), 2, "target")


@pytest.mark.realfs
def test_an_unreadable_directory_inside_target_is_an_io_failure(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    source, target = tree(top, "-al")
    for path in (top, source, target):
        path.chmod(0o755)
    (target / "pkg").chmod(0o700)
    result = run_as_nobody([sys.executable, "-m", "linkprobe", "audit", source, target])
    assert_one_line_error(result, 1, "Permission denied", str(target / "pkg"))


def test_expect_hardlink_holds_for_cp_al(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-al")
    result = linkprobe("--expect", "hardlink", source, target)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "The 2 files SOURCE holds are linked (hardlink 2): nothing to save" in result.stdout


def test_expect_hardlink_fails_for_copies_with_the_counts(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-r")
    result = linkprobe("--expect", "hardlink", source, target)
    assert result.returncode == 1
    assert result.stderr == (
        "linkprobe: error: expected hardlink: 2 of the 2 files SOURCE holds are not (copy held twice 2)\n"
    )
    assert "copy               2      12 kB  2 also in SOURCE (12 kB)" in result.stdout.splitlines()


def test_expect_copy_holds_for_copies_and_auto_means_the_best_mode(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-r")
    assert linkprobe("--expect", "copy", source, target).returncode == 0
    auto = linkprobe("--expect", "auto", "--format", "json", source, target)
    assert auto.returncode == 1  # hardlink works on one filesystem; these are copies
    assert json.loads(auto.stdout)["expect"] == {"mode": "hardlink", "not_as_expected": 2, "ok": False}


def test_env_names_the_variable_in_the_advice(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-r")
    result = linkprobe("--env", "UV_LINK_MODE", source, target)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last == (
        "2 of 2 files are copies of files in SOURCE (12 kB); hardlink works here and would save 12 kB: "
        "set UV_LINK_MODE=hardlink"
    )


def test_json_document(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-r")
    result = linkprobe("--format", "json", source, target)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1
    assert document["source"] == str(source)
    assert document["target"] == str(target)
    assert (document["files"], document["bytes"]) == (2, 12000)
    assert document["kinds"]["copy"] == {"files": 2, "bytes": 12000}
    assert (document["duplicated_bytes"], document["savable_bytes"], document["best"]) == (12000, 12000, "hardlink")
    assert document["examples"]["copy"] == ["pkg/a.py", "pkg/b.py"]
    assert "expect" not in document
    assert document["probe"]["best"] == "hardlink"


def test_help_lists_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "linkprobe", "--help"], capture_output=True, text=True, check=False)
    assert "audit" in result.stdout
    own = linkprobe("--help")
    assert own.returncode == 0
    assert "--expect MODE" in own.stdout


def test_help_fits_in_80_columns() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "linkprobe", "audit", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout


def test_a_line_break_in_a_name_stays_on_its_line(tmp_path: Path) -> None:
    source, target = tree(tmp_path, "-al")
    odd = tmp_path / "two\nlines"
    target.rename(odd)
    result = linkprobe(source, odd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"target: {tmp_path}/two\\nlines (")
    assert len(lines) == 11
