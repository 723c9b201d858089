"""The command line's one-word formats start without the modules they do not need.

``linkprobe SOURCE TARGET`` (and ``--format env``, ``--mode``) answer with one word: they
work in mode words (linkprobe._words) and never import ``enum`` (LinkMode and Status are
enums), ``functools``, ``types``, the public result types, or the timeout's thread module.
``--format text`` and ``json`` show the whole result, and do import it. Each child is a
fresh ``-I -S`` interpreter, so that nothing else imports anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import linkprobe

#: The directory that holds the linkprobe package, for a child that ignores PYTHONPATH (-I).
_PACKAGE_PARENT = str(Path(linkprobe.__file__).resolve().parent.parent)
#: What the one-word formats must not import.
_NOT_NEEDED = ("enum", "functools", "types", "linkprobe.modes", "linkprobe.result", "linkprobe._timeout")


def _run(argv: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    """Exit status, stdout, and which of _NOT_NEEDED ``main(argv)`` imported."""
    code = (
        f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); from linkprobe.cli import main\n"
        f"status = main({argv!r})\n"
        f"print(*sorted(sys.modules.keys() & {set(_NOT_NEEDED)!r}), file=sys.stderr)\n"
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    return done.returncode, done.stdout, done.stderr.splitlines()[-1].split()


@pytest.fixture
def places(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file").write_bytes(b"x")
    (tmp_path / "dst").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["src", "dst"], None),
        (["--format", "env", "--env", "UV_LINK_MODE", "src", "dst"], None),
        (["--mode", "copy", "src", "dst"], "copy"),
        (["--mode", " Reflink", "src", "dst"], "clone"),
        (["--mode", "clone-or-copy", "src", "dst"], "clone-or-copy"),
        (["probe", "--mode=symlink", "src", "dst"], "symlink"),
    ],
)
def test_one_word_formats_start_without_enum(places: Path, argv: list[str], wanted: str | None) -> None:
    status, out, imported = _run(argv, places)
    assert imported == []
    result = linkprobe.probe(places / "src", places / "dst", cache=False)
    if wanted is None or wanted == "clone-or-copy":
        expected = result.best if wanted is None else result.require(wanted)
        word = f"UV_LINK_MODE={expected}" if "env" in argv else str(expected)
        assert (status, out) == (0, word + "\n")
    elif result.supports(wanted):
        assert (status, out) == (0, wanted + "\n")
    else:  # an explicit mode that does not work here (clone on tmpfs or ext4): the error path stays lean too
        assert (status, out) == (1, "")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_whole_result_formats_import_the_public_types(places: Path, fmt: str) -> None:
    status, out, imported = _run(["--format", fmt, "src", "dst"], places)
    assert status == 0
    assert {"enum", "linkprobe.modes", "linkprobe.result"} <= set(imported)
    if fmt == "json":
        assert json.loads(out)["modes"]["copy"]["status"] == "supported"
    else:
        assert out.startswith(f"mode: {linkprobe.probe(places / 'src', places / 'dst').best} (auto)\n  clone ")
