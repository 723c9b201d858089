"""``linkprobe.bench`` on real filesystems: which modes get timed where, what the disk
figures say, that the sample is the one asked for and stays as it was, and that nothing
is left behind (the conftest's litter check runs after every test, on every scratch mount).

Times are only compared with each other within one run (copy against hardlink on the
same data); no test asserts an absolute duration.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
from _fs_nobody import run_as_nobody

from linkprobe import LinkMode, SampleError, bench
from linkprobe._bench_rules import synthetic_shape
from linkprobe.benchmarking import BenchResult

pytestmark = pytest.mark.realfs

#: Small samples: the session's ext4 holds 64 MiB, and it is shared by every test.
FILES = 240
ROUNDS = 2


def timed(result: BenchResult) -> set[LinkMode]:
    return {entry.mode for entry in result.modes if entry.timed}


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: type, permission bits, size, content digest, link text."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[str(path.relative_to(root))] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path.relative_to(root))] = ("file", stat.S_IMODE(info.st_mode), info.st_size, digest)
    return found


def make_tree(root: Path, files: int) -> int:
    """A small real-looking tree with nested directories, an executable and a symlink;
    returns its regular files' bytes."""
    size = 0
    for index in range(files):
        path = root / f"pkg{index // 10}" / ("sub" if index % 3 else "") / f"m{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(100 + 37 * index)
        path.write_bytes(data)
        size += len(data)
    (root / "pkg0" / "m0.py").chmod(0o755)
    (root / "pkg0" / "link.py").symlink_to("m0.py")
    return size


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_ext4_same_mount_times_hardlink_and_copy_and_says_why_not_clone(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    cache = top / "cache"
    cache.mkdir()
    target = top / "project" / ".venv"
    before = listing(top), listing(cache)
    result = bench(cache, target, files=FILES, rounds=3)

    assert timed(result) == {LinkMode.HARDLINK, LinkMode.COPY, LinkMode.SYMLINK}
    clone = result.mode("clone")
    assert clone.status == "unsupported"
    assert clone.errno == errno.EOPNOTSUPP
    assert "reflink" in clone.reason
    assert clone.seconds is None
    assert clone.disk_bytes is None

    hardlink, copy = result.mode("hardlink"), result.mode("copy")
    sample_bytes = result.sample.bytes
    assert sample_bytes == sum(entry.size for entry in synthetic_shape(FILES))
    assert hardlink.disk_bytes is not None
    assert copy.disk_bytes is not None
    assert hardlink.disk_bytes <= 0.05 * sample_bytes
    assert copy.disk_bytes >= 0.8 * sample_bytes
    assert result.mode("symlink").disk_bytes == 0
    # Two modes measured on the same data in the same run: copying writes every byte,
    # hardlinking none.
    assert hardlink.seconds is not None
    assert copy.seconds is not None
    assert copy.seconds > hardlink.seconds
    assert result.best is LinkMode.HARDLINK
    assert result.advice.startswith("hardlink is ")
    assert "copy here and saves" in result.advice

    # The target itself is never created, nor anything else in the user's directories.
    assert not (top / "project").exists()
    assert (listing(top), listing(cache)) == before
    assert result.machine.source_fstype == result.machine.target_fstype == "ext4"


def test_btrfs_subvolumes_time_clone_and_refuse_hardlink(mounts: ScratchMounts) -> None:
    source, target = mounts.btrfs("a"), mounts.btrfs("b") / "venv"
    result = bench(source, target, files=FILES, rounds=ROUNDS)

    assert LinkMode.CLONE in timed(result)
    hardlink = result.mode("hardlink")
    assert hardlink.status == "unsupported"
    assert hardlink.errno == errno.EXDEV
    assert hardlink.seconds is None
    clone = result.mode("clone")
    assert clone.disk_bytes is not None
    # Small files live inside btrfs metadata (inline) and a clone holds its own copy of
    # those; the data extents are shared.
    assert clone.disk_bytes <= 0.05 * result.sample.bytes
    assert result.best is LinkMode.CLONE
    # btrfs serves copy_file_range as a clone, across subvolumes too.
    copy = result.mode("copy")
    assert copy.disk_bytes is not None
    assert copy.disk_bytes <= 0.05 * result.sample.bytes
    assert not target.exists()


def test_xfs_reflink_times_clone_and_hardlink(mounts: ScratchMounts) -> None:
    top = mounts.xfs(reflink=True)
    result = bench(top, top / "venv", files=FILES, rounds=ROUNDS)
    assert {LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY} <= timed(result)
    clone = result.mode("clone")
    assert clone.disk_bytes is not None
    assert clone.disk_bytes <= 0.05 * result.sample.bytes
    # linkprobe's copy uses copy_file_range(2), which XFS serves by sharing extents.
    copy = result.mode("copy")
    assert copy.disk_bytes is not None
    assert copy.disk_bytes <= 0.05 * result.sample.bytes
    assert "copy shares blocks here too" in result.advice


def test_bind_mount_times_only_copy_and_symlink(mounts: ScratchMounts) -> None:
    cache = mounts.ext4()
    other = mounts.ext4()
    target = mounts.bind(other) / "venv"
    result = bench(cache, target, files=FILES, rounds=ROUNDS)

    assert timed(result) == {LinkMode.COPY, LinkMode.SYMLINK}
    for mode in ("clone", "hardlink"):
        entry = result.mode(mode)
        assert entry.status == "unsupported"
        assert entry.seconds is None
    # link(2) never crosses mount points; FICLONE (Linux >= 5.18) compares superblocks
    # and is refused here for ext4's own reason.
    assert result.mode("hardlink").errno == errno.EXDEV
    assert result.mode("clone").errno == errno.EOPNOTSUPP
    assert result.best is LinkMode.COPY
    assert result.advice.startswith("only copy works here")
    copy = result.mode("copy")
    assert copy.disk_bytes is not None
    assert copy.disk_bytes >= 0.8 * result.sample.bytes


@pytest.mark.parametrize("files", [1, 37, 301])
def test_files_is_honoured_exactly(mounts: ScratchMounts, files: int) -> None:
    top = mounts.tmpfs()
    result = bench(top, top / "venv", files=files, rounds=1)
    assert result.sample.files == files
    assert result.sample.origin == "synthetic"
    assert result.sample.seed == 0
    for mode in timed(result):
        assert result.mode(mode).files == files  # what each round materialised
        assert result.mode(mode).bytes == result.sample.bytes


def test_sample_on_the_source_mount_is_used_in_place_and_left_unchanged(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    sample = top / "one-package"
    size = make_tree(sample, 53)
    before = snapshot(sample)
    times = sample.stat()
    result = bench(top, top / "venv", sample=sample, rounds=ROUNDS)

    # Each Linker's probe made and removed a scratch file in it; its times were put back.
    # (Checked before reading it again: with relatime, a read after the ctime changed
    # updates the access time.)
    after = sample.stat()
    assert (after.st_mtime_ns, after.st_atime_ns) == (times.st_mtime_ns, times.st_atime_ns)
    assert snapshot(sample) == before
    assert result.sample.files == 53
    assert result.sample.bytes == size
    assert result.sample.symlinks == 1
    assert result.sample.origin == "sample"
    assert result.sample.copied is False
    assert result.sample.path == str(sample.resolve())
    assert timed(result) == {LinkMode.HARDLINK, LinkMode.COPY, LinkMode.SYMLINK}
    for mode in timed(result):
        assert result.mode(mode).files == 53
    assert listing(top) == ["one-package"]


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda m: (m.tmpfs(), m.ext4()), id="tmpfs-to-ext4"),
        # One btrfs mount, two subvolumes: another st_dev, so links from the sample would
        # measure across subvolumes, not within the source's.
        pytest.param(lambda m: (m.btrfs("samples"), m.btrfs("cache")), id="btrfs-subvolumes"),
    ],
)
def test_sample_on_another_filesystem_is_copied_to_the_source_side(
    mounts: ScratchMounts, where: Callable[[ScratchMounts], tuple[Path, Path]]
) -> None:
    sample_top, source = where(mounts)
    sample = sample_top / "pkg"
    size = make_tree(sample, 20)
    before = snapshot(sample)
    result = bench(source, source / "venv", sample=sample, rounds=ROUNDS)

    assert snapshot(sample) == before
    assert result.sample.copied is True
    assert (result.sample.files, result.sample.bytes) == (20, size)
    # Measured from the source's filesystem: hardlink works there, as from the sample it would not.
    assert LinkMode.HARDLINK in timed(result)
    assert listing(source) == []


