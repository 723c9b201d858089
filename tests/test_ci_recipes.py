"""The CI recipes in docs/ci.md, run line for line with the real uv on real mounts.

The snippets are read from docs/ci.md (the fenced block after ``<!-- recipe: NAME -->``), so the
docs and these tests cannot drift apart. What cannot run here is the CI service itself: the tests
play its part (GITHUB_ENV files, GitLab's ``set -eo pipefail`` shell and dotenv reports, the
``/bin/sh -c`` of a Dockerfile RUN line) and stand real scratch mounts in for its volumes. The
``python -m pip install ...`` lines are the one thing left out: uv and linkprobe are already
installed, and the tests are offline (uv gets UV_OFFLINE and UV_FIND_LINKS instead of an index).
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from _clients import (
    check_wheelhouse,
    fallback_lines,
    from_env_or_prepare,
    outcome,
    parse_env_lines,
    prepare_wheelhouse,
    run,
    uv_env,
    uv_pairs,
)
from _fs_build import ScratchMounts

pytestmark = pytest.mark.realfs

_DOCS = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
_KERNEL = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
#: Linux 5.18 lets FICLONE cross mounts of one filesystem (fs/remap_range.c compares superblocks).
_CLONE_ACROSS_BINDS = "clone" if _KERNEL >= (5, 18) else "copy"
_INSTALL_LINE = re.compile(r"^python -m pip install ")
#: Builds (where the cache goes, where the project goes) on scratch mounts.
Layout = Callable[[ScratchMounts], tuple[Path, Path]]


# -- reading the recipes ---------------------------------------------------------------------


def recipe(name: str) -> str:
    match = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```\w*\n(.*?)\n```\n", _DOCS.read_text(), re.DOTALL)
    assert match, f"no recipe {name!r} in {_DOCS}"
    return textwrap.dedent(match[1])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def yaml_sections(text: str) -> dict[str, str]:
    """Top-level keys of a YAML document and the (dedented) text under each."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = sections.setdefault(line.split(":", 1)[0], [])
        else:
            current.append(line)
    return {key: textwrap.dedent("\n".join(lines)) for key, lines in sections.items()}


def yaml_values(text: str, key: str) -> list[str]:
    """Every ``key:`` in order: the rest of its line, or its indented ``|`` block / ``- item`` list.

    A list gives one value per item. This covers the YAML in docs/ci.md, not YAML in general.
    """
    lines = text.splitlines()
    values: list[str] = []
    for number, line in enumerate(lines):
        match = re.match(rf"^(\s*(?:- )?){re.escape(key)}:\s*(.*)$", line)
        if not match:
            continue
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following.strip() and _indent(following) <= _indent(line):
                break
            body.append(following)
        if match[2] == "|":
            values.append(textwrap.dedent("\n".join(body)).strip())
        elif match[2]:
            values.append(match[2])
        else:
            values.extend(item.strip()[2:] for item in body if item.strip().startswith("- "))
    return values


def github_steps(text: str) -> list[str]:
    """The steps of the ``steps:`` list, each dedented."""
    body = textwrap.dedent(text.split("steps:\n", 1)[1])
    return [textwrap.dedent("  " + step) for step in re.split(r"^- ", body, flags=re.MULTILINE) if step.strip()]


def shell_lines(lines: list[str]) -> list[str]:
    """The recipe's lines minus its ``python -m pip install`` lines (already done, and offline here)."""
    kept = [line for line in lines if not _INSTALL_LINE.match(line)]
    assert kept, lines
    return kept


# -- the project every recipe installs ---------------------------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("wheelhouse")
    return from_env_or_prepare("LINKPROBE_WHEELHOUSE", scratch, prepare_wheelhouse, check_wheelhouse)


