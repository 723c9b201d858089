"""What link_tree's hot path does per file: threads only where ``workers=None`` decides they
pay (real copies of large files), hard links without an lstat per file, and the bytes
LinkStats counts for each mode."""

from __future__ import annotations

import collections
import errno
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from _marks import NEEDS_LINUX_SYSCALLS

from linkprobe import Linker, LinkFailedError, LinkMode
from linkprobe.api import ManyResult, SourceHints
from linkprobe.linux import LinuxBackend
from linkprobe.mounts import Mount

pytestmark = NEEDS_LINUX_SYSCALLS

MIB = 1 << 20


class ThreadRecordingBackend(LinuxBackend):
    """The real backend; records which thread made each file of link_tree, per mode."""

    def __init__(self) -> None:
        self.threads: collections.Counter[tuple[str, str]] = collections.Counter()
        self.mode_types: set[type] = set()
        self._lock = threading.Lock()

    def make_many(
        self,
        mode: str,
        source_dir: str,
        target_dir: str,
        files: Sequence[tuple[str, SourceHints]],
        start: int = 0,
        budget: int | None = None,
    ) -> ManyResult:
        kind = "worker" if threading.current_thread() is not threading.main_thread() else "caller"
        result = super().make_many(mode, source_dir, target_dir, files, start, budget)
        with self._lock:
            self.threads[(str(mode), kind)] += result[0] - start
            self.mode_types.add(type(mode))
        return result


def make_files(root: Path, count: int, size: int) -> Path:
    root.mkdir()
    for index in range(count):
        (root / f"f{index}.bin").write_bytes(os.urandom(size))
    return root


