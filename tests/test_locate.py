"""Unit tests for where the probe finds a path (``linkprobe._locate``): the resolved
directory matches ``os.path.realpath``, also through symlinks, and falls back to it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

locate_module = importlib.import_module("linkprobe._locate")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "file.txt").write_text("x")
    (tmp_path / "link").symlink_to("real/sub")
    (tmp_path / "loop").symlink_to("real")
    return tmp_path


@pytest.mark.parametrize("relative", ["real", "real/sub", "link", "link/file.txt", "loop/sub", "."])
def test_resolved_is_realpath(tree: Path, relative: str) -> None:
    path = os.path.abspath(tree / relative)
    assert locate_module._resolved(path) == os.path.realpath(path, strict=True)


def test_resolved_falls_back_to_realpath_when_proc_does_not_answer(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate_module, "_FD_LINKS", str(tree / "no-proc-here") + "/")
    path = str(tree / "link")
    assert locate_module._resolved(path) == str(tree.resolve() / "real" / "sub")


def test_resolved_does_not_trust_a_deleted_name(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A directory removed between the open and the readlink reads as "PATH (deleted)".
    (tree / "fd").mkdir()
    for number in range(1024):  # whichever descriptor the open gets
        (tree / "fd" / str(number)).symlink_to("/gone (deleted)")
    monkeypatch.setattr(locate_module, "_FD_LINKS", str(tree / "fd") + "/")
    path = str(tree / "real")
    assert locate_module._resolved(path) == str(tree.resolve() / "real")


def test_locate_resolves_the_nearest_existing_directory(tree: Path) -> None:
    located = locate_module.locate(str(tree / "link" / "missing" / "deeper"), "target")
    assert located.directory == str(tree.resolve() / "real" / "sub")
    assert located.exists is False
    assert located.missing == str(tree / "link" / "missing")
