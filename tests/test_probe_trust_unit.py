"""The rules behind a representative probe, mode words in Probe, SideFacts.exists, and the
exit wait for abandoned probes: pure tables, plus fake backends on an ordinary directory."""

from __future__ import annotations

import errno
import importlib
import os
import threading
import time
from pathlib import Path

import pytest

from linkprobe import InvalidModeError, LinkMode, NoUsableModeError, Status, UnsupportedModeError, probe
from linkprobe.linux import LinuxBackend
from linkprobe.probe import SCRATCH_PREFIX
from linkprobe.reasons import ReasonContext, existing_file_decides, explain_existing_failure, explain_failure
from linkprobe.result import Probe, SideFacts, Verdict, missing_note

probe_module = importlib.import_module("linkprobe.probe")  # linkprobe.probe is also the function
timeout_module = importlib.import_module("linkprobe._timeout")

SOURCE = SideFacts("~/.cache/pkgs", "/home/u/.cache/pkgs", 2049, "/home", "ext4")
TARGET = SideFacts(".venv", "/srv/app", 2049, "/home", "ext4", exists=False)


# ---------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("mode", "code", "decides"),
    [
        (LinkMode.HARDLINK, errno.EPERM, True),  # fs.protected_hardlinks
        (LinkMode.HARDLINK, errno.EXDEV, True),
        (LinkMode.HARDLINK, errno.EACCES, True),
        (LinkMode.HARDLINK, errno.EMLINK, False),  # that one file is at its link limit
        (LinkMode.HARDLINK, errno.ETXTBSY, False),
        (LinkMode.HARDLINK, errno.ENOENT, False),  # pruned meanwhile
        (LinkMode.CLONE, errno.EOPNOTSUPP, True),
        (LinkMode.CLONE, errno.EXDEV, True),
        (LinkMode.CLONE, errno.EACCES, True),  # the source's files cannot be read
        (LinkMode.CLONE, errno.EINVAL, False),  # ioctl_ficlone(2): a swap or special file
        (LinkMode.CLONE, errno.ETXTBSY, False),
        (LinkMode.COPY, errno.EACCES, True),  # a copy must read the file
        (LinkMode.COPY, errno.EPERM, False),
        (LinkMode.COPY, errno.ELOOP, False),  # swapped for a symlink since the search
        (LinkMode.CLONE, errno.ELOOP, False),
        (LinkMode.SYMLINK, errno.EPERM, False),
    ],
)
def test_existing_file_decides(mode: LinkMode, code: int, decides: bool) -> None:
    assert existing_file_decides(mode, code) is decides


@pytest.mark.parametrize(
    ("mode", "code", "owner", "reason"),
    [
        (
            LinkMode.HARDLINK,
            errno.EPERM,
            0,
            "the source's files belong to uid 0; fs.protected_hardlinks forbids linking them (tried /c/a.py)",
        ),
        (
            LinkMode.HARDLINK,
            errno.EPERM,
            None,
            "the kernel refused to link the source's file /c/a.py (EPERM): immutable or append-only?",
        ),
        (LinkMode.CLONE, errno.EACCES, None, "the source's files cannot be read (permission denied on /c/a.py)"),
        (
            LinkMode.CLONE,
            errno.EOPNOTSUPP,
            None,
            "works for a new file but not for the source's file /c/a.py: operation not supported (EOPNOTSUPP)",
        ),
    ],
)
def test_explain_existing_failure(mode: LinkMode, code: int, owner: int | None, reason: str) -> None:
    ctx = ReasonContext(SOURCE, TARGET, existing_file="/c/a.py", existing_owner=owner)
    assert explain_existing_failure(mode, code, ctx) == reason


def test_a_read_only_sources_file_of_another_user_names_the_owner() -> None:
    ctx = ReasonContext(SOURCE, TARGET, other_owner=True, existing_file="/c/a.py", existing_owner=1000)
    assert explain_failure(LinkMode.HARDLINK, errno.EPERM, ctx) == (
        "the source's files belong to uid 1000; fs.protected_hardlinks forbids linking them"
    )


