"""Linker on real filesystems: what lands on disk, not only what the linker says it did.

Every scenario builds a small site-packages-like tree and checks, file by file: the
bytes, the permission bits, the LinkStats counts, and the on-disk outcome of the mode --
hardlinks share the source's inode, clones have their own inode but share its extents
(FIEMAP), copies have their own inode (and their own blocks where the filesystem has no
reflink). Failures are counted at the OS seam (a counting LinuxBackend) and, once, with
strace at the syscall level.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _commands import which
from _extents import extents, overlaps_any_block, shares_extents
from _fs_build import ScratchMounts
from _litter import SCRATCH_PREFIX

from linkprobe import (
    Linker,
    LinkFailedError,
    LinkMode,
    LinkModeFallbackWarning,
    LinkStats,
    UnsupportedModeError,
)
from linkprobe.api import SourceHints
from linkprobe.linux import LinuxBackend

pytestmark = pytest.mark.realfs

# -- extents (FIEMAP, tests/_extents.py) ----------------------------------------------------


def assert_shares_extents(source: Path, clone: Path) -> None:
    """Same physical blocks at the same offsets, marked shared on both sides."""
    assert extents(clone), f"{clone}: no extents although it has {clone.stat().st_size} bytes"
    assert shares_extents(source, clone), (extents(source), extents(clone))


def assert_own_extents(source: Path, copy: Path) -> None:
    """No physical block of ``copy`` is also one of ``source``, and none is marked shared."""
    mine = extents(copy)
    assert mine, f"{copy}: no extents although it has {copy.stat().st_size} bytes"
    assert not any(e.shared for e in mine), (copy, mine)
    assert not overlaps_any_block(source, copy), (extents(source), mine)


_FILEFRAG_LINE = re.compile(r"^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+(\d+):.*?(\S*)$")


def filefrag(path: Path) -> list[tuple[int, int, int, str]]:
    """`filefrag -v` rows: (logical start, physical start, length, flags), in fs blocks."""
    tool = which("filefrag")
    assert tool is not None, "filefrag (e2fsprogs) is not installed"
    output = subprocess.run([tool, "-v", str(path)], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in output.splitlines():
        match = _FILEFRAG_LINE.match(line)
        if match:
            rows.append((int(match[1]), int(match[3]), int(match[5]), match[6]))
    return rows


# -- the OS seam, counted -------------------------------------------------------------------


def _is_probe_name(target: str) -> bool:
    """The probe's scratch names; replace=True temporaries share the prefix but end in .tmp."""
    name = os.path.basename(target)
    return name.startswith(SCRATCH_PREFIX) and not name.endswith(".tmp")


