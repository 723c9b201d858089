"""``linkprobe.audit`` against trees whose truth is known: made by coreutils on real mounts.

``cp -al`` makes hardlinks, ``cp -r --reflink=always`` clones (btrfs, XFS), ``cp -r
--reflink=never`` copies, ``cp -rs`` symlinks; a mixed tree is built file by file. The audit
must name each of them, only read, and leave nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _fs_build import ScratchMounts

from linkprobe import LinkMode, audit
from linkprobe.auditing import Audit

pytestmark = pytest.mark.realfs

#: Bigger than btrfs's max_inline (2048 bytes by default), so these get extents of their own.
BIG = {"pkg/core.py": 70_000, "pkg/sub/data.bin": 200_000, "pkg/sub/util.py": 9_000, "big.so": 1_500_000}
#: Small enough for btrfs to keep inline in its metadata.
SMALL = {"pkg/__init__.py": 120, "pkg/sub/__init__.py": 300}
EMPTY = ("pkg/py.typed",)


def make_source(top: Path) -> Path:
    source = top / "cache"
    for name, size in {**BIG, **SMALL}.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    for name in EMPTY:
        (source / name).touch()
    return source


def cp(*argv: str | Path) -> None:
    result = subprocess.run(["cp", *map(str, argv)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def fsync_tree(top: Path) -> None:
    """Write out TARGET's files (the fixture's job, never the audit's): btrfs and XFS mark an
    extent shared at once, but a fresh copy's extents stay delayed-allocation until written."""
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def counts(result: Audit) -> dict[str, int]:
    return {kind: total.files for kind, total in result.kinds.items() if total.files}


def total_bytes(sizes: dict[str, int]) -> int:
    return sum(sizes.values())


ALL_FILES = len(BIG) + len(SMALL) + len(EMPTY)