def test_missing_note_and_exists_in_to_dict() -> None:
    assert missing_note(SOURCE) is None
    assert missing_note(TARGET) == "does not exist yet; probed /srv/app"
    assert SOURCE.to_dict()["exists"] is True
    assert TARGET.to_dict()["exists"] is False


def _probe_with(**supported: bool) -> Probe:
    verdicts = tuple(
        Verdict(mode, Status.SUPPORTED if supported.get(mode.value) else Status.UNSUPPORTED, f"{mode} why", 95)
        for mode in LinkMode
    )
    return Probe(SOURCE, TARGET, verdicts, None, False)


@pytest.mark.parametrize("word", ["clone", "reflink", " Clone ", "COW", LinkMode.CLONE])
def test_mode_words_are_accepted_where_a_mode_is(word: str) -> None:
    result = _probe_with(clone=True)
    assert result.require(word) is LinkMode.CLONE
    assert result.verdict(word).mode is LinkMode.CLONE
    assert result.supports(word) is True


def test_require_of_a_failing_mode_word_raises_with_a_readable_message() -> None:
    result = _probe_with(copy=True)
    with pytest.raises(UnsupportedModeError) as refused:
        result.require("clone")
    assert refused.value.mode is LinkMode.CLONE
    assert str(refused.value) == "clone does not work from ~/.cache/pkgs to .venv: clone why"


@pytest.mark.parametrize("word", ["auto", "", "  AUTO "])
def test_require_of_an_auto_word_is_auto(word: str) -> None:
    assert _probe_with(hardlink=True, copy=True).require(word) is LinkMode.HARDLINK


def test_require_of_an_order_word_is_that_order() -> None:
    result = _probe_with(hardlink=True, copy=True)
    assert result.require("clone-or-copy") is LinkMode.COPY  # never hardlink
    assert result.require(None, order=("reflink", "copy")) is LinkMode.COPY
    with pytest.raises(NoUsableModeError):
        _probe_with().require("clone-or-copy")


@pytest.mark.parametrize("word", ["hardlinks", "auto", ""])
def test_a_word_that_names_no_mode_has_no_verdict(word: str) -> None:
    with pytest.raises(InvalidModeError):
        _probe_with().verdict(word)
    with pytest.raises(InvalidModeError):
        _probe_with().supports(word)


def test_a_bad_word_in_require_is_invalid() -> None:
    with pytest.raises(InvalidModeError, match="hardlinks"):
        _probe_with().require("hardlinks")
    with pytest.raises(InvalidModeError):
        _probe_with().require(None, order=("clone", "bogus"))


# ------------------------------------------------------- the existing-file check, faked


class RefusesExisting(LinuxBackend):
    """Links and clones our scratch files, refuses the source's own files with ``code``."""

    def __init__(self, code: int, modes: tuple[LinkMode, ...] = (LinkMode.HARDLINK,)) -> None:
        self.code = code
        self.modes = modes
        self.sources: list[tuple[LinkMode, str]] = []

    def _check(self, mode: LinkMode, source: str) -> None:
        self.sources.append((mode, source))
        if mode in self.modes and not os.path.basename(source).startswith(SCRATCH_PREFIX):
            raise OSError(self.code, os.strerror(self.code), source)

    def hardlink(self, source: str, target: str) -> None:
        self._check(LinkMode.HARDLINK, source)
        super().hardlink(source, target)

    def clone(self, source: str, target: str, hints: object = None) -> None:
        self._check(LinkMode.CLONE, source)
        raise OSError(errno.EOPNOTSUPP, "no reflink here", source)


def _cache(tmp_path: Path) -> tuple[Path, Path, Path]:
    source = tmp_path / "cache"
    (source / "pkg").mkdir(parents=True)
    wheel = source / "pkg" / "mod.py"
    wheel.write_text("x = 1\n")
    target = tmp_path / "venv"
    target.mkdir()
    return source, target, wheel


