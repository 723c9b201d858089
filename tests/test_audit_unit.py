"""The audit's pure rules, its block-map readers through fakes (FIEMAP's ioctl, macOS's
getattrlist, an OS without either), the text it prints and its progress line."""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import sys
from pathlib import Path

import pytest

from linkprobe import LinkMode, audit
from linkprobe import auditing as auditing_module
from linkprobe._audit_rules import (
    KINDS,
    OTHER_REASONS,
    classify_file,
    classify_symlink,
    clone_possible,
    not_as_expected,
    savable_bytes,
)
from linkprobe.auditing import SCHEMA_VERSION, Audit, KindTotal
from linkprobe.cli import audit as cli_audit
from linkprobe.extents import (
    ATTR_CMNEXT_PRIVATESIZE,
    FIEMAP_EXTENT_DATA_INLINE,
    FIEMAP_EXTENT_LAST,
    FIEMAP_EXTENT_SHARED,
    FS_IOC_FIEMAP,
    ExtentBytes,
    fd_extent_bytes,
    fiemap_extent_bytes,
    macos_extent_bytes,
    shared_extent_bytes,
)
from linkprobe.result import Probe, SideFacts, Status, Verdict

# -- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "same_inode", "extent", "clone_possible", "expected"),
    [
        (10, True, None, False, ("hardlink", None)),
        (0, True, None, False, ("hardlink", None)),  # the inode proves the link, empty or not
        (0, False, ExtentBytes(0, 0, 0), True, ("other", "empty")),
        (10, False, None, True, ("other", "clones-unknown")),  # no block map, and clone works
        (10, False, None, False, ("copy", None)),  # no block map, but nothing could be a clone
        (100, False, ExtentBytes(100, 0, 100), True, ("other", "inline")),
        (100, False, ExtentBytes(0, 0, 0), True, ("other", "no-data")),  # sparse
        (8192, False, ExtentBytes(8192, 8192, 0), True, ("clone", None)),
        (8192, False, ExtentBytes(8192, 0, 0), True, ("copy", None)),
        (8192, False, ExtentBytes(8192, 4096, 0), True, ("other", "partly-shared")),
        (8192, False, ExtentBytes(4096, 4096, 0), True, ("clone", None)),  # a hole, the rest shared
    ],
)
def test_classify_file(
    size: int, same_inode: bool, extent: ExtentBytes | None, clone_possible: bool, expected: tuple[str, str | None]
) -> None:
    assert classify_file(size=size, same_inode=same_inode, extent=extent, clone_possible=clone_possible) == expected


@pytest.mark.parametrize(
    ("status", "code", "possible"),
    [
        (Status.SUPPORTED, None, True),
        (Status.UNSUPPORTED, errno.EXDEV, False),  # another filesystem
        (Status.UNSUPPORTED, errno.EOPNOTSUPP, False),  # ext4, tmpfs
        (Status.UNSUPPORTED, errno.EINVAL, False),
        (Status.UNSUPPORTED, errno.EACCES, True),  # the probe may not write: the files may be clones
        (Status.UNSUPPORTED, errno.EROFS, True),
        (Status.NOT_PROBED, errno.EROFS, True),
        (Status.TIMED_OUT, errno.ETIMEDOUT, True),
    ],
)
def test_clone_possible_only_ruled_out_by_what_the_filesystem_cannot(
    status: Status, code: int | None, possible: bool
) -> None:
    assert clone_possible(Verdict(LinkMode.CLONE, status, "why", code)) is possible


@pytest.mark.parametrize(
    ("exists", "under_source", "expected"),
    [
        (True, True, ("symlink", None)),
        (True, False, ("other", "symlink-elsewhere")),
        (False, False, ("other", "symlink-dangling")),
    ],
)
def test_classify_symlink(exists: bool, under_source: bool, expected: tuple[str, str | None]) -> None:
    assert classify_symlink(exists=exists, under_source=under_source) == expected