@pytest.fixture(scope="module")
def locked_project(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """pyproject.toml and uv.lock of a small app that depends on the wheelhouse's packages."""
    project = tmp_path_factory.mktemp("locked-project")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "ci-demo"\nversion = "0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["packaging", "idna", "six"]\n\n[tool.uv]\npackage = false\n'
    )
    locked = run(["uv", "lock"], env=uv_env(wheelhouse, {"UV_CACHE_DIR": str(project / "uv-cache")}), cwd=project)
    assert locked.returncode == 0, locked.stderr
    return project


def checkout(locked_project: Path, workspace: Path) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(locked_project / name, workspace / name)
    return workspace


def assert_installed(cache: Path, venv: Path, printed: str, expected: str) -> str:
    assert fallback_lines(printed) == [], printed
    done = outcome(uv_pairs(cache, venv))
    assert done.mode == expected, done.summary()
    return done.summary()


# -- GitHub Actions ----------------------------------------------------------------------------


def run_github_steps(steps: list[str], env: dict[str, str], workspace: Path, scratch: Path) -> list[tuple[int, str]]:
    """Run ``run:`` steps the way the runner does: ``bash -e``, a fresh $GITHUB_ENV per step whose
    lines become environment of the later steps; stop at the first failing step."""
    results = []
    for index, step in enumerate(steps):
        github_env = scratch / f"github-env-{index}"
        github_env.write_text("")
        (script,) = yaml_values(step, "run")
        done = run(["bash", "-e", "-c", script], env={**env, "GITHUB_ENV": str(github_env)}, cwd=workspace)
        results.append((done.returncode, done.stdout + done.stderr))
        if done.returncode != 0:
            break
        env.update(parse_env_lines(github_env.read_text()))
    return results


def github_recipe() -> tuple[str, list[str]]:
    """The cache step, and the steps after it (the ones the tests run)."""
    steps = github_steps(recipe("github-actions"))
    (cache_at,) = [i for i, step in enumerate(steps) if "uses: actions/cache@" in step]
    runs = steps[cache_at + 1 :]
    assert "linkprobe" in yaml_values(runs[0], "run")[0]
    return steps[cache_at], runs


def test_github_cache_step_keys_on_the_lock_file_and_caches_what_uv_uses(wheelhouse: Path, tmp_path: Path) -> None:
    cache_step, _ = github_recipe()
    (path,) = yaml_values(cache_step, "path")
    (key,) = yaml_values(cache_step, "key")
    (restore,) = yaml_values(cache_step, "restore-keys")
    assert "hashFiles('uv.lock')" in key
    assert key.startswith(restore)  # the fallback is a prefix of the exact key
    # The cached path is what `uv cache dir` (in the linkprobe step) answers on the runner.
    env = uv_env(wheelhouse, {"HOME": str(tmp_path)})
    env.pop("XDG_CACHE_HOME", None)
    assert run(["uv", "cache", "dir"], env=env).stdout.strip() == path.replace("~", str(tmp_path), 1)


def _hosted(mounts: ScratchMounts) -> tuple[Path, Path]:
    return mounts.ext4(), mounts.ext4()  # GitHub-hosted: home and workspace on one ext4 root


def _bind_workspace(mounts: ScratchMounts) -> tuple[Path, Path]:
    home = mounts.ext4()  # self-hosted in a container: the workspace is bind-mounted in
    (home / "work").mkdir()
    return home, mounts.bind(home / "work")


@pytest.mark.parametrize(
    ("where", "expected"),
    [pytest.param(_hosted, "hardlink", id="hosted"), pytest.param(_bind_workspace, "copy", id="bind-workspace")],
)
def test_github_actions(
    where: Layout, expected: str, mounts: ScratchMounts, wheelhouse: Path, locked_project: Path, tmp_path: Path
) -> None:
    home, workspace_parent = where(mounts)
    workspace = checkout(locked_project, workspace_parent / "repo")
    _, steps = github_recipe()
    env = uv_env(wheelhouse, {"HOME": str(home)})
    env.pop("XDG_CACHE_HOME", None)

    results = run_github_steps(steps, env, workspace, tmp_path)
    assert [code for code, _ in results] == [0] * len(steps), results
    assert (tmp_path / "github-env-0").read_text() == f"UV_LINK_MODE={expected}\n"
    summary = assert_installed(home / ".cache" / "uv", workspace / ".venv", results[-1][1], expected)
    print(f"\nGitHub Actions | {where.__name__} | linkprobe: {expected} | uv: {summary}")


