"""The Linker never hurts the source and leaves the target as it was when it fails: on
loop-mounted ext4, btrfs and XFS, tmpfs, bind mounts and tiny filesystems that fill up.

Every test compares snapshots, entry by entry: type, permission bits, inode, link count,
size, mtime (directories included where nothing may be written) and content (a SHA-256
of a file, the text of a symlink).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _commands import run
from _fs_build import ScratchMounts

from linkprobe import Linker, LinkFailedError, LinkMode, LinkprobeError, UnsupportedModeError

pytestmark = pytest.mark.realfs

Snapshot = dict[str, tuple[object, ...]]


def snapshot(root: Path, *, directory_times: bool = True) -> Snapshot:
    """Every entry under ``root`` (not following symlinks), keyed by its relative path."""
    entries: Snapshot = {}
    for directory, dirnames, filenames in os.walk(root):
        for path in [directory, *(os.path.join(directory, name) for name in dirnames + filenames)]:
            info = os.lstat(path)
            content: object = None
            if stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            is_dir = stat.S_ISDIR(info.st_mode)
            mtime = info.st_mtime_ns if directory_times or not is_dir else None
            entries[os.path.relpath(path, root)] = (
                stat.S_IFMT(info.st_mode),
                stat.S_IMODE(info.st_mode),
                info.st_ino,
                info.st_nlink if not is_dir else None,
                info.st_size if not is_dir else None,
                mtime,
                content,
            )
    return entries


def make_source(root: Path, *, files: int = 30, size: int = 3000) -> Path:
    """A small cache: files at the top and in nested packages, an executable, a symlink."""
    for index in range(files):
        package = root / f"pkg{index % 3}" / ("sub" if index % 2 else "")
        package.mkdir(parents=True, exist_ok=True)
        (package / f"m{index:02d}.py").write_bytes(os.urandom(size + index))
    (root / "top.py").write_bytes(b"print('top')\n")
    tool = root / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_bytes(b"#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    return root


def filesystem(mounts: ScratchMounts, kind: str) -> Path:
    if kind == "tmpfs":
        return mounts.tmpfs()
    if kind == "ext4":
        return mounts.ext4()
    if kind == "btrfs":
        return mounts.btrfs("a")
    return mounts.xfs(reflink=True)


def assert_refused(linker: Linker, source: Path, target: str | Path) -> LinkprobeError:
    with pytest.raises(ValueError, match="cannot mirror") as raised:
        linker.link_tree(source, target)
    error = raised.value
    assert isinstance(error, LinkprobeError)
    assert type(error).__name__ == "TargetInsideSourceError"
    message = str(error)
    assert "\n" not in message
    assert str(source) in message
    assert str(target) in message
    return error


# -- a target inside the source is refused before anything is written -------------------------------

_CASES: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {
    # name: (place, source) -> (source to pass, target to pass)
    "inside, not there yet": lambda place, src: (src, str(src / "pkg0" / "inner")),
    "the source itself": lambda place, src: (src, str(src)),
    "an existing subdirectory": lambda place, src: (src, str(src / "pkg1")),
    "several levels not there yet": lambda place, src: (src, str(src / "new" / "a" / "b")),
    "with ..": lambda place, src: (src, str(src / "pkg0" / ".." / "pkg2" / "x")),
    "through a symlink to the source": lambda place, src: (src, str(_symlink(place / "alias", src) / "venv")),
    "through a symlink to a subdirectory": lambda place, src: (
        src,
        str(_symlink(place / "elsewhere-link", src / "pkg2") / "venv"),
    ),
    "the source given through a symlink": lambda place, src: (_symlink(place / "cache-link", src), str(src / "x")),
    "relative": lambda place, src: (src, os.path.relpath(src / "pkg0" / "rel", Path.cwd())),
}


def _symlink(link: Path, to: Path) -> Path:
    link.symlink_to(to)
    return link


@pytest.mark.parametrize("kind", ["tmpfs", "ext4", "btrfs", "xfs"])
@pytest.mark.parametrize("case", list(_CASES))
@pytest.mark.parametrize("mode", [None, "hardlink", "copy"])
def test_a_target_inside_the_source_is_refused_before_anything_is_written(
    mounts: ScratchMounts, kind: str, case: str, mode: str | None
) -> None:
    place = filesystem(mounts, kind)
    source = make_source(place / "cache")
    given_source, target = _CASES[case](place, source)
    before, around = snapshot(source), snapshot(place)
    linker = Linker(mode, env=None)
    assert_refused(linker, given_source, target)
    assert snapshot(source) == before  # byte for byte, entry for entry, directory mtimes too
    assert snapshot(place) == around
    assert linker.fallbacks == ()
    assert linker.mode is None  # refused before the probe wrote its scratch files


def test_a_bind_mount_of_the_source_is_the_source(mounts: ScratchMounts) -> None:
    """Another path, the same directory: realpath cannot see it, (st_dev, st_ino) can."""
    place = mounts.ext4()
    source = make_source(place / "cache")
    alias = mounts.bind(source)
    before = snapshot(source)
    for target in (alias, alias / "venv", alias / "pkg0" / "venv"):
        error = assert_refused(Linker(env=None), source, target)
        assert "bind mount" in str(error)
    assert snapshot(source) == before


@contextlib.contextmanager
def bind_mounted(what: Path, where: Path) -> Iterator[Path]:
    where.mkdir()
    run(["mount", "--bind", what, where])
    try:
        yield where
    finally:
        run(["umount", where])
        where.rmdir()


def test_a_source_holding_a_mount_of_the_targets_parent_is_refused(mounts: ScratchMounts) -> None:
    """The cache holds a bind mount of the project: walking it would walk into the
    target being filled, and mirror it into itself until the path is too long."""
    place = mounts.ext4()
    project = place / "project"
    project.mkdir()
    (project / "README").write_text("the project\n")
    source = make_source(place / "cache")
    with bind_mounted(project, source / "proj"):
        before, around = snapshot(source), snapshot(project)
        linker = Linker(env=None)
        error = assert_refused(linker, source, project / "venv")
        assert str(source / "proj") in str(error)
        assert snapshot(source) == before
        assert snapshot(project) == around


def test_an_existing_target_directory_that_leads_into_the_source_is_refused(mounts: ScratchMounts) -> None:
    """Found mid-walk (the directory is in the target, not above it): what the call made
    before is removed again, the source is untouched."""
    place = mounts.ext4()
    source = make_source(place / "cache")
    target = place / "venv"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    (target / "pkg1").symlink_to(source / "pkg2")  # an old symlink, pointing into the cache
    before, target_before = snapshot(source, directory_times=False), snapshot(target, directory_times=False)
    error = assert_refused(Linker(env=None), source, target)
    assert error.stats is not None
    assert error.not_removed == ()
    assert snapshot(source, directory_times=False) == before
    assert snapshot(target, directory_times=False) == target_before


# -- a failure mid-run leaves the target as it was -----------------------------------------------------


# From here on the failure comes after the probe, which creates and removes its scratch
# files in the source and the target: their directories' mtimes change, nothing else.


def _target_with_history(directory: Path) -> Path:
    """A target that already holds files and directories of its own."""
    target = directory / "venv"
    (target / "pkg0").mkdir(parents=True)
    (target / "keep.txt").write_text("mine\n")
    (target / "pkg0" / "own.py").write_text("also mine\n")
    return target


def test_explicit_hardlink_refused_at_a_subdirectory_on_another_filesystem(mounts: ScratchMounts) -> None:
    """The target's site/ is a symlink onto a tmpfs: link() cannot reach it. Found when
    the walk gets there, after the files of the top directory were linked."""
    place = mounts.ext4()
    source = make_source(place / "cache")
    (source / "site" / "lib").mkdir(parents=True)
    (source / "site" / "lib" / "x.py").write_text("x\n")
    target = _target_with_history(place)
    elsewhere = mounts.tmpfs()
    (target / "site").mkdir()
    (target / "site" / "lib").symlink_to(elsewhere)
    before, target_before = snapshot(source, directory_times=False), snapshot(target, directory_times=False)
    linker = Linker("hardlink", env=None)
    with pytest.raises(UnsupportedModeError) as raised:
        linker.link_tree(source, target)
    error = raised.value
    assert error.errno == errno.EXDEV
    assert error.stats is not None
    assert error.stats.hardlinked >= 1  # top.py at least: the failure came mid-run
    assert error.not_removed == ()
    assert snapshot(source, directory_times=False) == before  # link counts back to what they were
    assert snapshot(target, directory_times=False) == target_before
    assert os.listdir(elsewhere) == []
    assert linker.fallbacks == ()


_EXT4_LINK_MAX = 65_000


def test_explicit_hardlink_at_the_link_limit_leaves_the_target_as_it_was(mounts: ScratchMounts) -> None:
    directory = mounts.small_ext4(size_mb=32)
    try:
        source = make_source(directory / "cache", files=12)
        crowded = source / "pkg2" / "sub" / "m05.py"
        links = directory / "links"
        links.mkdir()
        for index in range(_EXT4_LINK_MAX - 1):
            os.link(crowded, links / str(index))
        assert crowded.stat().st_nlink == _EXT4_LINK_MAX
        target = _target_with_history(directory)
        before, target_before = snapshot(source, directory_times=False), snapshot(target, directory_times=False)
        with pytest.raises(LinkFailedError) as raised:
            Linker("hardlink", env=None).link_tree(source, target)
        error = raised.value
        assert error.errno == errno.EMLINK
        assert error.filename == str(crowded)
        assert error.stats is not None
        assert error.not_removed == ()
        assert snapshot(source, directory_times=False) == before
        assert snapshot(target, directory_times=False) == target_before
    finally:
        assert mounts.release(directory) == []


def _free(path: Path) -> tuple[int, int]:
    info = os.statvfs(path)
    return info.f_bfree, info.f_ffree


def test_explicit_hardlink_out_of_inodes_leaves_the_target_as_it_was(mounts: ScratchMounts) -> None:
    """tmpfs counts every hard link against nr_inodes: the links run out mid-tree."""
    directory = mounts.tiny_tmpfs(nr_inodes=64, size="1m")
    try:
        source = make_source(directory / "cache", files=30, size=100)
        target = _target_with_history(directory)
        before, target_before = snapshot(source, directory_times=False), snapshot(target, directory_times=False)
        free = _free(directory)
        with pytest.raises(LinkFailedError) as raised:
            Linker("hardlink", env=None).link_tree(source, target)
        error = raised.value
        assert error.errno == errno.ENOSPC
        assert error.stats is not None
        assert error.stats.hardlinked >= 1
        assert error.not_removed == ()
        assert snapshot(source, directory_times=False) == before
        assert snapshot(target, directory_times=False) == target_before
        assert _free(directory) == free  # every inode and block given back
    finally:
        assert mounts.release(directory) == []


@pytest.mark.parametrize("mode", ["copy", None])
@pytest.mark.parametrize("workers", [1, 4])
def test_a_full_target_leaves_the_target_as_it_was(mounts: ScratchMounts, mode: str | None, workers: int) -> None:
    """Explicit copy, and auto (which copies here: another filesystem), run out of space
    mid-tree. Both undo what they made: a half-installed package is worse than none."""
    source = make_source(mounts.tmpfs() / "cache", files=60, size=12_000)  # ~750 KiB
    directory = mounts.tiny_tmpfs(nr_inodes=1000, size="256k")
    try:
        target = _target_with_history(directory)
        before, target_before = snapshot(source, directory_times=False), snapshot(target, directory_times=False)
        free = _free(directory)
        linker = Linker(mode, env=None, workers=workers)
        with pytest.raises(LinkFailedError) as raised:
            linker.link_tree(source, target)
        error = raised.value
        assert error.errno == errno.ENOSPC
        assert error.stats is not None
        assert error.stats.copied >= 1
        assert error.stats.directories >= 1
        assert error.not_removed == ()
        assert linker.mode is LinkMode.COPY
        assert linker.fallbacks == ()
        assert snapshot(source, directory_times=False) == before
        assert snapshot(target, directory_times=False) == target_before
        assert _free(directory) == free
    finally:
        assert mounts.release(directory) == []


def test_link_on_a_full_filesystem_removes_the_directories_it_made(mounts: ScratchMounts) -> None:
    source = mounts.tmpfs() / "big"
    source.write_bytes(os.urandom(600_000))
    directory = mounts.tiny_tmpfs(nr_inodes=1000, size="256k")
    try:
        (directory / "venv").mkdir()
        free = _free(directory)
        with pytest.raises(LinkFailedError) as raised:
            Linker("copy", env=None).link(source, directory / "venv" / "lib" / "deep" / "big")
        assert raised.value.errno == errno.ENOSPC
        assert os.listdir(directory / "venv") == []
        assert _free(directory) == free
    finally:
        assert mounts.release(directory) == []


def test_a_successful_run_after_a_refused_one_works(mounts: ScratchMounts) -> None:
    """The refusal changes no state of the Linker: the next, correct call links."""
    place = mounts.ext4()
    source = make_source(place / "cache")
    linker = Linker(env=None)
    assert_refused(linker, source, source / "venv")
    stats = linker.link_tree(source, place / "venv")
    assert (stats.hardlinked, stats.symlinks) == (32, 1)  # 30 modules, top.py, bin/tool; bin/alias
    assert os.stat(place / "venv" / "top.py").st_ino == os.stat(source / "top.py").st_ino
    shutil.rmtree(place / "venv")