def test_read_only_source_samples_a_tree_already_there(mounts: ScratchMounts) -> None:
    backing = mounts.ext4()
    for package in range(4):
        make_tree(backing / f"archive-{package}", 30 + package * 20)
    before = snapshot(backing)
    read_only = mounts.ro_bind(backing)
    target = mounts.ext4() / "venv"
    try:
        result = bench(read_only, target, files=60, rounds=ROUNDS)
    finally:
        mounts.release(read_only)
    assert result.sample.origin == "existing"
    assert result.sample.path is not None
    # The tree nearest 60 files by ratio: archive-2 holds 70, archive-1 50 (70/60 < 60/50).
    assert Path(result.sample.path).name == "archive-2"
    assert result.sample.files == 70
    assert snapshot(backing) == before
    assert LinkMode.COPY in timed(result)


def test_read_only_source_without_files_says_what_to_pass(mounts: ScratchMounts) -> None:
    backing = mounts.ext4()
    (backing / "empty").mkdir()
    read_only = mounts.ro_bind(backing)
    try:
        with pytest.raises(SampleError, match=r"pass --sample DIR") as caught:
            bench(read_only, mounts.tmpfs() / "venv", rounds=1)
    finally:
        mounts.release(read_only)
    assert isinstance(caught.value, ValueError)  # bad input: exit 2 on the command line
    assert str(caught.value) == (
        f"cannot sample {read_only.resolve()}: the source takes no new files (Read-only file system) and holds no "
        "regular files to sample; pass --sample DIR (sample=DIR), a directory of files on the same filesystem as "
        "the source"
    )