@pytest.mark.parametrize(
    ("best", "saved"),
    [(LinkMode.CLONE, 500), (LinkMode.HARDLINK, 500), (LinkMode.COPY, 0), (LinkMode.SYMLINK, 0), (None, 0)],
)
def test_savable_bytes_only_when_a_link_mode_works(best: LinkMode | None, saved: int) -> None:
    assert savable_bytes(best, 500) == saved


@pytest.mark.parametrize(
    ("expected", "missing"),
    [(LinkMode.HARDLINK, 2 + 3 + 4), (LinkMode.CLONE, 1 + 3 + 4), (LinkMode.SYMLINK, 1 + 2 + 4), (LinkMode.COPY, 6)],
)
def test_not_as_expected_counts_the_files_source_holds_that_are_something_else(
    expected: LinkMode, missing: int
) -> None:
    linked = {"hardlink": 1, "clone": 2, "symlink": 3, "copy": 50, "other": 70}
    assert not_as_expected(expected, linked, duplicated_files=4) == missing


def test_every_reason_is_documented() -> None:
    cli_doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for reason in OTHER_REASONS:
        assert f"`{reason}`" in cli_doc, reason


# -- FIEMAP, through a fake ioctl --------------------------------------------------------------

_HEADER = struct.Struct("=QQLLLL")
_EXTENT = struct.Struct("=QQQ2QL3L")


class FakeFiemap:
    """Answers FS_IOC_FIEMAP from a list of (logical, length, flags), as the kernel does:
    from fm_start on, at most fm_extent_count extents per call."""

    def __init__(self, extents: list[tuple[int, int, int]], error: int | None = None) -> None:
        self.extents = extents
        self.error = error
        self.calls: list[int] = []

    def __call__(self, fd: int, request: int, buffer: bytearray) -> int:
        assert request == FS_IOC_FIEMAP
        start, length, flags, _, count, _ = _HEADER.unpack_from(buffer)
        assert flags == 0  # never FIEMAP_FLAG_SYNC: an audit must not write anything out
        self.calls.append(start)
        if self.error is not None:
            raise OSError(self.error, "fake")
        found = [e for e in self.extents if e[0] + e[1] > start][:count]
        _HEADER.pack_into(buffer, 0, start, length, flags, len(found), count, 0)
        for index, (logical, size, extent_flags) in enumerate(found):
            _EXTENT.pack_into(
                buffer, _HEADER.size + index * _EXTENT.size, logical, 1 << 30, size, 0, 0, extent_flags, 0, 0, 0
            )
        return 0


def test_fiemap_one_shared_extent_clipped_to_the_size() -> None:
    fake = FakeFiemap([(0, 12288, FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_LAST)])
    assert fiemap_extent_bytes(3, 10_000, fake) == ExtentBytes(10_000, 10_000, 0)


def test_fiemap_inline_data() -> None:
    fake = FakeFiemap([(0, 4096, FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_LAST)])
    assert fiemap_extent_bytes(3, 120, fake) == ExtentBytes(120, 0, 120)


def test_fiemap_reads_many_extents_in_rounds() -> None:
    extents = [(i * 8192, 4096, FIEMAP_EXTENT_SHARED if i % 2 else 0) for i in range(70)]
    extents[-1] = (extents[-1][0], 4096, extents[-1][2] | FIEMAP_EXTENT_LAST)
    fake = FakeFiemap(extents)
    result = fiemap_extent_bytes(3, 70 * 8192, fake)
    assert result == ExtentBytes(70 * 4096, 35 * 4096, 0)
    assert len(fake.calls) == 3  # 32 + 32 + 6 extents


def test_fiemap_holes_only() -> None:
    assert fiemap_extent_bytes(3, 1 << 20, FakeFiemap([])) == ExtentBytes(0, 0, 0)


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EINVAL])
def test_fiemap_unsupported_is_none(code: int) -> None:
    assert fiemap_extent_bytes(3, 100, FakeFiemap([], error=code)) is None


def test_fiemap_io_error_is_raised() -> None:
    with pytest.raises(OSError, match="fake") as caught:
        fiemap_extent_bytes(3, 100, FakeFiemap([], error=errno.EIO))
    assert caught.value.errno == errno.EIO