class CountingBackend(LinuxBackend):
    """The real Linux backend, counting every hardlink/clone/copy call and failure."""

    def __init__(self) -> None:
        self._count_lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.probe_failures: Counter[str] = Counter()
        self.errnos: list[tuple[str, int]] = []
        #: The errnos of the linker's own files (not the probe's scratch names).
        self.linker_errnos: list[tuple[str, int]] = []

    def _counted(self, kind: str, target: str, call: Callable[[], None]) -> None:
        with self._count_lock:
            self.calls[kind] += 1
        try:
            call()
        except OSError as exc:
            with self._count_lock:
                self.failures[kind] += 1
                if _is_probe_name(target):
                    self.probe_failures[kind] += 1
                else:
                    self.linker_errnos.append((kind, exc.errno or 0))
                self.errnos.append((kind, exc.errno or 0))
            raise

    def hardlink(self, source: str, target: str) -> None:
        self._counted("hardlink", target, functools.partial(super().hardlink, source, target))

    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self._counted("clone", target, functools.partial(super().clone, source, target, hints))

    def copy(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self._counted("copy", target, functools.partial(super().copy, source, target, hints))

    @property
    def failed_links(self) -> int:
        """Failed hardlink + clone calls, the probe's included."""
        return self.failures["hardlink"] + self.failures["clone"]

    @property
    def failed_links_after_probe(self) -> int:
        return self.failed_links - self.probe_failures["hardlink"] - self.probe_failures["clone"]


# -- trees ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    root: Path
    #: Regular files, relative to root.
    files: tuple[str, ...]
    #: The one relative symlink, relative to root, and the file it points to.
    symlink: str
    symlink_target: str
    executable: str
    #: Directories below root.
    directories: int

    def size(self) -> int:
        return sum((self.root / name).stat().st_size for name in self.files)


_PACKAGES = ("alpha", "alpha/_vendor", "beta", "gamma", "alpha-1.0.dist-info")


def make_site_packages(root: Path, *, seed: int, files: int = 44) -> Tree:
    """~50 entries: packages with empty __init__.py, modules of 4-24 KiB random bytes (big
    enough for real extents: btrfs inlines files under 2 KiB), an executable, a symlink."""
    rng = random.Random(seed)
    names: list[str] = []
    for package in _PACKAGES:
        (root / package).mkdir(parents=True)
        if not package.endswith(".dist-info"):
            (root / package / "__init__.py").write_bytes(b"")
            names.append(f"{package}/__init__.py")
    for index in range(files):
        name = f"{_PACKAGES[index % len(_PACKAGES)]}/mod_{index:03d}.py"
        (root / name).write_bytes(rng.randbytes(rng.randint(4097, 24_000)))
        names.append(name)
    (root / "bin").mkdir()
    tool = root / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\nexit 0\n" + rng.randbytes(6000))
    tool.chmod(0o755)
    names.append("bin/tool")
    (root / "bin" / "tool-alias").symlink_to("tool")
    return Tree(root, tuple(names), "bin/tool-alias", "bin/tool", "bin/tool", len(_PACKAGES) + 1)


def make_big_tree(root: Path, *, seed: int = 2000, packages: int = 20) -> Tree:
    """2,000 small regular files (one executable) and one symlink, all under ``lib/``."""
    rng = random.Random(seed)
    names: list[str] = []
    per_package = 100
    for package in range(packages):
        directory = root / "lib" / f"pkg{package:02d}"
        directory.mkdir(parents=True)
        count = per_package - 1 if package == 0 else per_package
        for index in range(count):
            (directory / f"m{index:03d}.py").write_bytes(rng.randbytes(rng.randint(1, 700)))
            names.append(f"lib/pkg{package:02d}/m{index:03d}.py")
    (root / "lib" / "bin").mkdir()
    tool = root / "lib" / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    names.append("lib/bin/tool")
    (root / "lib" / "bin" / "alias").symlink_to("tool")
    assert len(names) == 2000
    return Tree(root, tuple(names), "lib/bin/alias", "lib/bin/tool", "lib/bin/tool", packages + 2)


def expected_stats(
    tree: Tree, mode: LinkMode, *, directories: int | None = None, symlink_materialised: bool = False
) -> LinkStats:
    """Every regular file in ``mode``, the symlink re-created (or materialised as a file in
    ``mode``), and the root plus every subdirectory made unless ``directories`` says otherwise.
    Hard links count no bytes (they are not stat'ed)."""
    field_name = {LinkMode.CLONE: "cloned", LinkMode.HARDLINK: "hardlinked", LinkMode.SYMLINK: "symlinked"}
    files, size = len(tree.files), tree.size()
    if symlink_materialised:
        files, size = files + 1, size + (tree.root / tree.symlink_target).stat().st_size
    return LinkStats(
        **{field_name.get(mode, "copied"): files},
        symlinks=0 if symlink_materialised else 1,
        directories=tree.directories + 1 if directories is None else directories,
        bytes=0 if mode is LinkMode.HARDLINK else size,
    )


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def check_tree(
    tree: Tree,
    target: Path,
    mode: LinkMode,
    *,
    permissions: Callable[[int], int] = lambda source_bits: source_bits,
    copy_shares_extents: bool = False,
    check_extents: bool = True,
) -> None:
    """Bytes, permission bits and the on-disk outcome of ``mode`` for every file."""
    for name in tree.files:
        source, twin = tree.root / name, target / name
        assert twin.read_bytes() == source.read_bytes(), name
        source_bits = stat.S_IMODE(source.stat().st_mode)
        assert stat.S_IMODE(twin.stat().st_mode) == permissions(source_bits), name
        if mode is LinkMode.SYMLINK:
            assert twin.is_symlink(), name
            assert os.readlink(twin) == str(source), name
            continue
        assert not twin.is_symlink(), name
        if mode is LinkMode.HARDLINK:
            assert identity(twin) == identity(source), name
            assert twin.stat().st_nlink > 1, name
            continue
        assert identity(twin) != identity(source), name
        assert twin.stat().st_nlink == 1, name
        if not check_extents or source.stat().st_size == 0:
            continue
        if mode is LinkMode.CLONE or copy_shares_extents:
            assert_shares_extents(source, twin)
        elif twin.stat().st_dev == source.stat().st_dev:  # blocks compare only on one device
            assert_own_extents(source, twin)
    link = target / tree.symlink
    assert link.is_symlink()
    assert os.readlink(link) == os.readlink(tree.root / tree.symlink)
    assert link.read_bytes() == (tree.root / tree.symlink_target).read_bytes()
    # The executable bit survives every mode (it is a property of the tree, not of one mode).
    assert os.access(target / tree.executable, os.X_OK)


def fallback_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, LinkModeFallbackWarning)]


