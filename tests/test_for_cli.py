"""The command line of ``--for``: exit codes, stdout/stderr, precedence of --mode and --env."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
from _tidy import empty


def linkprobe(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "linkprobe", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No real uv/pnpm/bun on PATH (a fake one where a test puts it), HOME in tmp_path."""
    (tmp_path / "bin").mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "pnpm_config_", "BUN_", "XDG_"))}
    return {**keep, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}


def fake(tmp_path: Path, name: str, script: str) -> None:
    path = tmp_path / "bin" / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_unknown_tool_lists_the_known_ones(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe(["--for", "yarn"], cwd=tmp_path, env=env)
    assert (code, out) == (2, "")
    assert err == "linkprobe: error: unknown tool 'yarn' for --for: expected one of uv, pnpm, bun\n"


def test_bun_has_no_variable_for_format_env(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe(["--for", "bun", "--format", "env"], cwd=tmp_path, env=env)
    assert (code, out) == (2, "")
    assert err.startswith("linkprobe: error: bun reads its link mode from no environment variable")
    assert 'bun install --backend "$(linkprobe --for bun)"' in err
    assert err.count("\n") == 1


def test_one_path_is_a_usage_error(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe(["--for", "uv", str(tmp_path)], cwd=tmp_path, env=env)
    assert (code, out) == (2, "")
    assert "no paths (the tool's own cache and target) or both SOURCE and TARGET" in err


def test_without_for_paths_are_still_required(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe([], cwd=tmp_path, env=env)
    assert (code, out) == (2, "")
    assert err == "linkprobe: error: the following arguments are required: SOURCE, TARGET (or --for TOOL)\n"


def test_one_path_without_for_names_the_missing_target(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe([str(tmp_path)], cwd=tmp_path, env=env)
    assert (code, out) == (2, "")
    assert err == "linkprobe: error: the following arguments are required: TARGET (or --for TOOL)\n"


def test_a_bad_value_of_the_tools_variable_is_a_usage_error(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = linkprobe(["--for", "uv"], cwd=tmp_path, env={**env, "UV_LINK_MODE": "auto"})
    assert (code, out) == (2, "")
    assert err == (
        "linkprobe: error: invalid environment variable UV_LINK_MODE 'auto': "
        "expected one of clone, copy, hardlink, symlink\n"
    )


@pytest.mark.parametrize(
    ("script", "note"),
    [
        ("exec sleep 60", "`uv cache dir` did not answer within 10 s"),
        ("echo 'error: bad config' >&2; exit 2", "`uv cache dir` failed with exit status 2: error: bad config"),
    ],
)
def test_a_tool_that_hangs_or_fails_costs_a_note_not_the_answer(
    script: str, note: str, tmp_path: Path, env: dict[str, str]
) -> None:
    fake(tmp_path, "uv", script)
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("[project]\n")
    env["UV_CACHE_DIR"] = str(tmp_path / "cache")
    code, out, err = linkprobe(["--for", "uv", "--format", "json"], cwd=tmp_path / "proj" / "sub", env=env)
    assert code == 0, err
    assert err == f"linkprobe: note: {note}; using UV_CACHE_DIR: {tmp_path / 'cache'}\n"
    document = json.loads(out)
    assert document["source"]["given"] == str(tmp_path / "cache")
    assert document["source"]["from"] == "UV_CACHE_DIR"
    assert document["target"]["given"] == str(tmp_path / "proj" / ".venv")
    assert document["target"]["from"] == "default"
    assert "Traceback" not in err


def test_mode_wins_env_overrides_and_words_are_the_tools(tmp_path: Path, env: dict[str, str]) -> None:
    pair = [str(tmp_path / "cache"), str(tmp_path / "node_modules")]
    (tmp_path / "cache").mkdir()
    # bun's word for copy; --mode in linkprobe's word is accepted and answered in bun's
    assert linkprobe(["--for", "bun", "--mode", "copy", *pair], cwd=tmp_path, env=env)[1] == "copyfile\n"
    # --env names a variable for bun, so --format env can write it
    with_env = {**env, "BUN_BACKEND": "copyfile"}
    out = linkprobe(["--for", "bun", "--env", "BUN_BACKEND", "--format", "env", *pair], cwd=tmp_path, env=with_env)
    assert out[:2] == (0, "BUN_BACKEND=copyfile\n")
    # --mode wins over the tool's variable
    uv_env = {**env, "UV_LINK_MODE": "symlink"}
    assert linkprobe(["--for", "uv", "--format", "env", "--mode", "copy", *pair], cwd=tmp_path, env=uv_env)[1] == (
        "UV_LINK_MODE=copy\n"
    )
    assert linkprobe(["--for", "uv", "--format", "env", *pair], cwd=tmp_path, env=uv_env)[1] == "UV_LINK_MODE=symlink\n"
    # pnpm's clone-or-copy is an order: the answer is one of its modes, in pnpm's words
    pnpm_env = {**env, "pnpm_config_package_import_method": "clone-or-copy"}
    code, printed, _ = linkprobe(["--for", "pnpm", "--format", "json", *pair], cwd=tmp_path, env=pnpm_env)
    document = json.loads(printed)
    assert code == 0
    assert document["value"] in ("clone", "copy")
    assert (document["tool"], document["variable"], document["requested"]) == (
        "pnpm",
        "pnpm_config_package_import_method",
        "clone-or-copy",
    )
    assert document["source"]["from"] == document["target"]["from"] == "argument"


def test_text_names_the_tool_and_where_paths_came_from(tmp_path: Path, env: dict[str, str]) -> None:
    env["BUN_INSTALL_CACHE_DIR"] = str(tmp_path / "bc")
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "src").mkdir()
    code, out, err = linkprobe(["--for", "bun", "--format", "text"], cwd=tmp_path / "src", env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1] in ("for bun: hardlink", "for bun: copyfile")
    assert lines[2] == "  source from BUN_INSTALL_CACHE_DIR, target from default"
    assert f"target: {tmp_path / 'node_modules'}" in lines


@pytest.mark.realfs
@pytest.mark.parametrize(
    ("tool", "variable", "value"),
    [("uv", "UV_LINK_MODE", "hardlink"), ("pnpm", "pnpm_config_package_import_method", "hardlink")],
)
def test_a_preset_variable_that_cannot_work_here_exits_1(
    request: pytest.FixtureRequest, tool: str, variable: str, value: str, mounts: ScratchMounts, env: dict[str, str]
) -> None:
    cache = mounts.ext4()
    request.addfinalizer(lambda: empty(cache))  # the shared scratch disks are small
    (cache / "project" / "sub").mkdir(parents=True)
    project = mounts.bind(cache / "project")  # link(2) never crosses mounts: EXDEV
    (project / ("pyproject.toml" if tool == "uv" else "package.json")).write_text("{}")
    env.update({"UV_CACHE_DIR": str(cache), "pnpm_config_store_dir": str(cache), variable: value})
    code, out, err = linkprobe(["--for", tool, "--format", "env"], cwd=project / "sub", env=env)
    assert (code, out) == (1, "")
    assert err.startswith(f"linkprobe: error: {value} does not work from {cache} to {project / ''}")
    assert err.count("\n") == 1
