"""Installing linkprobe as the pages say, into fresh venvs: docs/ci.md's way before it is
published (from a checkout, or a wheel), and the first line of README.md's quick start.

Needs PyPI (pip builds with hatchling in an isolated environment and fetches psutil and
typing-extensions), as `bash .ci/run` does when it installs the project.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
_DOCS = _ROOT / "docs" / "ci.md"


def install_lines() -> list[str]:
    match = re.search(r"<!-- recipe: install-unpublished -->\n```sh\n(.*?)\n```\n", _DOCS.read_text(), re.DOTALL)
    assert match, f"no install-unpublished recipe in {_DOCS}"
    return textwrap.dedent(match[1]).splitlines()


#: What a fresh clone does not have, for a tree that is not a git checkout.
_NOT_IN_A_CLONE = (
    ".git",
    ".ci-cache",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "dist",
    "build",
    ".*_cache",
    ".hypothesis",
)


def checkout(where: Path) -> Path:
    """The project's tracked files, as a fresh clone has them (no build output, no caches)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # no git, or a copied tree without .git
        shutil.copytree(_ROOT, where, ignore=shutil.ignore_patterns(*_NOT_IN_A_CLONE))
        return where
    for name in listed.decode().split("\0"):
        if name and (_ROOT / name).is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(_ROOT / name, where / name)
    return where


def fresh_venv(where: Path) -> dict[str, str]:
    subprocess.run([sys.executable, "-m", "venv", where], check=True)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{where / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}", "VIRTUAL_ENV": str(where)}


def sh(line: str, env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(["bash", "-e", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"$ {line}\n{done.stdout}{done.stderr}"


def venv_python(code: str, env: dict[str, str], cwd: Path) -> str:
    return subprocess.run(["python", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout


def assert_installed(env: dict[str, str], cwd: Path) -> None:
    """``linkprobe`` and ``python -m linkprobe`` run from the venv, not from this checkout."""
    import linkprobe

    for argv in (["linkprobe", "--version"], ["python", "-m", "linkprobe", "--version"]):
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout) == (0, f"linkprobe {linkprobe.__version__}\n"), done.stderr
    assert venv_python("import linkprobe; print(linkprobe.__file__)", env, cwd).startswith(env["VIRTUAL_ENV"])
    # The installed metadata carries the license text (hatchling copies LICENSE into dist-info).
    license_text = venv_python(
        "from importlib.metadata import distribution; print(distribution('linkprobe').read_text('licenses/LICENSE'))",
        env,
        cwd,
    )
    assert license_text.startswith("MIT License\n"), license_text
    assert "linkprobe developers" in license_text


@pytest.mark.parametrize("lines", [slice(0, 1), slice(1, None)], ids=["from-checkout", "from-wheel"])
def test_install_before_publication(lines: slice, tmp_path: Path) -> None:
    job = tmp_path / "job"
    checkout(job / "linkprobe")
    env = fresh_venv(tmp_path / "venv")
    recipe = install_lines()
    assert len(recipe) == 3, recipe
    for line in recipe[lines]:
        sh(line, env, job)
    assert_installed(env, job)
    if lines.start:
        (wheel,) = (job / "dist").glob("linkprobe-*.whl")
        assert wheel.name.endswith("-py3-none-any.whl")


def readme_quick_start() -> list[str]:
    readme = (_ROOT / "README.md").read_text()
    match = re.search(r"## Quick start on a fresh machine\n\n```\n(.*?)\n```\n", readme, re.DOTALL)
    assert match, "no quick start in README.md"
    return match[1].splitlines()


def test_readme_quick_start_installs_and_probes_without_creating_the_target(tmp_path: Path) -> None:
    """README's first quick-start line, in a fresh venv (the system python3 may refuse pip install)."""
    install_and_probe, run_ci = readme_quick_start()
    assert run_ci == "bash .ci/run"  # that one is CI itself
    project = checkout(tmp_path / "linkprobe")
    env = {**fresh_venv(tmp_path / "venv"), "HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    demo = Path(re.findall(r"(/tmp/\S+)/\.venv", install_and_probe)[0])
    assert not demo.exists()
    done = subprocess.run(
        ["bash", "-e", "-c", install_and_probe], env=env, cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # pip prints first; the probe's text starts at its "mode:" line.
    assert re.search(r"^mode: (clone|hardlink|copy) \(auto\)$", done.stdout, re.MULTILINE), done.stdout
    assert f"source: {tmp_path / 'home'}\n" in done.stdout
    assert f"target: {demo}/.venv\n" in done.stdout
    assert not demo.exists()  # "nothing is created there"