def litter(top: Path) -> list[str]:
    return [
        os.path.join(directory, name)
        for directory, dirs, files in os.walk(top)
        for name in dirs + files
        if name.startswith(SCRATCH_PREFIX)
    ]


# -- scenarios: auto and every explicit mode ------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    id: str
    #: (directory for the source tree, directory for the target tree)
    build: Callable[[ScratchMounts], tuple[Path, Path]]
    auto: LinkMode
    #: Explicit modes the probe refuses: mode -> (acceptable errnos, regex the message must match).
    refused: dict[LinkMode, tuple[frozenset[int], str]] = field(default_factory=dict)
    #: copy_file_range on btrfs and XFS(reflink=1) shares extents instead of copying blocks.
    copy_shares_extents: bool = False


def _same_dir(make: Callable[[ScratchMounts], Path]) -> Callable[[ScratchMounts], tuple[Path, Path]]:
    def build(mounts: ScratchMounts) -> tuple[Path, Path]:
        directory = make(mounts)
        return directory, directory

    return build


def _bind_of_same_ext4(mounts: ScratchMounts) -> tuple[Path, Path]:
    directory = mounts.ext4()
    return directory, mounts.bind(directory)


_NO_REFLINK = frozenset({errno.EOPNOTSUPP})
_EXDEV = frozenset({errno.EXDEV})

SCENARIOS = [
    Scenario(
        "ext4-same-fs",
        _same_dir(ScratchMounts.ext4),
        LinkMode.HARDLINK,
        {LinkMode.CLONE: (_NO_REFLINK, "ext4 has no reflink support")},
    ),
    Scenario(
        "ext4-bind-mount",
        _bind_of_same_ext4,
        LinkMode.COPY,
        {
            # Since Linux 5.18 FICLONE may cross mounts of one filesystem, so ext4 itself
            # answers (EOPNOTSUPP); older kernels refuse the crossing first (EXDEV).
            LinkMode.CLONE: (_NO_REFLINK | _EXDEV, "no reflink support|different mounts"),
            LinkMode.HARDLINK: (_EXDEV, "different mounts"),
        },
    ),
    Scenario(
        "btrfs-two-subvolumes",
        lambda m: (m.btrfs("a"), m.btrfs("b")),
        LinkMode.CLONE,
        {LinkMode.HARDLINK: (_EXDEV, "different btrfs subvolumes")},
        copy_shares_extents=True,
    ),
    Scenario("xfs-reflink1", _same_dir(lambda m: m.xfs(reflink=True)), LinkMode.CLONE, copy_shares_extents=True),
    Scenario(
        "xfs-reflink0",
        _same_dir(lambda m: m.xfs(reflink=False)),
        LinkMode.HARDLINK,
        {LinkMode.CLONE: (_NO_REFLINK, "xfs has no reflink support")},
    ),
    Scenario(
        "tmpfs-to-ext4",
        lambda m: (m.tmpfs(), m.ext4()),
        LinkMode.COPY,
        {
            LinkMode.CLONE: (_EXDEV, "different filesystems"),
            LinkMode.HARDLINK: (_EXDEV, "different mounts"),
        },
    ),
]