def test_shared_extent_bytes_of_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    found = shared_extent_bytes(path)
    if sys.platform == "linux" and found is not None:  # None on a filesystem without FIEMAP
        assert found.shared == 0
        assert found.total <= 5000


def test_shared_extent_bytes_does_not_follow_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "link").symlink_to("f")
    with pytest.raises(OSError, match="symbolic links") as caught:
        shared_extent_bytes(tmp_path / "link")
    assert caught.value.errno == errno.ELOOP


def test_other_systems_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    monkeypatch.setattr(sys, "platform", "win32")
    assert fd_extent_bytes(0, str(path), path.stat()) is None


# -- macOS: APFS's private size, through a fake getattrlist ------------------------------------

_ANSWER = struct.Struct("=L5Lq")


def fake_getattrlist(private: int | None, error: int | None = None) -> object:
    def call(path: bytes, attrs: bytearray, answer: bytearray, options: int) -> int:
        bitmapcount, _, common, _, _, _, fork = struct.unpack_from("=HHLLLLL", attrs)
        assert (bitmapcount, common, fork) == (5, 0x8000_0000, ATTR_CMNEXT_PRIVATESIZE)
        assert options == 0x21  # FSOPT_NOFOLLOW | FSOPT_ATTR_CMN_EXTENDED
        if error is not None:
            raise OSError(error, "fake", path)
        returned = ATTR_CMNEXT_PRIVATESIZE if private is not None else 0
        _ANSWER.pack_into(answer, 0, _ANSWER.size, 0x8000_0000, 0, 0, 0, returned, private or 0)
        return 0

    return call


@pytest.mark.parametrize(
    ("private", "expected"),
    [
        (0, ExtentBytes(8192, 8192, 0)),  # a clone: nothing of its own
        (8192, ExtentBytes(8192, 0, 0)),  # a copy
        (4096, ExtentBytes(8192, 4096, 0)),  # an edited clone
        (None, None),  # not APFS: the attribute is not returned
    ],
)
def test_macos_private_size(private: int | None, expected: ExtentBytes | None) -> None:
    assert macos_extent_bytes("/f", 8192, fake_getattrlist(private)) == expected  # type: ignore[arg-type]


def test_macos_unsupported_volume_is_none() -> None:
    assert macos_extent_bytes("/f", 8192, fake_getattrlist(None, errno.ENOTSUP)) is None  # type: ignore[arg-type]


def test_macos_permission_error_is_raised() -> None:
    with pytest.raises(PermissionError):
        macos_extent_bytes("/f", 8192, fake_getattrlist(None, errno.EACCES))  # type: ignore[arg-type]


# -- an OS that cannot tell clones: counted as other, with the reason ---------------------------


def test_without_a_block_map_clones_are_unknown_where_clone_possible(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    (tmp_path / "s" / "a").write_bytes(b"a" * 2000)
    (tmp_path / "t" / "a").write_bytes(b"a" * 2000)  # held twice: same size and content
    monkeypatch.setattr(auditing_module, "_LINUX", False)
    monkeypatch.setattr(auditing_module, "fd_extent_bytes", lambda fd, path, info: None)
    job = auditing_module._Audit(str(tmp_path / "s"), str(tmp_path / "t"), None)
    job.build_index()
    job.audit_target(clone_possible=True)
    assert job.reasons["clones-unknown"].files == 1
    assert job.duplicated_files == 0  # not known to be a copy
    job = auditing_module._Audit(str(tmp_path / "s"), str(tmp_path / "t"), None)
    job.build_index()
    job.audit_target(clone_possible=False)
    assert job.kinds["copy"].files == 1
    assert job.duplicated_files == 1


# -- results and what the command prints --------------------------------------------------------


def _side(fstype: str = "ext4") -> SideFacts:
    return SideFacts("/x", "/x", 1, "/", fstype)


def _probe(*working: LinkMode) -> Probe:
    verdicts = tuple(
        Verdict(mode, Status.SUPPORTED if mode in working else Status.UNSUPPORTED, "why") for mode in LinkMode
    )
    return Probe(_side(), _side(), verdicts, None, False)


def _audit(probe: Probe, duplicated: int = 0, **files: int) -> Audit:
    kinds = {kind: KindTotal(files.get(kind, 0), files.get(kind, 0) * 1000) for kind in KINDS}
    return Audit("/cache", "/venv", kinds, {}, duplicated, duplicated * 1000, 0, probe)


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1234, "1.2 kB"), (212_000_000, "212 MB"), (9_960_000, "10 MB")],
)
def test_human_bytes(count: int, text: str) -> None:
    assert cli_audit.human_bytes(count) == text


