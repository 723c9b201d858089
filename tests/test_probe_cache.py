"""The in-process probe cache: a hit is used only while both paths lead to the same inodes
and the mount table is unchanged; the mount table is read again only after a change.

No mounts here (see test_probe_trust_realfs.py for real ones): the watch on
/proc/self/mountinfo is faked where a change is needed, or switched off (a platform
without a pollable mount table)."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkprobe.mounts as mounts_module
from linkprobe import LinkMode, clear_cache, probe
from linkprobe.linux import LinuxBackend
from linkprobe.mounts import forget_mount_table, mount_generation, mount_table, parse_mountinfo


class Counting(LinuxBackend):
    """Counts scratch files made in the source: one per probe that really ran."""

    def __init__(self) -> None:
        self.runs = 0

    def create_scratch(self, path: str, content: bytes = b"linkprobe\n") -> tuple[int, int]:
        if path.endswith("-src"):
            self.runs += 1
        return super().create_scratch(path, content)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A source and a target directory, with a mount table that stays quiet: the machine
    may mount and unmount things meanwhile (other processes share the namespace), and a
    real change drops the cache, which these tests count (the real watch is tested with
    real mounts in test_probe_trust_realfs.py)."""
    clear_cache()
    mount_generation()  # the watch is open
    mounts_module._watch.poll = lambda timeout: []
    source, target = tmp_path / "cache", tmp_path / "venv"
    source.mkdir()
    target.mkdir()
    yield source, target
    clear_cache()  # also a new, real watch: the quiet poll goes


def test_a_hit_runs_nothing_and_is_the_same_result(pair: tuple[Path, Path]) -> None:
    source, target = pair
    backend = Counting()
    first = probe(source, target, backend=backend)
    again = probe(source, target, backend=backend)
    assert backend.runs == 1
    assert again is first


def test_a_hit_with_a_timeout_starts_no_thread(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = pair
    first = probe(source, target, timeout=5)
    timeout_module = importlib.import_module("linkprobe._timeout")

    def no_thread(*args: object) -> bool:
        raise AssertionError("a cached answer needs no thread")

    monkeypatch.setattr(timeout_module, "run_in_thread", no_thread)
    assert probe(source, target, timeout=5) is first


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_a_bad_timeout_is_refused_even_when_the_answer_is_cached(pair: tuple[Path, Path], timeout: float) -> None:
    source, target = pair
    probe(source, target)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        probe(source, target, timeout=timeout)


def test_a_change_seen_by_another_thread_drops_the_cache_for_all(pair: tuple[Path, Path]) -> None:
    """One thread's poll takes the kernel's event (mounts_poll() resets it): the other
    threads must still miss, through the generation it moved on."""
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend)
    events = [[(0, 0x8)]]  # POLLPRI, once
    mounts_module._watch.poll = lambda timeout: events.pop() if events else []
    seen = threading.Thread(target=mount_generation)
    seen.start()
    seen.join(10)
    probe(source, target, backend=backend)
    assert backend.runs == 2


def test_no_cache_probes_every_time(pair: tuple[Path, Path]) -> None:
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend, cache=False)
    probe(source, target, backend=backend, cache=False)
    assert backend.runs == 2


def test_a_replaced_target_directory_is_probed_again(pair: tuple[Path, Path], tmp_path: Path) -> None:
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend)
    target.rename(tmp_path / "old-venv")
    target.mkdir()  # a new inode at the same name
    probe(source, target, backend=backend)
    assert backend.runs == 2


def test_a_target_made_unwritable_is_probed_again(pair: tuple[Path, Path]) -> None:
    """Same inode, other mode bits (also what a directory made anew on a reused inode
    number looks like): what may be created there is no longer known."""
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend)
    target.chmod(0o555)
    try:
        probe(source, target, backend=backend)
        if os.geteuid() == 0:  # only root may give the directory away
            os.chown(target, 65534, 65534)
            probe(source, target, backend=backend)
    finally:
        target.chmod(0o755)
    assert backend.runs == (3 if os.geteuid() == 0 else 2)


def test_a_repointed_symlink_is_probed_again(pair: tuple[Path, Path], tmp_path: Path) -> None:
    source, target = pair
    other = tmp_path / "other"
    other.mkdir()
    link = tmp_path / "venv-link"
    link.symlink_to(target)
    backend = Counting()
    assert probe(source, link, backend=backend).target.probed == str(target)
    link.unlink()
    link.symlink_to(other)
    assert probe(source, link, backend=backend).target.probed == str(other)
    assert backend.runs == 2


def test_a_missing_target_that_appears_is_probed_again(pair: tuple[Path, Path]) -> None:
    source, target = pair
    venv = target / "deep" / ".venv"
    backend = Counting()
    assert probe(source, venv, backend=backend).target.exists is False
    assert probe(source, venv, backend=backend).target.exists is False
    assert backend.runs == 1  # still missing: a hit
    (target / "deep").mkdir()  # the nearest existing ancestor moved down
    moved = probe(source, venv, backend=backend)
    assert (moved.target.exists, moved.target.probed) == (False, str(target / "deep"))
    venv.mkdir()
    present = probe(source, venv, backend=backend)
    assert (present.target.exists, present.target.probed) == (True, str(venv))
    assert backend.runs == 3