def _seed(*parts: object) -> int:
    return sum(ord(char) for char in "/".join(map(str, parts)))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_auto_mode(mounts: ScratchMounts, scenario: Scenario) -> None:
    source_dir, target_dir = scenario.build(mounts)
    tree = make_site_packages(source_dir / "cache", seed=_seed(scenario.id))
    target = target_dir / "site-packages"
    backend = CountingBackend()
    linker = Linker(env=None, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = linker.link_tree(tree.root, target)
    assert fallback_warnings(caught) == []
    assert linker.mode is scenario.auto
    assert linker.fallbacks == ()
    assert stats == expected_stats(tree, scenario.auto)
    # Whatever the probe found out the hard way, no file failed a link or clone after it.
    assert backend.failed_links_after_probe == 0, backend.errnos
    check_tree(tree, target, scenario.auto, copy_shares_extents=scenario.copy_shares_extents)
    if scenario.auto is LinkMode.CLONE:
        # The same fact in the words of the standard tool (e2fsprogs), on the biggest file.
        biggest = max(tree.files, key=lambda name: (tree.root / name).stat().st_size)
        source_rows, clone_rows = filefrag(tree.root / biggest), filefrag(target / biggest)
        assert source_rows
        assert [row[:3] for row in clone_rows] == [row[:3] for row in source_rows]
        assert all("shared" in row[3] for row in clone_rows)


@pytest.mark.parametrize(
    ("scenario", "mode"),
    [(scenario, mode) for scenario in SCENARIOS for mode in LinkMode],
    ids=[f"{scenario.id}-{mode.value}" for scenario in SCENARIOS for mode in LinkMode],
)
def test_explicit_mode(mounts: ScratchMounts, scenario: Scenario, mode: LinkMode) -> None:
    source_dir, target_dir = scenario.build(mounts)
    tree = make_site_packages(source_dir / "cache", seed=_seed(scenario.id, mode))
    target = target_dir / "site-packages"
    backend = CountingBackend()
    linker = Linker(mode, env=None, backend=backend)
    if mode in scenario.refused:
        codes, words = scenario.refused[mode]
        with pytest.raises(UnsupportedModeError) as raised:
            linker.link_tree(tree.root, target)
        assert raised.value.errno in codes
        assert re.search(words, str(raised.value)), str(raised.value)
        assert not target.exists()  # verified before the target was touched
        # The probe's only: one attempt each from its scratch file, and for a mode that
        # worked there one more from an existing file of the source.
        assert backend.calls["copy"] == 1
        for kind in ("clone", "hardlink"):
            assert backend.calls[kind] == 1 + (backend.probe_failures[kind] == 0), kind
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = linker.link_tree(tree.root, target)
    assert fallback_warnings(caught) == []
    assert linker.mode is mode
    assert stats == expected_stats(tree, mode)
    assert backend.failed_links_after_probe == 0
    check_tree(tree, target, mode, copy_shares_extents=scenario.copy_shares_extents)


def test_explicit_link_of_one_file_leaves_target_untouched(mounts: ScratchMounts) -> None:
    directory = mounts.ext4()
    tree = make_site_packages(directory / "cache", seed=7, files=3)
    target = directory / "venv" / "lib" / "tool"
    with pytest.raises(UnsupportedModeError) as raised:
        Linker("clone", env=None).link(tree.root / tree.executable, target)
    assert raised.value.errno == errno.EOPNOTSUPP
    assert not (directory / "venv").exists()
    linker = Linker(env=None)
    assert linker.link(tree.root / tree.executable, target) is LinkMode.HARDLINK
    assert identity(target) == identity(tree.root / tree.executable)


def test_link_tree_creates_missing_parents_of_target(mounts: ScratchMounts) -> None:
    directory = mounts.ext4()
    tree = make_site_packages(directory / "cache", seed=8, files=3)
    target = directory / "venv" / "lib" / "site-packages"
    stats = Linker(env=None).link_tree(tree.root, target)
    assert stats.hardlinked == len(tree.files)


# -- exFAT (FUSE): no symlinks, no hard links, no stored permission bits --------------------------


def _exfat_pair(mounts: ScratchMounts, seed: int, *, with_symlink: bool = True) -> tuple[Tree, Path]:
    tree = make_site_packages(mounts.ext4() / "cache", seed=seed)
    if not with_symlink:
        (tree.root / tree.symlink).unlink()
    return tree, mounts.exfat() / "site-packages"


#: exfat-fuse stores no permission bits: it reports every file as 0o777 (its default
#: umask=0 / fmask=0), and its chmod succeeds without storing anything. So the exec bit
#: "survives", but so does everything else: every copy comes out rwxrwxrwx.
def _exfat_bits(source_bits: int) -> int:
    del source_bits
    return 0o777


def test_exfat_auto_copies_and_materialises_the_symlink(mounts: ScratchMounts) -> None:
    tree, target = _exfat_pair(mounts, seed=11)
    backend = CountingBackend()
    linker = Linker(env=None, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = linker.link_tree(tree.root, target)
    messages = fallback_warnings(caught)
    assert len(messages) == 1
    assert "has no symbolic links" in messages[0]
    assert tree.symlink in messages[0]
    assert linker.mode is LinkMode.COPY
    assert linker.fallbacks == ()  # the probe chose copy; only symlinks were stepped around
    assert backend.failed_links_after_probe == 0
    assert stats == expected_stats(tree, LinkMode.COPY, symlink_materialised=True)
    for name in tree.files:
        source, twin = tree.root / name, target / name
        assert twin.read_bytes() == source.read_bytes(), name
        assert identity(twin) != identity(source)
        assert twin.stat().st_nlink == 1
        assert stat.S_IMODE(twin.stat().st_mode) == _exfat_bits(stat.S_IMODE(source.stat().st_mode))
    alias = target / tree.symlink
    assert not alias.is_symlink()
    assert alias.is_file()
    assert alias.read_bytes() == (tree.root / tree.symlink_target).read_bytes()
    # Directories too: exfat-fuse reports 0o777 (dmask=0) whatever mkdir asked for.
    assert stat.S_IMODE((target / "alpha").stat().st_mode) == 0o777
    print(
        "exFAT modes:",
        {name: oct(stat.S_IMODE((target / name).stat().st_mode)) for name in (tree.files[0], tree.executable)},
        "from",
        {name: oct(stat.S_IMODE((tree.root / name).stat().st_mode)) for name in (tree.files[0], tree.executable)},
    )


def test_exfat_explicit_copy_raises_for_the_symlink(mounts: ScratchMounts) -> None:
    tree, target = _exfat_pair(mounts, seed=12)
    with pytest.raises(LinkFailedError, match="has no symbolic links") as raised:
        Linker("copy", env=None).link_tree(tree.root, target)
    assert not isinstance(raised.value, UnsupportedModeError)
    assert raised.value.errno == errno.ENOSYS  # exfat-fuse implements no symlink()
    assert raised.value.mode is LinkMode.SYMLINK
    assert raised.value.source == str(tree.root / tree.symlink)
    assert not (target / tree.symlink).exists()


def test_exfat_explicit_copy_without_symlinks(mounts: ScratchMounts) -> None:
    tree, target = _exfat_pair(mounts, seed=13, with_symlink=False)
    stats = Linker("copy", env=None).link_tree(tree.root, target)
    assert stats == LinkStats(copied=len(tree.files), directories=tree.directories + 1, bytes=tree.size())
    for name in tree.files:
        assert (target / name).read_bytes() == (tree.root / name).read_bytes()
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o777


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        (LinkMode.CLONE, errno.EXDEV, "different filesystems"),
        (LinkMode.HARDLINK, errno.EXDEV, "different mounts"),
        (LinkMode.SYMLINK, errno.ENOSYS, "has no symbolic links"),
    ],
)
def test_exfat_explicit_refused(mounts: ScratchMounts, mode: LinkMode, code: int, words: str) -> None:
    tree, target = _exfat_pair(mounts, seed=14)
    with pytest.raises(UnsupportedModeError, match=words) as raised:
        Linker(mode, env=None).link_tree(tree.root, target)
    assert raised.value.errno == code
    assert not target.exists()