def test_github_actions_stops_when_the_exported_mode_cannot_work(
    mounts: ScratchMounts, wheelhouse: Path, locked_project: Path, tmp_path: Path
) -> None:
    home, workspace_parent = _bind_workspace(mounts)
    workspace = checkout(locked_project, workspace_parent / "repo")
    _, steps = github_recipe()
    env = uv_env(wheelhouse, {"HOME": str(home), "UV_LINK_MODE": "hardlink"})  # the job's `env:`

    results = run_github_steps(steps, env, workspace, tmp_path)
    assert len(results) == 1  # uv never ran
    code, printed = results[0]
    assert code == 1
    assert "linkprobe: error: hardlink does not work" in printed
    assert (tmp_path / "github-env-0").read_text() == ""
    assert not (workspace / ".venv").exists()


# -- GitLab CI ---------------------------------------------------------------------------------


def _volumes_on(make: str) -> Layout:
    def build(mounts: ScratchMounts) -> tuple[Path, Path]:
        disk = mounts.ext4() if make == "ext4" else mounts.xfs(reflink=True)
        (disk / "cache").mkdir()
        (disk / "builds").mkdir()
        return mounts.bind(disk / "cache"), mounts.bind(disk / "builds")  # two docker volumes

    build.__name__ = f"volumes on one {make}"
    return build


def gitlab_job(recipe_name: str, job: str) -> tuple[dict[str, str], list[str]]:
    sections = yaml_sections(recipe(recipe_name))
    variables = parse_env_lines("\n".join(line.replace(": ", "=", 1) for line in sections["variables"].splitlines()))
    assert variables == {"UV_CACHE_DIR": "/cache/uv"}  # on the runner's cache volume
    lines = yaml_values(sections[job], "before_script") + yaml_values(sections[job], "script")
    return variables, shell_lines(lines)


def run_gitlab_job(lines: list[str], env: dict[str, str], build_dir: Path) -> tuple[int, str]:
    """One job: GitLab's runner shell runs before_script and script in one bash with -eo pipefail."""
    done = run(["bash", "-c", "set -eo pipefail\n" + "\n".join(lines)], env=env, cwd=build_dir)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        pytest.param(_volumes_on("ext4"), "copy", id="ext4-volumes"),
        pytest.param(_volumes_on("xfs"), _CLONE_ACROSS_BINDS, id="xfs-reflink-volumes"),
    ],
)
def test_gitlab_before_script(
    volumes: Layout, expected: str, mounts: ScratchMounts, wheelhouse: Path, locked_project: Path
) -> None:
    cache_volume, builds = volumes(mounts)
    project = checkout(locked_project, builds / "group" / "project")
    _, lines = gitlab_job("gitlab-before-script", "test")
    # The runner's paths, moved onto the scratch volumes.
    env = uv_env(wheelhouse, {"UV_CACHE_DIR": str(cache_volume / "uv"), "CI_PROJECT_DIR": str(project)})

    code, printed = run_gitlab_job(lines, env, project)
    assert code == 0, printed
    summary = assert_installed(cache_volume / "uv", project / ".venv", printed, expected)
    print(f"\nGitLab before_script | {volumes.__name__} | linkprobe: {expected} | uv: {summary}")


def test_gitlab_before_script_stops_when_the_exported_mode_cannot_work(
    mounts: ScratchMounts, wheelhouse: Path, locked_project: Path
) -> None:
    build = _volumes_on("ext4")
    cache_volume, builds = build(mounts)
    project = checkout(locked_project, builds / "project")
    _, lines = gitlab_job("gitlab-before-script", "test")
    env = uv_env(
        wheelhouse,
        {"UV_CACHE_DIR": str(cache_volume / "uv"), "CI_PROJECT_DIR": str(project), "UV_LINK_MODE": "hardlink"},
    )
    code, printed = run_gitlab_job(lines, env, project)
    assert code == 1
    assert "linkprobe: error: hardlink does not work" in printed
    assert not (project / ".venv").exists()


