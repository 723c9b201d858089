"""link_tree and link under a umask that takes the owner's own bits (0o277, 0o477), as a
user who is not root: what ``cp -r`` (coreutils, the ground truth) makes under the same
umask, and nothing left behind when the call fails."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fs_nobody import run_as_nobody

from linkprobe import LinkMode
from linkprobe._undo import Run
from linkprobe._walk import make_directory

pytestmark = pytest.mark.realfs


def _program(umask: int, call: str) -> str:
    return (
        "import json, os, sys\n"
        "from linkprobe import Linker, LinkMode, LinkprobeError\n"
        f"os.umask({umask:#o})\n"
        "try:\n"
        f"    {call}\n"
        "    print('ok')\n"
        "except LinkprobeError as exc:\n"
        "    print(json.dumps([exc.errno, list(exc.not_removed)]))\n"
    )


@pytest.fixture
def top() -> Iterator[Path]:
    """A directory nobody may write in, holding a source tree owned by root that everybody
    may read (as a shared cache's is)."""
    path = Path(tempfile.mkdtemp(prefix="linker-umask-", dir="/tmp"))  # nobody can reach /tmp
    try:
        path.chmod(0o777)
        source = path / "cache"
        for relative, content in {
            "pkg/__init__.py": b"",
            "pkg/sub/deep/mod.py": b"x = 1\n",
            "pkg/sub/data.bin": bytes(range(256)) * 40,
            "tool.so": b"\x7fELF",
        }.items():
            file = source / relative
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content)
        (source / "tool.so").chmod(0o755)
        for directory, _, files in os.walk(source):
            os.chmod(directory, 0o755)  # noqa: S103 - everybody may read a shared cache
            for name in files:
                file = Path(directory, name)
                file.chmod(stat.S_IMODE(file.stat().st_mode) | 0o444)
        yield path
    finally:
        shutil.rmtree(path)  # as root: no mode bit of the 0o500 directories stops it


def _tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """{relative path: (mode bits, content of a regular file)}, read as root (whom no mode
    bit stops)."""
    found: dict[str, tuple[int, bytes | None]] = {".": (stat.S_IMODE(root.stat().st_mode), None)}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory, name)
            info = path.lstat()
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), content)
    return found


@pytest.mark.parametrize("umask", [0o277, 0o477, 0o077], ids=oct)
def test_link_tree_copy_gives_what_cp_r_gives(top: Path, umask: int) -> None:
    source = top / "cache"
    done = run_as_nobody(
        [
            sys.executable,
            "-c",
            _program(umask, f"Linker(LinkMode.COPY).link_tree({str(source)!r}, {str(top / 'out')!r})"),
        ]
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", ""), done.stderr
    cp = run_as_nobody(["sh", "-c", f'umask {umask:03o}; exec cp -r "$0" "$1"', source, top / "by-cp"])
    assert (cp.returncode, cp.stderr) == (0, "")
    made, by_cp = _tree(top / "out"), _tree(top / "by-cp")
    assert made.keys() == by_cp.keys()
    # Directories: the umask's modes, as cp -r leaves them.
    directories = {path for path, (_, content) in by_cp.items() if content is None}
    assert {path: made[path][0] for path in directories} == {path: by_cp[path][0] for path in directories}
    assert made["."][0] == 0o777 & ~umask
    # Files: the same bytes. Their bits are the source's (linkprobe keeps the executable bit
    # whatever the umask, as uv and pip do; cp -r applies the umask to files too).
    assert {path: entry[1] for path, entry in made.items()} == {path: entry[1] for path, entry in by_cp.items()}
    assert made["tool.so"][0] == 0o755


def test_link_into_new_parents_under_umask_0o277(top: Path) -> None:
    source = top / "cache" / "pkg" / "sub" / "deep" / "mod.py"
    target = top / "out" / "a" / "b" / "mod.py"
    done = run_as_nobody(
        [sys.executable, "-c", _program(0o277, f"Linker(LinkMode.COPY).link({str(source)!r}, {str(target)!r})")]
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", ""), done.stderr
    for directory in (top / "out", top / "out" / "a", top / "out" / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o500, directory
    assert target.read_bytes() == source.read_bytes()


def test_a_failure_under_umask_0o277_leaves_nothing(top: Path) -> None:
    """A file nobody may not read, deep in the tree: the copy fails with EACCES after
    directories were made and filled; every one of them is removed again."""
    secret = top / "cache" / "pkg" / "sub" / "deep" / "secret.py"
    secret.write_bytes(b"root's\n")
    secret.chmod(0o600)
    done = run_as_nobody(
        [
            sys.executable,
            "-c",
            _program(0o277, f"Linker(LinkMode.COPY).link_tree({str(top / 'cache')!r}, {str(top / 'out')!r})"),
        ]
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [13, []]  # EACCES, nothing left over
    assert not (top / "out").exists()


def test_a_umask_that_keeps_the_owner_s_bits_costs_no_syscall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_stat, real_chmod = os.stat, os.chmod

    def counted_stat(*args: object, **kwargs: object) -> os.stat_result:
        calls.append("stat")
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    def counted_chmod(*args: object, **kwargs: object) -> None:
        calls.append("chmod")
        real_chmod(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counted_stat)
    monkeypatch.setattr(os, "chmod", counted_chmod)
    run = Run(umask=0o022)
    assert make_directory(str(tmp_path / "new"), run.tally(), LinkMode.COPY, str(tmp_path), run)
    assert calls == []
    assert run.final_modes == []


def test_an_unknown_umask_is_looked_at_on_the_new_directory(tmp_path: Path) -> None:
    previous = os.umask(0o277)
    try:
        run = Run(umask=None)
        assert make_directory(str(tmp_path / "new"), run.tally(), LinkMode.COPY, str(tmp_path), run)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700  # writable while the call runs
    assert run.final_modes == [(str(tmp_path / "new"), 0o500)]
    run.restore_modes()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o500
    assert run.final_modes == []
    (tmp_path / "new").chmod(0o700)