def assert_same_files(source: Path, target: Path) -> None:
    for path in source.iterdir():
        assert (target / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """workers=None decides from os.cpu_count(); pin it so the test means the same anywhere."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


@pytest.mark.usefixtures("two_cpus")
def test_decide_copies_large_files_on_worker_threads(tmp_path: Path) -> None:
    """The calling thread copies a directory's files until they hold 8 MiB (two here);
    what is left of such a directory is measured, and its large files go to workers."""
    source = make_files(tmp_path / "large", 6, 4 * MIB)
    backend = ThreadRecordingBackend()
    stats = Linker("copy", env=None, backend=backend).link_tree(source, tmp_path / "out")
    assert backend.threads == {("copy", "caller"): 2, ("copy", "worker"): 4}
    assert (stats.copied, stats.bytes) == (6, 24 * MIB)
    assert_same_files(source, tmp_path / "out")


@pytest.mark.usefixtures("two_cpus")
def test_decide_keeps_a_directory_of_many_small_files_on_the_calling_thread(tmp_path: Path) -> None:
    """200 files of 64 KiB reach the 8 MiB budget; the rest is measured, and files that
    average less than 4 MiB stay on the calling thread."""
    source = make_files(tmp_path / "files", 200, 64 << 10)
    backend = ThreadRecordingBackend()
    stats = Linker("copy", env=None, backend=backend).link_tree(source, tmp_path / "out")
    assert backend.threads == {("copy", "caller"): 200}
    assert (stats.copied, stats.bytes) == (200, 200 * (64 << 10))
    assert_same_files(source, tmp_path / "out")


@pytest.mark.usefixtures("two_cpus")
@pytest.mark.parametrize(
    ("mode", "workers", "size"),
    [
        ("copy", None, 64 << 10),  # small copies: the hand-off costs more than it overlaps
        ("hardlink", None, 4 * MIB),  # link(2) copies nothing, whatever the size
        ("copy", 1, 4 * MIB),  # an explicit number keeps its meaning
    ],
)
def test_decide_keeps_the_rest_on_the_calling_thread(tmp_path: Path, mode: str, workers: int | None, size: int) -> None:
    source = make_files(tmp_path / "files", 3, size)
    backend = ThreadRecordingBackend()
    Linker(mode, env=None, workers=workers, backend=backend).link_tree(source, tmp_path / "out")
    assert backend.threads == {(mode, "caller"): 3}
    assert_same_files(source, tmp_path / "out")


def test_backends_get_the_mode_as_its_word(tmp_path: Path) -> None:
    """The linker works in words (docs/api.md, Backends): a LinkMode given to the Linker
    reaches make_many as the plain str, which equals it."""
    source = make_files(tmp_path / "files", 3, 100)
    backend = ThreadRecordingBackend()
    Linker(LinkMode.HARDLINK, env=None, backend=backend).link_tree(source, tmp_path / "out")
    assert backend.mode_types == {str}
    assert backend.threads == {("hardlink", "caller"): 3}


def test_decide_uses_no_threads_on_one_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    source = make_files(tmp_path / "large", 3, 4 * MIB)
    backend = ThreadRecordingBackend()
    Linker("copy", env=None, backend=backend).link_tree(source, tmp_path / "out")
    assert backend.threads == {("copy", "caller"): 3}


def test_explicit_workers_spread_large_files_over_threads(tmp_path: Path) -> None:
    """A directory of large files is split into batches by bytes (8 MiB), so that the
    workers share it instead of one of them copying the whole directory."""
    source = make_files(tmp_path / "large", 6, 4 * MIB)
    seen: list[str] = []

    class Recording(LinuxBackend):
        def make_many(
            self,
            mode: str,
            source_dir: str,
            target_dir: str,
            files: Sequence[tuple[str, SourceHints]],
            start: int = 0,
            budget: int | None = None,
        ) -> ManyResult:
            seen.append(threading.current_thread().name)
            return super().make_many(mode, source_dir, target_dir, files, start, budget)

    Linker("copy", env=None, workers=2, backend=Recording()).link_tree(source, tmp_path / "out")
    assert len(seen) == 3  # three batches of two files
    assert all(name.startswith("linkprobe") for name in seen)
    assert_same_files(source, tmp_path / "out")


@pytest.mark.parametrize(("mode", "counted"), [("hardlink", False), ("copy", True)])
def test_bytes_count_every_mode_but_hard_links(tmp_path: Path, mode: str, counted: bool) -> None:
    source = make_files(tmp_path / "files", 5, 1000)
    stats = Linker(mode, env=None).link_tree(source, tmp_path / "out")
    assert stats.count(LinkMode(mode)) == 5
    assert stats.bytes == (5000 if counted else 0)


_LINK_500 = """
import sys
from linkprobe import Linker
Linker("hardlink", env=None).link_tree(sys.argv[1], sys.argv[2])
"""


@pytest.mark.skipif(
    shutil.which("strace") is None and os.environ.get("LINKPROBE_REQUIRE_REAL_FS") != "1", reason="needs strace"
)
def test_hard_links_make_no_lstat_per_file(tmp_path: Path) -> None:
    """readdir's d_type already says "regular file": one linkat per file and no stat of it."""
    source = make_files(tmp_path / "cache", 500, 10)
    trace = tmp_path / "trace"
    subprocess.run(
        ["strace", "-f", "-o", str(trace), sys.executable, "-c", _LINK_500, str(source), str(tmp_path / "out")],
        check=True,
    )
    calls = trace.read_text().splitlines()
    linked = [line for line in calls if "linkat(" in line and "f" in line and "= 0" in line]
    per_file_stats = [
        line for line in calls if ("newfstatat(" in line or "statx(" in line or "lstat(" in line) and '.bin"' in line
    ]
    assert len(linked) >= 500
    # The probe stats one existing file of the cache; the tree walk none of the 500.
    assert len(per_file_stats) <= 3, per_file_stats[:5]
    assert len(os.listdir(tmp_path / "out")) == 500


_COPY_200 = """
import sys
from linkprobe import Linker
Linker("copy", env=None).link_tree(sys.argv[1], sys.argv[2])
"""


@pytest.mark.skipif(
    shutil.which("strace") is None and os.environ.get("LINKPROBE_REQUIRE_REAL_FS") != "1", reason="needs strace"
)
def test_a_small_copy_is_six_system_calls(tmp_path: Path) -> None:
    """Per file: open the source, fstat it (mode bits and size; readdir's d_type said
    "regular file", so no path is lstat'ed), create the target, one copy_file_range that
    ends the file at that size, close both; no fchmod, and no call that returns 0 at the
    end of the file."""
    count = 200
    source = make_files(tmp_path / "cache", count, 10)
    trace = tmp_path / "trace"
    subprocess.run(
        ["strace", "-f", "-y", "-o", str(trace), sys.executable, "-c", _COPY_200, str(source), str(tmp_path / "out")],
        check=True,
    )
    # -y names each descriptor's file: count every call that names one of the files.
    per_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in trace.read_text().splitlines():
        call = line.split("(", 1)[0].split()[-1]
        if "stat" in call:  # fstat(fd) or newfstatat(fd, "", AT_EMPTY_PATH) against a path's stat
            call = "fstat" if call == "fstat" or "AT_EMPTY_PATH" in line else "stat"
        for name in set(re.findall(r"\bf\d+\.bin\b", line)):
            per_file[name][call] += 1
    expected = collections.Counter({"fstat": 1, "openat": 2, "copy_file_range": 1, "close": 2})
    assert len(per_file) == count
    # The probe also links and clones from one existing file of the cache.
    others = {name: dict(calls) for name, calls in per_file.items() if calls != expected}
    assert len(others) <= 1, others
    for calls in others.values():
        assert calls["copy_file_range"] == 1, calls
    assert_same_files(source, tmp_path / "out")


@pytest.mark.parametrize("workers", [None, 2])
def test_files_changed_after_the_walk_are_copied_as_they_are_then(tmp_path: Path, workers: int | None) -> None:
    """The walk hands no sizes (readdir's d_type, no lstat); a file that grows or shrinks
    after the walk still arrives whole, with exactly the bytes it has when it is copied."""
    source = make_files(tmp_path / "cache", 8, 5000)
    changed = {
        "f0.bin": os.urandom(9000),
        "f1.bin": os.urandom(3000),
        "f2.bin": b"",
        "f3.bin": os.urandom(3 * MIB),
        "f4.bin": os.urandom(5000),  # same size, other bytes
    }

    class ChangingAfterTheWalk(LinuxBackend):
        def make_many(
            self,
            mode: str,
            source_dir: str,
            target_dir: str,
            files: Sequence[tuple[str, SourceHints]],
            start: int = 0,
            budget: int | None = None,
        ) -> ManyResult:
            assert {hints[:2] for _, hints in files} == {(None, None)}  # read when each is opened
            for name, data in changed.items():
                (Path(source_dir) / name).write_bytes(data)
            return super().make_many(mode, source_dir, target_dir, files, start, budget)

    stats = Linker("copy", env=None, workers=workers, backend=ChangingAfterTheWalk()).link_tree(
        source, tmp_path / "out"
    )
    assert stats.copied == 8
    assert stats.bytes == 3 * 5000 + sum(len(data) for data in changed.values())
    assert_same_files(source, tmp_path / "out")
    assert (tmp_path / "out" / "f3.bin").read_bytes() == changed["f3.bin"]


def test_default_acls_are_asked_for_once_per_directory_the_call_did_not_make(tmp_path: Path) -> None:
    """acl(5): a new directory has its parent's default ACL, so below the nearest directory
    that was there before, whether new files get the umask is known without asking."""
    source = tmp_path / "cache"
    source.mkdir()
    for package in ("a", "a/sub", "b"):
        make_files(source / package, 3, 100)
    (tmp_path / "out" / "b").mkdir(parents=True)  # there before the call
    asked: list[str] = []

    class Asking(LinuxBackend):
        def has_default_acl(self, directory: str) -> bool:
            asked.append(directory)
            return super().has_default_acl(directory)

    stats = Linker("copy", env=None, backend=Asking()).link_tree(source, tmp_path / "out")
    assert stats.copied == 9
    assert sorted(asked) == [str(tmp_path / "out"), str(tmp_path / "out" / "b")]


def test_the_linker_imports_logging_and_threads_only_when_used(tmp_path: Path) -> None:
    """logging comes with the first warning record, concurrent.futures with the first pool."""
    code = (
        "import sys, linkprobe.linker\n"
        "print('logging' in sys.modules, 'concurrent.futures' in sys.modules)\n"
        "linkprobe.linker.Linker('copy', env=None).link_tree(sys.argv[1], sys.argv[2])\n"
        "print('logging' in sys.modules, 'concurrent.futures' in sys.modules)\n"
    )
    source = make_files(tmp_path / "files", 3, 100)
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(tmp_path / "out")], check=True, capture_output=True, text=True
    )
    assert done.stdout.split() == ["False", "False", "False", "False"]