def test_a_relative_path_is_keyed_with_the_working_directory(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = pair
    for name in ("a", "b"):
        (tmp_path / name / "venv").mkdir(parents=True)
    backend = Counting()
    monkeypatch.chdir(tmp_path / "a")
    assert probe(source, "venv", backend=backend).target.probed == str(tmp_path / "a" / "venv")
    monkeypatch.chdir(tmp_path / "b")
    assert probe(source, "venv", backend=backend).target.probed == str(tmp_path / "b" / "venv")
    assert backend.runs == 2


def test_a_mount_table_change_drops_the_cache(pair: tuple[Path, Path]) -> None:
    """The watch reports POLLPRI (a mount somewhere): every cached probe is dropped, even
    though both paths still stat the same."""
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend)
    watch = mounts_module._watch
    mount_generation()  # the watch is open
    real_poll = watch.poll
    assert real_poll is not None
    reported: list[bool] = []

    def poll_with_one_change(timeout: int) -> list[tuple[int, int]]:
        if not reported:  # the kernel reports a change once per descriptor
            reported.append(True)
            return [(watch.fd or -1, 0x2 | 0x8)]  # POLLPRI|POLLERR
        return real_poll(timeout)

    watch.poll = poll_with_one_change
    probe(source, target, backend=backend)
    probe(source, target, backend=backend)
    assert reported
    assert backend.runs == 2


def test_mount_table_is_a_fresh_list_of_the_live_table() -> None:
    table = mount_table()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        assert table == parse_mountinfo(handle.read())
    table.clear()
    assert mount_table() != []


def test_an_unwatched_read_opens_no_watch() -> None:
    """``mount_table(watch=False)`` (the command line's one probe): the same table, read
    now; no watch descriptor opened, the watch's table and generation left as they were."""
    watch = mounts_module._watch
    forget_mount_table()  # no descriptor, no table
    try:
        generation = watch.generation
        unwatched = mount_table(watch=False)
        assert (watch.fd, watch.table, watch.generation) == (None, None, generation)
        assert unwatched == mount_table()  # the watched read: the same table
        assert watch.fd is not None
    finally:
        forget_mount_table()


def test_a_closed_watch_descriptor_is_never_closed_again() -> None:
    """POLLNVAL: somebody closed our descriptor, and its number may be another file now."""
    watch = mounts_module._watch
    forget_mount_table()  # no descriptor of ours now
    somebody = os.open(os.devnull, os.O_RDONLY)
    try:
        before = mount_generation()
        assert before is not None
        own = watch.fd
        assert own is not None
        os.close(own)
        watch.fd = somebody  # as if our number had been closed and then given to somebody
        watch.poll = lambda timeout: [(somebody, 0x20)]  # POLLNVAL
        after = mount_generation()
        assert after is not None
        assert after > before
        os.fstat(somebody)  # still open: not closed by the watch
        assert mount_generation() is not None
        assert watch.fd not in (None, somebody)  # a descriptor of its own again
    finally:
        os.close(somebody)
        forget_mount_table()


def test_without_a_watch_identity_still_decides(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform without a pollable mount table (macOS, Windows, no /proc): the table is
    read at every call and a hit is checked by path identity alone."""
    source, target = pair
    monkeypatch.setattr(mounts_module._watch, "usable", False)
    assert mount_generation() is None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        assert mount_table() == parse_mountinfo(handle.read())
    backend = Counting()
    probe(source, target, backend=backend)
    probe(source, target, backend=backend)
    assert backend.runs == 1
    target.rename(target.with_name("old-venv"))
    target.mkdir()
    probe(source, target, backend=backend)
    assert backend.runs == 2


def test_clear_cache_forgets(pair: tuple[Path, Path]) -> None:
    source, target = pair
    backend = Counting()
    probe(source, target, backend=backend)
    clear_cache()
    probe(source, target, backend=backend)
    assert backend.runs == 2


def test_concurrent_cached_probes_agree(pair: tuple[Path, Path]) -> None:
    source, target = pair
    results: list[LinkMode | None] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            best = probe(source, target).best
            with lock:
                results.append(best)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 400
    assert len(set(results)) == 1


def test_the_cache_keeps_the_newest_entries(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = pair
    cache = importlib.import_module("linkprobe._probe_cache")
    monkeypatch.setattr(cache, "CACHE_LIMIT", 4)
    backend = Counting()
    for index in range(6):
        probe(source, target / f"missing-{index}", backend=backend)
    assert len(cache._cache) == 4
    probe(source, target / "missing-5", backend=backend)  # among the newest: a hit
    assert backend.runs == 6
    probe(source, target / "missing-0", backend=backend)  # the oldest went first
    assert backend.runs == 7


def test_clear_cache_opens_a_new_watch_and_closes_only_its_own() -> None:
    watch = mounts_module._watch
    assert mount_generation() is not None  # Linux with /proc: the table is watched
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        first = mount_generation()
        clear_cache()
        assert mount_generation() != first  # a new watch, a new generation
    assert len(os.listdir("/proc/self/fd")) == before  # each old descriptor was closed
    # Somebody closed our descriptor and its number now names another file: never closed.
    assert watch.fd is not None
    os.close(watch.fd)
    somebody = os.open(os.devnull, os.O_RDONLY)  # takes the lowest free number: ours
    try:
        clear_cache()
        os.fstat(somebody)  # still open
        assert mount_generation() is not None
        assert watch.fd not in (None, somebody)
    finally:
        os.close(somebody)