def test_cp_al_is_all_hardlinks(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    source = make_source(top)
    cp("-al", source, top / "venv")
    result = audit(source, top / "venv")
    assert counts(result) == {"hardlink": ALL_FILES}
    assert result.kinds["hardlink"].bytes == total_bytes(BIG) + total_bytes(SMALL)
    assert result.duplicated_bytes == 0
    assert result.best is LinkMode.HARDLINK
    assert result.savable_bytes == 0


@pytest.mark.parametrize("filesystem", ["btrfs", "xfs"])
def test_cp_reflink_always_is_clones(filesystem: str, mounts: ScratchMounts) -> None:
    top = mounts.btrfs("a") if filesystem == "btrfs" else mounts.xfs(reflink=True)
    source = make_source(top)
    cp("-r", "--reflink=always", source, top / "venv")
    result = audit(source, top / "venv")
    found = counts(result)
    assert found["clone"] >= len(BIG)
    assert result.kinds["clone"].bytes >= total_bytes(BIG)
    assert not {"hardlink", "copy"} & set(found)
    if filesystem == "btrfs":  # small files stay inline: no extent to share, never a clone
        assert found == {"clone": len(BIG), "other": len(SMALL) + len(EMPTY)}
        assert {r: t.files for r, t in result.other_reasons.items()} == {"inline": len(SMALL), "empty": len(EMPTY)}
    else:  # XFS has no inline data: every file with data shares its block
        assert found == {"clone": len(BIG) + len(SMALL), "other": len(EMPTY)}
    assert result.best is LinkMode.CLONE
    assert result.savable_bytes == 0


@pytest.mark.parametrize("filesystem", ["ext4", "btrfs"])
def test_cp_reflink_never_is_copies_held_twice(filesystem: str, mounts: ScratchMounts) -> None:
    top = mounts.ext4() if filesystem == "ext4" else mounts.btrfs("a")
    source = make_source(top)
    cp("-r", "--reflink=never", source, top / "venv")
    fsync_tree(top / "venv")
    result = audit(source, top / "venv")
    found = counts(result)
    if filesystem == "ext4":
        assert found == {"copy": len(BIG) + len(SMALL), "other": len(EMPTY)}
        held = total_bytes(BIG) + total_bytes(SMALL)
    else:
        assert found == {"copy": len(BIG), "other": len(SMALL) + len(EMPTY)}
        held = total_bytes(BIG)
    assert result.duplicated_bytes == held
    assert result.duplicated_files == found["copy"]
    assert result.best is not None
    assert result.savable_bytes == held  # hardlink (ext4) or clone (btrfs) works here


def test_unsynced_copies_are_copies(mounts: ScratchMounts) -> None:
    """Without a sync, fresh copies have delayed-allocation extents: their own, never shared.
    The audit must not sync them (it only reads) and must still call them copies."""
    top = mounts.xfs(reflink=True)
    source = make_source(top)
    cp("-r", "--reflink=never", source, top / "venv")
    result = audit(source, top / "venv")
    assert counts(result) == {"copy": len(BIG) + len(SMALL), "other": len(EMPTY)}


def test_cp_rs_is_symlinks(mounts: ScratchMounts) -> None:
    top = mounts.ext4()
    source = make_source(top)
    cp("-rs", source.resolve(), top / "venv")
    result = audit(source, top / "venv")
    assert counts(result) == {"symlink": ALL_FILES}
    assert result.kinds["symlink"].bytes == total_bytes(BIG) + total_bytes(SMALL)


def test_copies_on_tmpfs_are_copies_without_a_block_map(mounts: ScratchMounts) -> None:
    """tmpfs has no FIEMAP (EOPNOTSUPP) and no reflink: an own inode can only be a copy."""
    top = mounts.tmpfs()
    source = make_source(top)
    cp("-r", source, top / "venv")
    result = audit(source, top / "venv")
    assert counts(result) == {"copy": len(BIG) + len(SMALL), "other": len(EMPTY)}
    assert result.duplicated_files == len(BIG) + len(SMALL)


def _mkfifo(path: Path) -> None:
    os.mkfifo(path)


def test_mixed_tree_exact_counts(mounts: ScratchMounts) -> None:
    top = mounts.btrfs("a")
    source = make_source(top)
    target = top / "venv"
    (target / "d").mkdir(parents=True)
    os.link(source / "pkg/core.py", target / "d/core.py")  # hardlink
    os.link(source / "pkg/py.typed", target / "d/py.typed")  # hardlink, empty: the inode decides
    cp("--reflink=always", source / "big.so", target / "d/big.so")  # clone
    cp("--reflink=always", source / "pkg/sub/util.py", target / "util.py")  # clone
    cp("--reflink=never", source / "pkg/sub/data.bin", target / "d/data.bin")  # copy, held twice
    (target / "new.bin").write_bytes(os.urandom(50_000))  # copy, SOURCE does not hold it
    (target / "hashed-name").write_bytes((source / "pkg/sub/util.py").read_bytes())  # copy, found by size
    (target / "link.py").symlink_to(source / "pkg/core.py")  # symlink into SOURCE
    (target / "linked-dir").symlink_to(source / "pkg")  # symlink into SOURCE, never followed
    (target / "elsewhere").symlink_to("/etc/hostname")
    (target / "dangling").symlink_to(top / "no-such-file")
    (target / "internal").symlink_to("d/data.bin")
    (target / "loop").symlink_to("loop")
    _mkfifo(target / "fifo")
    (target / "empty").touch()
    (target / "small.py").write_bytes(b"print('inline')\n")
    cp("--reflink=always", source / "big.so", target / "edited.so")
    with open(target / "edited.so", "r+b") as handle:  # one block of its own, the rest shared
        handle.write(os.urandom(4096))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_tree(target)

    result = audit(source, target)
    assert counts(result) == {"hardlink": 2, "clone": 2, "copy": 3, "symlink": 2, "other": 8}
    assert {r: t.files for r, t in result.other_reasons.items()} == {
        "empty": 1,
        "inline": 1,
        "partly-shared": 1,
        "symlink-internal": 1,
        "symlink-dangling": 2,  # a loop does not resolve either
        "symlink-elsewhere": 1,
        "special": 1,
    }
    assert result.kinds["hardlink"].bytes == BIG["pkg/core.py"]
    assert result.kinds["clone"].bytes == BIG["big.so"] + BIG["pkg/sub/util.py"]
    assert result.kinds["symlink"].bytes == BIG["pkg/core.py"]  # the directory link counts no bytes
    assert result.other_reasons["symlink-internal"].bytes == 0  # d/data.bin is counted as itself
    assert result.other_reasons["symlink-elsewhere"].bytes == 0
    assert result.duplicated_files == 2
    assert result.duplicated_bytes == BIG["pkg/sub/data.bin"] + BIG["pkg/sub/util.py"]
    assert 0 < result.partly_shared_bytes <= BIG["big.so"] - 4096
    assert result.files == 17
    assert set(result.kinds["symlink"].examples) == {"link.py", "linked-dir"}
    assert result.kinds["hardlink"].examples == ("d/core.py", "d/py.typed")


def _times(paths: list[Path]) -> dict[str, tuple[int, ...]]:
    """inode, size, mtime and atime in ns of each path, by lstat alone: listing a directory
    here would itself update its atime (relatime compares with the ctime, which the probe's
    scratch files move and nobody can put back)."""
    found: dict[str, tuple[int, ...]] = {}
    for path in paths:
        info = path.lstat()
        found[str(path)] = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_atime_ns)
    return found


@pytest.mark.parametrize("how", ["-al", "--reflink=never"])
def test_the_audit_only_reads(how: str, mounts: ScratchMounts) -> None:
    """Nothing under SOURCE or TARGET changes, times included, and the probe it runs in both
    top directories leaves nothing behind (the litter check runs after every test too)."""
    top = mounts.btrfs("a")
    source, target = make_source(top), top / "venv"
    cp(*(["-al"] if how == "-al" else ["-r", how]), source, target)
    fsync_tree(target)
    paths = [source, target, *source.rglob("*"), *target.rglob("*")]
    # Access times older than the modification times: relatime would update them on a read.
    for path in paths:
        info = path.lstat()
        os.utime(path, ns=(info.st_mtime_ns - 10**9, info.st_mtime_ns), follow_symlinks=False)
    before = _times(paths)
    result = subprocess.run(
        [sys.executable, "-m", "linkprobe", "audit", "--format", "json", source, target],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _times(paths) == before
    assert sorted([source, target, *source.rglob("*"), *target.rglob("*")]) == sorted(paths)


def test_source_inside_target_is_not_audited_as_target(mounts: ScratchMounts) -> None:
    """pnpm may keep its store inside the project: the store is SOURCE, not installed files."""
    top = mounts.ext4()
    project = top / "project"
    source = make_source(project)
    cp("-al", source, project / "node_modules")
    result = audit(source, project)
    assert counts(result) == {"hardlink": ALL_FILES}