def test_linking_a_tree_imports_no_module_it_does_not_use(tmp_path: Path) -> None:
    """A process that only links a tree pays for no module it does not use: the stop flag is
    an attribute, the locks are _thread's, warnings comes with the first warning, and the
    modes are words (enum, LinkMode and the failure rules come with the first LinkMode
    returned or the first file that fails)."""
    import linkprobe

    source = make_files(tmp_path / "files", 3, 100)
    # -I -S: no site, so no .pth file (coverage's, in CI) imports anything before us.
    package_parent = os.path.dirname(os.path.dirname(linkprobe.__file__))
    code = (
        f"import sys; sys.path.insert(0, {package_parent!r})\n"
        "from linkprobe import Linker\n"
        "Linker('hardlink', env=None).link_tree(sys.argv[1], sys.argv[2])\n"
        "Linker('copy', env=None).link_tree(sys.argv[1], sys.argv[3])\n"
        "print(sorted(name for name in ('threading', 'warnings', 'importlib', 'logging', 'enum', 'functools',"
        " 'select', 'linkprobe.modes', 'linkprobe.result', 'linkprobe.fallback') if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(source), str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["[]"]
    assert_same_files(source, tmp_path / "b")


def test_a_linker_reads_the_mount_table_once_for_its_probes_and_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trees, a file, and a nested directory each ask for mounts: one Linker reads the
    table once, and watches nothing (a new Linker reads it anew, so it sees new mounts)."""
    mounts_module = importlib.import_module("linkprobe.mounts")
    reads: list[str] = []
    real_read = mounts_module._read_table

    def counting(mountinfo: str) -> list[Mount]:
        reads.append(mountinfo)
        result: list[Mount] = real_read(mountinfo)
        return result

    monkeypatch.setattr(mounts_module, "_read_table", counting)
    source = make_files(tmp_path / "files", 3, 100)
    (source / "sub").mkdir()
    (source / "sub" / "one").write_bytes(b"1")
    linker = Linker("copy", env=None)
    linker.link_tree(source, tmp_path / "a")
    linker.link_tree(source, tmp_path / "b")
    linker.link(source / "sub" / "one", tmp_path / "c" / "one")
    assert reads == ["/proc/self/mountinfo"]
    assert (tmp_path / "b" / "sub" / "one").read_bytes() == (tmp_path / "c" / "one").read_bytes() == b"1"
    Linker("copy", env=None).link_tree(source, tmp_path / "d")
    assert len(reads) == 2


def test_link_stats_and_fallback_are_immutable_named_tuples() -> None:
    from linkprobe import Fallback, LinkStats

    stats = LinkStats(hardlinked=2, copied=1, bytes=10)
    assert stats == LinkStats(hardlinked=2, copied=1, bytes=10)
    assert (stats.files, stats.count(LinkMode.COPY), stats.symlinks) == (3, 1, 0)
    assert stats == (0, 2, 0, 1, 0, 0, 10)  # the trade: also a tuple
    assert stats._replace(bytes=0).bytes == 0
    with pytest.raises(AttributeError):
        stats.bytes = 1  # type: ignore[misc]
    fallback = Fallback("/", "/mnt", LinkMode.CLONE, LinkMode.COPY, 18, "cross-device")
    assert fallback._asdict()["to_mode"] is LinkMode.COPY
    assert hash(fallback) == hash(Fallback("/", "/mnt", LinkMode.CLONE, LinkMode.COPY, 18, "cross-device"))


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_a_fifo_in_the_tree_is_an_error_naming_it_and_nothing_is_left(tmp_path: Path, mode: str) -> None:
    """d_type says "not a regular file": the lstat then tells what it is. Linking a FIFO
    would be wrong and copying it would block, so the call fails and removes what it made."""
    source = make_files(tmp_path / "cache", 3, 100)
    os.mkfifo(source / "pipe")
    target = tmp_path / "out"
    with pytest.raises(LinkFailedError) as raised:
        Linker(mode, env=None).link_tree(source, target)
    assert raised.value.filename == str(source / "pipe")
    assert raised.value.not_removed == ()
    assert not target.exists()


@pytest.mark.usefixtures("two_cpus")
def test_a_file_gone_after_the_first_8_mib_fails_naming_it_and_nothing_is_left(tmp_path: Path) -> None:
    """What is left of a directory of large files is measured after the calling thread has
    copied 8 MiB; a file deleted in between is no size to measure but an error of its own."""
    source = make_files(tmp_path / "large", 6, 4 * MIB)

    class DeletingAfterTheFirstCall(LinuxBackend):
        calls = 0

        def make_many(
            self,
            mode: str,
            source_dir: str,
            target_dir: str,
            files: Sequence[tuple[str, SourceHints]],
            start: int = 0,
            budget: int | None = None,
        ) -> ManyResult:
            result = super().make_many(mode, source_dir, target_dir, files, start, budget)
            type(self).calls += 1
            if type(self).calls == 1:
                os.unlink(Path(source_dir) / files[result[0]][0])  # the first file not made yet
            return result

    with pytest.raises(LinkFailedError) as raised:
        Linker("copy", env=None, backend=DeletingAfterTheFirstCall()).link_tree(source, tmp_path / "out")
    assert raised.value.errno == errno.ENOENT
    assert raised.value.source == str(source / "f2.bin")
    assert not (tmp_path / "out").exists()