# -- sticky fallback, 2,000 files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_tree(mounts: ScratchMounts) -> Iterator[Tree]:
    """2,000 files on the second ext4 (its 16,384 inodes are shared: targets are deleted)."""
    tree = make_big_tree(mounts.ext4_other() / "cache")
    yield tree
    shutil.rmtree(tree.root.parent)


def test_sticky_across_bind_mount_2000_files(mounts: ScratchMounts, big_tree: Tree) -> None:
    target = mounts.bind(big_tree.root.parent) / "venv-bind"
    backend = CountingBackend()
    linker = Linker(env=None, backend=backend)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = linker.link_tree(big_tree.root, target)
        print(f"bind, 2000 files: calls {dict(backend.calls)}, failures {dict(backend.failures)}")
        assert backend.failed_links <= 4, backend.errnos
        assert backend.failed_links_after_probe == 0
        assert fallback_warnings(caught) == []
        assert stats == expected_stats(big_tree, LinkMode.COPY)
        check_tree(big_tree, target, LinkMode.COPY, check_extents=False)
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture
def files_beyond_the_probes_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe also links from one existing file of the source, found by a search of a
    few directories. A source whose files lie deeper than that search reaches gives it no
    such file: only the scratch file is linked, which the immutable files below then fool."""
    monkeypatch.setattr(importlib.import_module("linkprobe.probe"), "_CHECK_DIRS", 0)


@contextlib.contextmanager
def _immutable(files: Iterable[Path]) -> Iterator[None]:
    """chattr +i: link(2) then fails with EPERM for these files, for root too, while the
    probe's own new scratch file links fine. So the kernel refuses what the probe could not
    see, as fs.protected_hardlinks does for the files of a cache owned by another user."""
    names = [str(path) for path in files]
    chattr = which("chattr")
    if chattr is None:
        pytest.fail("chattr (e2fsprogs) is needed for this test")
    for start in range(0, len(names), 500):
        subprocess.run([chattr, "+i", *names[start : start + 500]], check=True)
    try:
        yield
    finally:
        for start in range(0, len(names), 500):
            subprocess.run([chattr, "-i", *names[start : start + 500]], check=True)


@pytest.mark.usefixtures("files_beyond_the_probes_search")
@pytest.mark.parametrize("workers", [1, 4])
def test_sticky_when_the_probe_was_fooled(mounts: ScratchMounts, big_tree: Tree, workers: int) -> None:
    target = big_tree.root.parent / f"venv-fooled-{workers}"  # same ext4: the probe says hardlink
    backend = CountingBackend()
    linker = Linker(env=None, prefer=("hardlink", "copy"), workers=workers, backend=backend)
    try:
        with (
            _immutable(big_tree.root / name for name in big_tree.files),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            stats = linker.link_tree(big_tree.root, target)
        print(f"fooled, workers={workers}: calls {dict(backend.calls)}, failures {dict(backend.failures)}")
        assert backend.probe_failures["hardlink"] == 0  # fooled: link() worked in the probe
        assert 1 <= backend.failures["hardlink"] <= workers
        assert {code for kind, code in backend.errnos if kind == "hardlink"} == {errno.EPERM}  # the kernel's
        messages = fallback_warnings(caught)
        assert len(messages) == 1
        assert "immutable" in messages[0]  # not "ext4 has no hard links": the probe linked there
        assert [(f.from_mode, f.to_mode, f.errno) for f in linker.fallbacks] == [
            (LinkMode.HARDLINK, LinkMode.COPY, errno.EPERM)
        ]
        assert linker.mode is LinkMode.COPY
        assert stats == expected_stats(big_tree, LinkMode.COPY)
        check_tree(big_tree, target, LinkMode.COPY, check_extents=False)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _target_with_symlinked_lib(mounts: ScratchMounts, beside: Path, name: str) -> tuple[Path, Path]:
    """A target beside the source (same mount: hardlink works there) whose existing ``lib``
    is a symlink into a bind mount of the same filesystem, where link() gets EXDEV.
    Returns the target and the real directory behind ``lib``."""
    elsewhere = beside.parent / f"{name}-elsewhere"
    elsewhere.mkdir()
    behind = mounts.bind(elsewhere) / "lib"
    behind.mkdir()
    target = beside / name
    target.mkdir()
    (target / "lib").symlink_to(behind)
    return target, elsewhere


def test_an_existing_target_directory_on_another_mount_is_its_own_pair(mounts: ScratchMounts) -> None:
    """Found up front, by its own probe: no failed link, no fallback, no warning."""
    cache = mounts.ext4() / "cache"
    tree = make_site_packages(cache / "lib", seed=43)
    (cache / "top.py").write_bytes(b"print('top')\n")
    target, elsewhere = _target_with_symlinked_lib(mounts, cache.parent, "venv")
    backend = CountingBackend()
    linker = Linker(env=None, backend=backend)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = linker.link_tree(cache, target)
        assert fallback_warnings(caught) == []
        assert linker.fallbacks == ()
        assert backend.failures["hardlink"] == backend.probe_failures["hardlink"] == 1  # lib's probe
        assert identity(target / "top.py") == identity(cache / "top.py")  # the root pair: hardlink
        check_tree(tree, target / "lib", LinkMode.COPY)  # lib's own pair: copy
        assert (stats.hardlinked, stats.copied) == (1, len(tree.files))

        # Explicit hardlink: refused when lib is reached, before anything is written in it.
        shutil.rmtree(elsewhere / "lib")
        (elsewhere / "lib").mkdir()
        os.unlink(target / "top.py")
        with pytest.raises(UnsupportedModeError) as refused:
            Linker("hardlink", env=None).link_tree(cache, target)
        assert refused.value.errno == errno.EXDEV
        assert os.listdir(elsewhere / "lib") == []
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(elsewhere / "lib", ignore_errors=True)


_STRACE_SCRIPT = """
import sys
from linkprobe import Linker
print(Linker(env=None).link_tree(sys.argv[1], sys.argv[2]))
"""
_STRACE_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)")


def strace_failures(log: str) -> dict[str, int]:
    """Count link/linkat and FICLONE ioctl calls, and those that failed (``= -1``)."""
    counts: Counter[str] = Counter()
    pending: dict[str, str] = {}
    for raw in log.splitlines():
        pid = raw.split(maxsplit=1)[0]
        line = raw
        if raw.rstrip().endswith("<unfinished ...>"):
            pending[pid] = raw
            continue
        if "resumed>" in raw and pid in pending:
            line = pending.pop(pid) + raw
        match = _STRACE_CALL.match(line)
        if match is None:
            continue
        call = match[1]
        if call == "ioctl" and not ("FICLONE" in line or "0x40049409" in line):
            continue
        name = "ficlone" if call == "ioctl" else "link"
        counts[name] += 1
        if re.search(r"= -1 ", line):
            counts[f"failed_{name}"] += 1
    return dict(counts)


def test_strace_counts_failed_syscalls_across_bind_mount(mounts: ScratchMounts, big_tree: Tree, tmp_path: Path) -> None:
    strace = which("strace")
    if strace is None:
        if os.environ.get("LINKPROBE_REQUIRE_REAL_FS") == "1":
            pytest.fail("strace is not installed")
        pytest.skip("strace is not installed")
    target = mounts.bind(big_tree.root.parent) / "venv-strace"
    log = tmp_path / "strace.log"
    environment = {key: value for key, value in os.environ.items() if key != "LINKPROBE_MODE"}
    command = [strace, "-f", "-e", "trace=link,linkat,ioctl", "-o", str(log)]
    command += [sys.executable, "-c", _STRACE_SCRIPT, str(big_tree.root), str(target)]
    try:
        result = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        counts = strace_failures(log.read_text())
        print(f"strace, bind mount, 2000 files: {counts}; {result.stdout.strip()}")
        assert "copied=2000" in result.stdout
        assert counts.get("failed_link", 0) + counts.get("failed_ficlone", 0) <= 4, counts
        # The probe's attempts are there: strace saw what it should see.
        assert counts.get("link", 0) >= 1
        assert counts.get("ficlone", 0) >= 1
        check_tree(big_tree, target, LinkMode.COPY, check_extents=False)
    finally:
        shutil.rmtree(target, ignore_errors=True)


# -- EMLINK: one file at ext4's 65,000-link limit ------------------------------------------------------

_EXT4_LINK_MAX = 65_000


def test_emlink_copies_that_file_only(mounts: ScratchMounts) -> None:
    directory = mounts.small_ext4(size_mb=32)
    try:
        tree = make_site_packages(directory / "cache", seed=21, files=14)
        crowded = tree.root / tree.files[7]
        links = directory / "links"  # outside the tree being linked
        links.mkdir()
        started = time.perf_counter()
        for index in range(_EXT4_LINK_MAX - 1):
            os.link(crowded, links / str(index))
        seconds = time.perf_counter() - started
        print(f"EMLINK setup: {_EXT4_LINK_MAX - 1} links in {seconds:.2f} s")
        assert seconds < 20
        assert crowded.stat().st_nlink == _EXT4_LINK_MAX
        with pytest.raises(OSError, match="Too many links") as at_limit:  # the kernel's limit, not ours
            os.link(crowded, links / "one-more")
        assert at_limit.value.errno == errno.EMLINK

        backend = CountingBackend()
        linker = Linker(env=None, backend=backend)
        target = directory / "site-packages"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = linker.link_tree(tree.root, target)
        assert fallback_warnings(caught) == []
        assert linker.fallbacks == ()
        assert linker.mode is LinkMode.HARDLINK
        assert backend.linker_errnos == [("hardlink", errno.EMLINK)]
        # The probe's scratch clone fails; its check on one existing file of the cache may
        # pick the crowded file (directory order is ext4's hash order), and EMLINK there is
        # about that file only, so the verdict stays hardlink.
        assert backend.errnos[0] == ("clone", errno.EOPNOTSUPP)
        assert set(backend.errnos) <= {("clone", errno.EOPNOTSUPP), ("hardlink", errno.EMLINK)}
        assert stats == LinkStats(
            hardlinked=len(tree.files) - 1,
            copied=1,
            symlinks=1,
            directories=tree.directories + 1,
            bytes=crowded.stat().st_size,  # the one copy: hard links count no bytes
        )
        for name in tree.files:
            source, twin = tree.root / name, target / name
            assert twin.read_bytes() == source.read_bytes()
            assert stat.S_IMODE(twin.stat().st_mode) == stat.S_IMODE(source.stat().st_mode)
            if source == crowded:
                assert twin.stat().st_nlink == 1
                assert identity(twin) != identity(source)
            else:
                assert identity(twin) == identity(source)
                assert twin.stat().st_nlink == 2
    finally:
        assert mounts.release(directory) == []


# -- replace=True -------------------------------------------------------------------------------------


def test_replace_relinks_over_an_existing_tree(mounts: ScratchMounts) -> None:
    directory = mounts.ext4()
    tree = make_site_packages(directory / "cache", seed=31)
    target = directory / "site-packages"
    assert Linker("copy", env=None).link_tree(tree.root, target).copied == len(tree.files)
    changed = tree.files[9]
    (tree.root / changed).write_bytes(b"new version\n" * 500)
    with pytest.raises(LinkFailedError) as raised:
        Linker(env=None).link_tree(tree.root, target)
    assert raised.value.errno == errno.EEXIST

    with open(target / changed, "rb") as held:
        old_bytes = held.read()
        old_inode = os.fstat(held.fileno()).st_ino
        stats = Linker(env=None, replace=True).link_tree(tree.root, target)
        held.seek(0)
        # The old file was renamed over, not rewritten in place: a reader keeps its version.
        assert held.read() == old_bytes
    assert old_bytes != (tree.root / changed).read_bytes()
    assert (target / changed).stat().st_ino != old_inode
    assert stats == expected_stats(tree, LinkMode.HARDLINK, directories=0)
    check_tree(tree, target, LinkMode.HARDLINK)
    assert litter(directory) == []

    # Again: every name already links to the source's inode, so rename(2) is a no-op and the
    # temporary name must be removed by hand.
    again = Linker(env=None, replace=True).link_tree(tree.root, target)
    assert again == stats
    check_tree(tree, target, LinkMode.HARDLINK)
    assert litter(directory) == []


# -- one warning per pair ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("files_beyond_the_probes_search")
def test_each_pair_falls_back_and_warns_once(mounts: ScratchMounts) -> None:
    first_dir, second_dir = mounts.ext4(), mounts.ext4_other()
    first = make_site_packages(first_dir / "cache" / "lib", seed=41)
    second = make_site_packages(second_dir / "cache" / "lib", seed=42)
    first_target, second_target = first_dir / "venv", second_dir / "venv"
    first_plain, second_plain = first.root.parent / "plain.py", second.root.parent / "plain.py"
    first_plain.write_bytes(b"plain\n")
    second_plain.write_bytes(b"plain\n")
    linker = Linker(env=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _immutable(first.root / name for name in first.files):
            stats = linker.link_tree(first.root, first_target / "lib")
        assert len(fallback_warnings(caught)) == 1
        assert stats == expected_stats(first, LinkMode.COPY)
        check_tree(first, first_target / "lib", LinkMode.COPY)

        # The other pair (the second ext4) is untouched by the first pair's fallback.
        direct = second_target / "direct.py"
        assert linker.link(second_plain, direct) is LinkMode.HARDLINK
        assert identity(direct) == identity(second_plain)

        with _immutable(second.root / name for name in second.files):
            stats = linker.link_tree(second.root, second_target / "lib")
        assert stats == expected_stats(second, LinkMode.COPY)
        check_tree(second, second_target / "lib", LinkMode.COPY)

        # Sticky: the first pair stays at copy, without another warning, for a file that
        # could be hardlinked.
        again = first_target / "again.py"
        assert linker.link(first_plain, again) is LinkMode.COPY
        assert identity(again) != identity(first_plain)
    messages = fallback_warnings(caught)
    assert len(messages) == 2, messages
    assert [(f.from_mode, f.to_mode, f.errno) for f in linker.fallbacks] == [
        (LinkMode.HARDLINK, LinkMode.COPY, errno.EPERM)
    ] * 2
    assert linker.fallbacks[0].source_mount != linker.fallbacks[1].source_mount


def _set_default_acl(directory: Path, user: int, group: int, other: int) -> None:
    """setfacl -d -m u::U,g::G,o::O DIR, through the xattr (acl(5): version 2, then
    (tag, perm, id) entries; ACL_USER_OBJ 0x01, ACL_GROUP_OBJ 0x04, ACL_OTHER 0x20)."""
    undefined = 0xFFFF_FFFF
    entries = ((0x01, user), (0x04, group), (0x20, other))
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, undefined) for tag, perm in entries)
    os.setxattr(directory, "system.posix_acl_default", value)


def test_a_default_acl_in_the_target_does_not_strip_the_executable_bit(mounts: ScratchMounts) -> None:
    """acl(5): a default ACL replaces the umask for new files, so the umask read once per
    tree says nothing there; link_tree must keep the bits as link() does."""
    base = mounts.ext4()
    tree = make_site_packages(base / "cache", seed=44)
    target = base / "venv"
    target.mkdir()
    _set_default_acl(target, user=6, group=4, other=4)  # rw-, r--, r--: no x for anyone
    stats = Linker("copy", env=None).link_tree(tree.root, target / "lib")
    assert stats.copied == len(tree.files)
    check_tree(tree, target / "lib", LinkMode.COPY)  # every permission bit, 0o755 tool included
    single = target / "single-tool"
    Linker("copy", env=None).link(tree.root / tree.executable, single)
    assert stat.S_IMODE(single.stat().st_mode) == 0o755


def test_a_default_acl_on_a_directory_the_target_already_had_is_asked_for(mounts: ScratchMounts) -> None:
    """Directories link_tree makes have their parent's default ACL (or none); one that was
    there before has its own, whatever its parent has."""
    base = mounts.ext4()
    tree = make_site_packages(base / "cache", seed=45)
    target = base / "venv" / "lib"
    (target / "bin").mkdir(parents=True)  # the executable's directory, with an ACL of its own
    _set_default_acl(target / "bin", user=6, group=4, other=4)  # rw-, r--, r--: no x for anyone
    stats = Linker("copy", env=None).link_tree(tree.root, target)
    assert stats.copied == len(tree.files)
    check_tree(tree, target, LinkMode.COPY)  # 0o755 for bin/tool too