def test_a_mode_that_fails_on_the_whole_tree_is_reported_and_the_others_still_timed(mounts: ScratchMounts) -> None:
    top = mounts.small_ext4(size_mb=8)
    free = os.statvfs(top).f_bavail * os.statvfs(top).f_frsize
    # A sample that fits once but not twice: every copy round runs out of space (ENOSPC),
    # hardlinks need no data blocks.
    files = next(n for n in range(50, 5000, 10) if sum(e.size for e in synthetic_shape(n)) > 0.6 * free)
    try:
        result = bench(top, top / "venv", files=files, rounds=ROUNDS)
    finally:
        mounts.release(top)
    copy = result.mode("copy")
    assert copy.status == "failed"
    assert copy.errno == errno.ENOSPC
    assert copy.seconds is None
    assert LinkMode.HARDLINK in timed(result)
    assert result.advice == "hardlink works here (copy could not be timed to compare)"


def test_interrupted_at_every_step_leaves_nothing_behind(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    steps: list[str] = []
    bench(top, top / "venv", files=30, rounds=2, progress=steps.append)
    assert len(steps) >= 8  # writing, 3 modes x 2 rounds, disk counts

    for stop_at in range(len(steps)):
        calls = 0

        def interrupt(message: str, stop_at: int = stop_at) -> None:
            nonlocal calls
            calls += 1
            if calls > stop_at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            bench(top, top / "venv", files=30, rounds=2, progress=interrupt)
        assert listing(top) == [], f"left behind after step {stop_at}: {steps[stop_at]}"


def test_scale_to_projects_by_the_real_tree(mounts: ScratchMounts) -> None:
    top = mounts.tmpfs()
    cache = top / "cache"
    size = make_tree(cache, 90)
    os.link(cache / "pkg0" / "m0.py", cache / "pkg0" / "again.py")  # one inode, counted once
    result = bench(top, top / "venv", files=30, rounds=1, scale_to=cache)
    assert result.scale is not None
    assert (result.scale.files, result.scale.bytes) == (90, size)
    for scaled in result.scale.modes:
        entry = result.mode(scaled.mode)
        assert entry.seconds is not None
        assert scaled.seconds == pytest.approx(entry.seconds * 90 / 30)
        if entry.disk_bytes is not None:
            assert scaled.disk_bytes == round(entry.disk_bytes * size / result.sample.bytes)


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"files": 0}, ValueError, "at least 1"),
        ({"rounds": 0}, ValueError, "at least 1"),
        ({"files": 3, "sample": "/"}, ValueError, "not both"),
    ],
)
def test_bad_arguments(tmp_path: Path, arguments: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        bench(tmp_path, tmp_path / "venv", **arguments)  # type: ignore[arg-type]
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda top: top / "missing", "not a directory"),
        (lambda top: top / "venv-parent", "scratch directory would be inside it"),
        (lambda top: top / "empty", "no regular files"),
        (lambda top: top / "fifo-tree", "not a regular file, directory or symlink"),
    ],
)
def test_unusable_samples(tmp_path: Path, make: Callable[[Path], Path], words: str) -> None:
    (tmp_path / "venv-parent").mkdir()
    (tmp_path / "venv-parent" / "a").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "fifo-tree").mkdir()
    (tmp_path / "fifo-tree" / "a").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo-tree" / "pipe")
    source = tmp_path / "cache"
    source.mkdir()
    with pytest.raises(SampleError, match=words):
        bench(source, tmp_path / "venv-parent" / "venv", sample=make(tmp_path), rounds=1)
    assert listing(source) == []


def test_a_umask_without_the_owners_write_bit_still_leaves_nothing() -> None:
    """As nobody, with umask 0o277: the directories link_tree creates end up 0o500, and
    their entries can only be removed after making them writable again."""
    top = Path(tempfile.mkdtemp(prefix="bench-umask-", dir="/tmp"))  # nobody can reach /tmp
    try:
        top.chmod(0o777)
        program = (
            "import os, linkprobe; os.umask(0o277); "
            f"r = linkprobe.bench({str(top)!r}, {str(top / 'venv')!r}, files=20, rounds=1); "
            "print(sorted((m.mode.value, m.status, m.errno) for m in r.modes if m.mode.value != 'clone'))"
        )
        done = run_as_nobody([sys.executable, "-c", program])
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        # The Linker keeps the directories it creates writable while it fills them (as cp -r
        # does), so every mode that works here is timed; bench then removes everything.
        for mode, status, code in ast.literal_eval(done.stdout):
            assert (status, code) == ("timed", None), (mode, status, code)
        assert listing(top) == []
    finally:
        shutil.rmtree(top)