def test_a_refusal_for_the_sources_file_is_the_verdict(tmp_path: Path) -> None:
    source, target, wheel = _cache(tmp_path)
    backend = RefusesExisting(errno.EPERM)
    result = probe(source, target, cache=False, backend=backend)
    hardlink = result.verdict(LinkMode.HARDLINK)
    assert (hardlink.status, hardlink.errno) == (Status.UNSUPPORTED, errno.EPERM)
    assert str(wheel) in hardlink.reason
    assert result.existing_file == str(wheel)
    assert (result.linked_from, result.linked_from_existing) == (None, False)
    assert result.best is LinkMode.COPY
    # The scratch file first, then the existing file; clone failed already for scratch.
    assert [mode for mode, _ in backend.sources] == [LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.HARDLINK]
    assert os.path.basename(backend.sources[1][1]).startswith(SCRATCH_PREFIX)
    assert backend.sources[2][1] == str(wheel)
    assert not list(target.iterdir())
    assert sorted(path.name for path in source.rglob("*")) == ["mod.py", "pkg"]


def test_a_per_file_refusal_of_the_sources_file_keeps_the_mode(tmp_path: Path) -> None:
    """EMLINK: that one file is at its link limit; the linker copies it, the mode holds."""
    source, target, wheel = _cache(tmp_path)
    result = probe(source, target, cache=False, backend=RefusesExisting(errno.EMLINK))
    assert result.verdict(LinkMode.HARDLINK).supported
    assert result.existing_file == str(wheel)


def test_no_existing_file_means_the_scratch_verdicts(tmp_path: Path) -> None:
    source, target = tmp_path / "empty", tmp_path / "venv"
    source.mkdir()
    litter = source / f"{SCRATCH_PREFIX}0123456789abcdef-src"
    litter.write_text("somebody's litter")
    (source / "link").symlink_to("/etc/hostname")
    backend = RefusesExisting(errno.EPERM)
    result = probe(source, target, cache=False, backend=backend)
    litter.unlink()  # not ours to leave behind for the litter check
    assert result.verdict(LinkMode.HARDLINK).supported
    assert result.existing_file is None
    assert [mode for mode, _ in backend.sources] == [LinkMode.CLONE, LinkMode.HARDLINK]


def test_a_source_file_is_its_own_existing_file(tmp_path: Path) -> None:
    _, target, wheel = _cache(tmp_path)
    backend = RefusesExisting(errno.EPERM)
    result = probe(wheel, target, cache=False, backend=backend)
    assert result.existing_file == result.linked_from == str(wheel)
    assert result.verdict(LinkMode.HARDLINK).errno == errno.EPERM
    assert [mode for mode, _ in backend.sources] == [LinkMode.CLONE, LinkMode.HARDLINK]  # one attempt each


def test_the_search_is_bounded_and_depth_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: str) -> os._ScandirIterator[str]:
        reads.append(path)
        return real_scandir(path)

    monkeypatch.setattr(probe_module.os, "scandir", counting_scandir)
    top = tmp_path / "store"  # pnpm's layout: files at store/files/XX/YY/hash
    for name in ("00", "01", "02", "03"):
        (top / "files" / name / "ab").mkdir(parents=True)
        (top / "files" / name / "ab" / "hash").write_text("x")
    found = probe_module._file_to_check(str(top), top.stat().st_dev)
    assert found is not None
    assert Path(found).name == "hash"
    # store, files, one XX, its ab: down the first branch. Breadth first would read
    # every XX before any ab, and give up at the bound.
    assert len(reads) == 4
    reads.clear()
    wide = tmp_path / "wide"
    for index in range(300):
        (wide / f"d{index:03}").mkdir(parents=True)
    (wide / "d299" / "late.py").parent.mkdir(exist_ok=True)
    (wide / "d299" / "late.py").write_text("x")
    assert probe_module._file_to_check(str(wide), wide.stat().st_dev) is None  # beyond the bound
    assert len(reads) <= probe_module._CHECK_DIRS


