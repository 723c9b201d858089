"""The package's surface: what ``dir(linkprobe)`` shows, and what the command line's start-up imports.

The start-up test runs a fresh interpreter with ``-I -S`` (no site, no user paths, no
environment variables), so that nothing but linkprobe itself can have imported ``typing``:
a ``.pth`` file in site-packages often does, which would hide a regression in a normal run.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import linkprobe

#: The directory that holds the linkprobe package, for a child that ignores PYTHONPATH (-I).
_PACKAGE_PARENT = str(Path(linkprobe.__file__).resolve().parent.parent)

#: Run by the child: import the CLI, then run the documented `python -m linkprobe SOURCE TARGET`.
_CHILD = """
import json, runpy, sys
sys.path.insert(0, {parent!r})
import linkprobe.cli
after_import = "typing" in sys.modules
dataclasses_after_import = "dataclasses" in sys.modules
sys.argv = ["linkprobe", "--format", "json", {source!r}, {target!r}]
try:
    runpy.run_module("linkprobe", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({{"after_import": after_import, "after_probe": "typing" in sys.modules, "code": code,
                  "dataclasses": [dataclasses_after_import, "dataclasses" in sys.modules]}}))
"""


def test_cli_start_up_does_not_import_typing(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    code = _CHILD.format(parent=_PACKAGE_PARENT, source=str(source), target=str(target))
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *probe_output, verdict = done.stdout.splitlines()
    seen = json.loads(verdict)
    assert json.loads("\n".join(probe_output))["best"] is not None  # the probe really ran
    assert seen == {"after_import": False, "after_probe": False, "code": 0, "dataclasses": [False, False]}


@pytest.mark.parametrize("options", [[], ["--format", "text"]])
def test_default_cli_path_imports_neither_dataclasses_nor_threading(tmp_path: Path, options: list[str]) -> None:
    """``linkprobe SOURCE TARGET`` (the mode format or text, no timeout): the results are
    named tuples, the timeout thread is started only with --timeout, and the command line
    is parsed without argparse (which imports re, gettext and locale); nor are contextlib,
    signal (its enums), collections.abc (annotations only) and select (the mount table
    is read once, not watched) imported."""
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    unwanted = (
        "argparse",
        "collections.abc",
        "contextlib",
        "dataclasses",
        "gettext",
        "inspect",
        "locale",
        "re",
        "select",
        "signal",
        "threading",
        "typing",
    )
    code = (
        f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); from linkprobe.cli import main\n"
        f"status = main([*{options!r}, {str(source)!r}, {str(target)!r}])\n"
        f"print(sorted(name for name in {unwanted!r} if name in sys.modules))\n"
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_dir_shows_every_public_name_including_lazy_ones() -> None:
    names = dir(linkprobe)
    assert names == sorted(linkprobe.__all__)
    lazy = linkprobe._LAZY
    assert set(lazy) <= set(names)


@pytest.mark.parametrize("name", sorted(linkprobe._LAZY))
def test_lazy_name_comes_from_its_module(name: str) -> None:
    module = importlib.import_module(linkprobe._LAZY[name])
    assert getattr(linkprobe, name) is getattr(module, name)


def test_every_name_in_all_resolves() -> None:
    for name in linkprobe.__all__:
        assert getattr(linkprobe, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = linkprobe.nonexistent


def test_fill_is_a_callable_type_at_run_time() -> None:
    """linkprobe.api.Fill, the type of a backend's fill function (docs/api.md), is made at
    its first use rather than at import; it is there all the same."""
    import collections.abc

    import linkprobe.api

    assert linkprobe.api.Fill == collections.abc.Callable[[int, int, int], None]
    with pytest.raises(AttributeError, match="no attribute 'Fills'"):
        _ = getattr(linkprobe.api, "Fills")  # noqa: B009 (a name the type checker knows is missing)
