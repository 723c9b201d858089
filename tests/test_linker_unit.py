"""Linker rules on one ordinary filesystem, with a backend that counts and fails on cue."""

from __future__ import annotations

import errno
import logging
import os
import stat
import warnings
from pathlib import Path

import pytest

import linkprobe
from linkprobe import (
    Linker,
    LinkFailedError,
    LinkMode,
    LinkModeFallbackWarning,
    NoUsableModeError,
    UnsupportedModeError,
)
from linkprobe.api import SourceHints
from linkprobe.fallback import FailureAction, on_failure
from linkprobe.linux import LinuxBackend


class ScriptedBackend(LinuxBackend):
    """The real Linux backend, except that chosen calls fail once the probe is over."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"clone": 0, "hardlink": 0, "copy": 0, "symlink": 0}
        self.failures: dict[str, int] = {"clone": 0, "hardlink": 0, "copy": 0, "symlink": 0}
        self.armed = False
        self.fail_hardlink: int | None = None
        self.fail_clone: int | None = None
        self.fail_symlink: int | None = None
        self.emlink_for: set[str] = set()

    def _maybe_fail(self, kind: str, code: int | None, source: str) -> None:
        self.calls[kind] += 1
        if kind == "hardlink" and source in self.emlink_for:
            self.failures[kind] += 1
            raise OSError(errno.EMLINK, os.strerror(errno.EMLINK), source)
        if self.armed and code is not None:
            self.failures[kind] += 1
            raise OSError(code, os.strerror(code), source)

    def hardlink(self, source: str, target: str) -> None:
        self._maybe_fail("hardlink", self.fail_hardlink, source)
        super().hardlink(source, target)

    def clone(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self._maybe_fail("clone", self.fail_clone, source)
        super().clone(source, target, hints)

    def copy(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        self.calls["copy"] += 1
        super().copy(source, target, hints)

    def symlink(self, source: str, target: str) -> None:
        self._maybe_fail("symlink", self.fail_symlink, source)
        super().symlink(source, target)


def make_tree(root: Path, files: int = 40) -> Path:
    source = root / "cache"
    for index in range(files):
        path = source / f"pkg{index % 4}" / f"mod{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(50 + index))
    tool = source / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (source / "bin" / "alias").symlink_to("tool")
    return source


def assert_same_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        twin = target / path.relative_to(source)
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes()
            assert stat.S_IMODE(twin.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


def test_auto_falls_back_once_and_sticks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = make_tree(tmp_path, files=300)
    backend = ScriptedBackend()
    linker = Linker(env=None, prefer=(LinkMode.HARDLINK, LinkMode.COPY), backend=backend)
    backend.fail_hardlink = errno.EXDEV
    # The probe sees hardlinks working; every later link() fails EXDEV, as if the tree
    # had moved behind a bind mount.
    linker._pairs.pair_for(str(source), str(tmp_path / "venv"))
    backend.armed = True
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "linkprobe"):
        warnings.simplefilter("always")
        stats = linker.link_tree(source, tmp_path / "venv")
    fallback_warnings = [w for w in caught if issubclass(w.category, LinkModeFallbackWarning)]
    assert len(fallback_warnings) == 1
    assert "set the mode explicitly" in str(fallback_warnings[0].message).lower()
    assert fallback_warnings[0].filename == __file__  # points at the caller's link_tree line
    assert len([r for r in caplog.records if r.name == "linkprobe"]) == 1
    assert backend.failures["hardlink"] == 1  # sticky: not one failure per file
    assert stats.copied == 301
    assert stats.hardlinked == 0
    # Stepped down from hardlink inside a batch: the copies still count their bytes.
    assert stats.bytes == sum(
        path.stat().st_size for path in source.rglob("*") if path.is_file() and not path.is_symlink()
    )
    assert stats.symlinks == 1
    assert linker.mode is LinkMode.COPY
    assert [(f.from_mode, f.to_mode, f.errno) for f in linker.fallbacks] == [
        (LinkMode.HARDLINK, LinkMode.COPY, errno.EXDEV)
    ]
    assert_same_tree(source, tmp_path / "venv")


def test_explicit_never_falls_back(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    backend = ScriptedBackend()
    linker = Linker("hardlink", env=None, backend=backend)
    linker._pairs.pair_for(str(source), str(tmp_path / "venv"))
    backend.fail_hardlink = errno.EXDEV
    backend.armed = True
    backend.calls["copy"] = 0  # the probe's own copy attempt does not count
    with pytest.raises(UnsupportedModeError) as raised:
        linker.link_tree(source, tmp_path / "venv")
    assert raised.value.errno == errno.EXDEV
    assert raised.value.filename
    assert str(source) in raised.value.filename
    assert backend.calls["copy"] == 0
    assert linker.fallbacks == ()


def test_explicit_unsupported_leaves_target_untouched(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    target = tmp_path / "venv"
    with pytest.raises(UnsupportedModeError) as raised:
        # ext4/tmpfs of the test machine: clone is refused by the probe (EOPNOTSUPP or EXDEV)
        Linker("clone", env=None).link_tree(source, target)
    assert raised.value.reason
    assert not target.exists()


def test_emlink_copies_that_file_and_keeps_mode(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    backend = ScriptedBackend()
    crowded = source / "pkg1" / "mod1.py"
    backend.emlink_for = {str(crowded)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", LinkModeFallbackWarning)
        stats = Linker(env=None, prefer=("hardlink", "copy"), backend=backend).link_tree(source, tmp_path / "venv")
    assert stats.copied == 1
    assert stats.hardlinked == 40  # 41 regular files in all
    assert (tmp_path / "venv" / "pkg1" / "mod1.py").stat().st_nlink == 1


def test_env_variable_makes_it_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LINK_MODE", "copy")
    linker = Linker(env="MY_LINK_MODE")
    assert linker.explicit
    assert linker.link(make_tree(tmp_path) / "bin" / "tool", tmp_path / "out" / "deep" / "tool") is LinkMode.COPY
    assert os.access(tmp_path / "out" / "deep" / "tool", os.X_OK)


def test_existing_destination_is_an_error_unless_replace(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    target = tmp_path / "venv"
    Linker("copy", env=None).link_tree(source, target)
    (source / "pkg0" / "mod0.py").write_bytes(b"new content")
    with pytest.raises(LinkFailedError) as raised:
        Linker("copy", env=None).link_tree(source, target)
    assert raised.value.errno == errno.EEXIST
    stats = Linker("copy", env=None, replace=True).link_tree(source, target)
    assert stats.copied == 41
    assert stats.symlinks == 1
    assert (target / "pkg0" / "mod0.py").read_bytes() == b"new content"
    assert not list(target.rglob(".linkprobe-*"))


def test_replace_with_hardlink_to_same_inode_leaves_no_temporary(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    target = tmp_path / "venv"
    Linker("hardlink", env=None).link_tree(source, target)
    # rename(2) of two links to one inode is a no-op: the temporary must still go away.
    Linker("hardlink", env=None, replace=True).link_tree(source, target)
    assert not list(target.rglob(".linkprobe-*"))
    assert (target / "pkg0" / "mod0.py").stat().st_ino == (source / "pkg0" / "mod0.py").stat().st_ino


def test_symlink_failure_in_auto_materialises_file_once_warned(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    backend = ScriptedBackend()
    linker = Linker(env=None, prefer=("copy",), backend=backend)
    linker._pairs.pair_for(str(source), str(tmp_path / "venv"))
    backend.fail_symlink = errno.ENOSYS  # exFAT's FUSE driver
    backend.armed = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = linker.link_tree(source, tmp_path / "venv")
    assert sum(issubclass(w.category, LinkModeFallbackWarning) for w in caught) == 1
    assert [w.filename for w in caught if issubclass(w.category, LinkModeFallbackWarning)] == [__file__]
    assert stats.symlinks == 0
    assert stats.copied == 42
    alias = tmp_path / "venv" / "bin" / "alias"
    assert not alias.is_symlink()
    assert alias.read_bytes() == (source / "bin" / "tool").read_bytes()


def test_symlink_failure_in_explicit_mode_raises(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    backend = ScriptedBackend()
    linker = Linker("copy", env=None, backend=backend)
    linker._pairs.pair_for(str(source), str(tmp_path / "venv"))
    backend.fail_symlink = errno.ENOSYS
    backend.armed = True
    with pytest.raises(LinkFailedError, match="symbolic links"):
        linker.link_tree(source, tmp_path / "venv")


def test_threads_give_the_same_result(tmp_path: Path) -> None:
    source = make_tree(tmp_path, files=700)
    stats = Linker("copy", env=None, workers=4).link_tree(source, tmp_path / "venv")
    assert stats.copied == 701
    assert_same_tree(source, tmp_path / "venv")


@pytest.mark.parametrize(
    ("mode", "code", "explicit", "action"),
    [
        (LinkMode.HARDLINK, errno.EXDEV, False, FailureAction.FALL_BACK),
        (LinkMode.HARDLINK, errno.EPERM, False, FailureAction.FALL_BACK),
        (LinkMode.CLONE, errno.EOPNOTSUPP, False, FailureAction.FALL_BACK),
        (LinkMode.CLONE, errno.ENOTTY, False, FailureAction.FALL_BACK),
        (LinkMode.CLONE, errno.EINVAL, False, FailureAction.COPY_FILE),
        (LinkMode.HARDLINK, errno.EMLINK, False, FailureAction.COPY_FILE),
        (LinkMode.HARDLINK, errno.ENOSPC, False, FailureAction.RAISE),
        (LinkMode.HARDLINK, errno.ENOENT, False, FailureAction.RAISE),
        (LinkMode.HARDLINK, errno.EACCES, False, FailureAction.RAISE),
        (LinkMode.HARDLINK, errno.EDQUOT, False, FailureAction.RAISE),
        (LinkMode.COPY, errno.EXDEV, False, FailureAction.RAISE),
        (LinkMode.HARDLINK, errno.EXDEV, True, FailureAction.RAISE),
        (LinkMode.HARDLINK, errno.EMLINK, True, FailureAction.RAISE),
    ],
)
def test_failure_rule(mode: LinkMode, code: int, explicit: bool, action: FailureAction) -> None:
    assert on_failure(mode, code, explicit=explicit) is action


def test_pnpms_clone_or_copy_in_the_environment_is_an_order_for_the_linker_and_select(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One filesystem: auto would hardlink; clone-or-copy means clone, else copy."""
    source = make_tree(tmp_path, files=20)
    expected = LinkMode.CLONE if linkprobe.probe(source, tmp_path, cache=False).supports("clone") else LinkMode.COPY
    monkeypatch.setenv("pnpm_config_package_import_method", "Clone-Or-Copy")
    assert linkprobe.select(source, tmp_path / "venv", env="pnpm_config_package_import_method") is expected
    assert linkprobe.select(source, tmp_path / "venv", "clone-or-copy", env=None) is expected
    linker = Linker(env="pnpm_config_package_import_method")
    assert not linker.explicit
    stats = linker.link_tree(source, tmp_path / "venv")
    assert stats.count(expected) == stats.files == 21
    assert linkprobe.parse_order("clone-or-copy") == (LinkMode.CLONE, LinkMode.COPY)


def test_no_usable_mode_is_the_same_error_from_the_linker_and_the_probe(tmp_path: Path) -> None:
    """Auto with no working mode of its order: one rule (``_words.required``) raises it, for
    the Linker as for ``Probe.require``: reasons in the order's modes, errno of the last failed
    mode (docs/api.md, NoUsableModeError)."""
    source = make_tree(tmp_path, files=3)
    backend = ScriptedBackend()
    backend.armed = True
    backend.fail_clone, backend.fail_hardlink = errno.EOPNOTSUPP, errno.EXDEV
    order = (LinkMode.CLONE, LinkMode.HARDLINK)
    with pytest.raises(NoUsableModeError) as from_probe:
        linkprobe.probe(source, tmp_path / "venv", cache=False, backend=backend).require(None, order=order)
    with pytest.raises(NoUsableModeError) as from_linker:
        Linker(env=None, prefer=order, backend=backend).link_tree(source, tmp_path / "venv")
    assert from_linker.value.errno == from_probe.value.errno == errno.EXDEV
    assert from_linker.value.reasons == from_probe.value.reasons
    assert list(from_linker.value.reasons) == list(order)
    assert str(from_linker.value) == str(from_probe.value)
    assert not (tmp_path / "venv").exists()