class BlocksOnExisting(LinuxBackend):
    """Links our scratch file; blocks on the source's own file until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocked = threading.Event()

    def hardlink(self, source: str, target: str) -> None:
        if not os.path.basename(source).startswith(SCRATCH_PREFIX):
            self.blocked.set()
            self.release.wait(30)
        super().hardlink(source, target)


def test_a_timeout_during_the_check_is_no_verdict(tmp_path: Path) -> None:
    """The scratch link worked, the check on the real file got no answer: timed out, not
    supported."""
    source, target, _ = _cache(tmp_path)
    backend = BlocksOnExisting()
    try:
        result = probe(source, target, cache=False, backend=backend, timeout=0.3)
        assert backend.blocked.is_set()
        assert result.verdict(LinkMode.HARDLINK).status is Status.TIMED_OUT
        assert result.verdict(LinkMode.COPY).supported
    finally:
        backend.release.set()
        for thread in threading.enumerate():
            if thread.name == "linkprobe-probe":
                thread.join(10)


# ------------------------------------------------------- exit waits for abandoned probes


def test_exit_wait_gives_up_on_a_call_that_does_not_return(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe stuck in one call longer than the grace is a hung filesystem: no wait."""
    stuck = threading.Event()
    thread = threading.Thread(target=stuck.wait, args=(30,), daemon=True)
    thread.start()
    progress = timeout_module.Progress()
    progress.last_beat = time.monotonic() - 1.0  # in its call for a second already
    monkeypatch.setitem(timeout_module.abandoned, id(progress), (thread, progress))
    try:
        timeout_module.wait_for_abandoned(grace=0.5, limit=30)
        assert thread.is_alive()
    finally:
        stuck.set()
        thread.join(10)


def test_exit_wait_waits_while_the_probe_keeps_getting_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty calls of 10 ms each, far beyond one grace period in all: waited for."""
    progress = timeout_module.Progress()

    def cleaning() -> None:
        for _ in range(50):
            progress.beat()
            time.sleep(0.01)

    thread = threading.Thread(target=cleaning, daemon=True)
    thread.start()
    monkeypatch.setitem(timeout_module.abandoned, id(progress), (thread, progress))
    timeout_module.wait_for_abandoned(grace=0.2, limit=30)
    assert not thread.is_alive()


def test_a_timed_out_probe_is_waited_for_at_exit_and_forgotten_when_done(tmp_path: Path) -> None:
    source, target, _ = _cache(tmp_path)
    backend = BlocksOnExisting()
    result = probe(source, target, cache=False, backend=backend, timeout=0.2)
    assert result.timed_out
    assert len(timeout_module.abandoned) == 1
    backend.release.set()
    timeout_module.wait_for_abandoned()
    assert timeout_module.abandoned == {}
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(SCRATCH_PREFIX)]


# ------------------------------------------------------------------- SideFacts.exists


def test_exists_for_missing_and_present_paths(tmp_path: Path) -> None:
    source, target, wheel = _cache(tmp_path)
    result = probe(tmp_path / "no" / "such" / "cache", target / "lib" / "site", cache=False)
    assert (result.source.exists, result.source.probed) == (False, str(tmp_path))
    assert (result.target.exists, result.target.probed) == (False, str(target))
    document = result.to_dict()
    assert (document["source"]["exists"], document["target"]["exists"]) == (False, False)
    assert missing_note(result.source) == f"does not exist yet; probed {tmp_path}"
    present = probe(source, target, cache=False)
    assert (present.source.exists, present.target.exists) == (True, True)
    assert probe(wheel, target, cache=False).source.exists is True
    link = tmp_path / "link-to-cache"
    link.symlink_to(source)
    assert probe(link, target, cache=False).source.exists is True
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    assert probe(dangling, target, cache=False).source.exists is False


def test_a_side_that_never_answered_counts_as_existing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stat answered before the deadline: ``probed`` is the given path, not looked at."""
    release = threading.Event()
    real_locate = probe_module.locate

    def hung_locate(path: str, role: str) -> object:
        release.wait(30)
        return real_locate(path, role)

    monkeypatch.setattr(probe_module, "locate", hung_locate)
    try:
        result = probe(tmp_path / "cache", tmp_path / "venv", cache=False, timeout=0.2)
        assert result.timed_out
        assert (result.source.st_dev, result.source.exists) == (None, True)
        assert result.source.probed == str(tmp_path / "cache")
        assert missing_note(result.source) is None
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "linkprobe-probe":
                thread.join(10)