def test_gitlab_dotenv(mounts: ScratchMounts, wheelhouse: Path, locked_project: Path) -> None:
    build = _volumes_on("ext4")
    cache_volume, builds = build(mounts)
    project = checkout(locked_project, builds / "project")
    _, probe_lines = gitlab_job("gitlab-dotenv", "link-mode")
    _, test_lines = gitlab_job("gitlab-dotenv", "test")
    (report,) = yaml_values(yaml_sections(recipe("gitlab-dotenv"))["link-mode"], "dotenv")
    env = uv_env(wheelhouse, {"UV_CACHE_DIR": str(cache_volume / "uv"), "CI_PROJECT_DIR": str(project)})

    code, printed = run_gitlab_job(probe_lines, env, project)
    assert code == 0, printed
    dotenv = parse_env_lines((project / report).read_text())
    assert dotenv == {"UV_LINK_MODE": "copy"}
    code, printed = run_gitlab_job(test_lines, {**env, **dotenv}, project)  # a later job, same runner
    assert code == 0, printed
    summary = assert_installed(cache_volume / "uv", project / ".venv", printed, "copy")
    print(f"\nGitLab dotenv | volumes on one ext4 | linkprobe: copy | uv: {summary}")


# -- Docker BuildKit ---------------------------------------------------------------------------


def buildkit_run_line() -> tuple[str, str, str]:
    """(cache mount target, WORKDIR, shell command) of the RUN line with the cache mount."""
    dockerfile = recipe("docker-buildkit").replace("\\\n", " ")
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", dockerfile, re.MULTILINE)
    (line,) = [line for line in dockerfile.splitlines() if line.startswith("RUN --mount=")]
    (target,) = re.findall(r"--mount=type=cache,target=(\S+)", line)
    command = re.sub(r"^RUN\s+(--\S+\s+)*", "", line)
    return target, workdir, command


def test_buildkit_cache_mount_is_uvs_cache_dir_for_root(wheelhouse: Path) -> None:
    target, _, _ = buildkit_run_line()
    env = uv_env(wheelhouse, {"HOME": "/root"})
    env.pop("XDG_CACHE_HOME", None)
    assert run(["uv", "cache", "dir"], env=env).stdout.strip() == target


@pytest.mark.parametrize("exported", [None, "hardlink"])
def test_buildkit_run_line(exported: str | None, mounts: ScratchMounts, wheelhouse: Path, locked_project: Path) -> None:
    """The RUN line under /bin/sh -c: cache on its own mount, project on the overlay root filesystem."""
    target, workdir, command = buildkit_run_line()
    cache = mounts.ext4()  # stands in for target=/root/.cache/uv
    app = checkout(locked_project, mounts.overlay() / workdir.lstrip("/"))
    env = uv_env(wheelhouse, {"UV_CACHE_DIR": str(cache)})  # `uv cache dir` answers the mount, as in the build
    if exported:
        env["UV_LINK_MODE"] = exported  # e.g. `ENV UV_LINK_MODE=hardlink` earlier in the Dockerfile

    done = run(["/bin/sh", "-c", command], env=env, cwd=app)
    printed = done.stdout + done.stderr
    if exported == "hardlink":
        assert done.returncode == 1, printed  # the build stops at this RUN line
        assert "linkprobe: error: hardlink does not work" in printed
        assert not (app / ".venv").exists()
        return
    assert done.returncode == 0, printed
    summary = assert_installed(cache, app / ".venv", printed, "copy")
    print(f"\nDocker BuildKit | cache mount {target} on ext4, /app on overlayfs | linkprobe: copy | uv: {summary}")