def test_advice_when_copies_could_be_hardlinks() -> None:
    result = _audit(_probe(LinkMode.HARDLINK, LinkMode.COPY), duplicated=1203, copy=1203, hardlink=37)
    assert cli_audit.advice(result, "UV_LINK_MODE") == (
        "1,203 of 1,240 files are copies of files in SOURCE (1.2 MB); hardlink works here and would save 1.2 MB: "
        "set UV_LINK_MODE=hardlink"
    )
    assert cli_audit.advice(result, "LINKPROBE_MODE").endswith(
        "set LINKPROBE_MODE=hardlink (or leave it unset: auto picks it)"
    )


def test_advice_when_only_copy_works() -> None:
    result = _audit(_probe(LinkMode.COPY), duplicated=5, copy=5)
    assert cli_audit.advice(result, "X").endswith(
        "only copy works between these directories, so there is nothing to save here"
    )
    assert result.savable_bytes == 0


def test_advice_when_everything_is_linked() -> None:
    result = _audit(_probe(LinkMode.CLONE, LinkMode.COPY), clone=7, copy=2)
    assert cli_audit.advice(result, "X") == (
        "The 7 files SOURCE holds are linked (clone 7): nothing to save; the 2 copies are not files of SOURCE"
    )


def test_advice_when_nothing_matches() -> None:
    result = _audit(_probe(LinkMode.COPY), copy=3)
    assert "is SOURCE the cache TARGET was installed from?" in cli_audit.advice(result, "X")
    assert cli_audit.advice(_audit(_probe()), "X") == "TARGET holds no files: nothing to audit."


def test_to_dict_is_the_documented_contract(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    (tmp_path / "s" / "a").write_bytes(b"a" * 100)
    os.link(tmp_path / "s" / "a", tmp_path / "t" / "a")
    document = json.loads(json.dumps(audit(tmp_path / "s", tmp_path / "t").to_dict()))
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert set(document) >= {
        "source",
        "target",
        "files",
        "bytes",
        "kinds",
        "duplicated_bytes",
        "best",
        "savable_bytes",
        "examples",
    }
    assert list(document["kinds"]) == list(KINDS)
    assert document["kinds"]["hardlink"] == {"files": 1, "bytes": 100}
    assert document["examples"]["hardlink"] == ["a"]
    assert document["files"] == 1


# -- progress -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_waits_then_overwrites_one_line() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = cli_audit._Progress(stream, clock)
    progress("index", 1000)
    clock.now += 0.4
    progress("index", 2000)
    assert stream.getvalue() == ""  # a quick audit prints no progress
    clock.now += 0.2
    progress("index", 3000)
    progress("walk", 4000)  # within 0.1 s of the last line: skipped
    clock.now += 0.2
    progress("walk", 5000)
    progress.clear()
    assert stream.getvalue() == (
        "\r\x1b[Klinkprobe audit: reading SOURCE: 3,000 entries"
        "\r\x1b[Klinkprobe audit: reading TARGET: 5,000 entries"
        "\r\x1b[K"
    )


def test_progress_callback_of_the_library(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    for index in range(2500):  # five directories of 500
        if index % 500 == 0:
            (tmp_path / "t" / f"d{index}").mkdir()
        (tmp_path / "t" / f"d{index - index % 500}" / f"f{index}").touch()
    calls: list[tuple[str, int]] = []
    audit(tmp_path / "s", tmp_path / "t", progress=lambda phase, count: calls.append((phase, count)))
    # After each directory, at most every PROGRESS_EVERY entries, and at the end of a phase.
    assert calls == [("index", 0), ("walk", 1005), ("walk", 2005), ("walk", 2505)]
