"""docs/ci.md's GitLab recipe (include ci/gitlab/linkprobe.yml, extends .linkprobe) run by a real
pipeline runner: gitlab-ci-local, shell executor, ``--shell-isolation``.

The job's build directory (``.gitlab-ci-local/builds/test`` in the project) and uv's cache are two
bind mounts of one scratch disk, as the Docker executor's build directory and cache volume are.
GitLab's own runner is not used; gitlab-ci-local reads the same YAML and runs the job's shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _clients import (
    ClientUnavailableError,
    check_pnpm_kit,
    check_wheelhouse,
    fallback_lines,
    from_env_or_prepare,
    outcome,
    pnpm_bin,
    pnpm_pairs,
    prepare_pnpm_kit,
    prepare_wheelhouse,
    run,
    uv_env,
    uv_pairs,
)
from _fs_build import ScratchMounts
from _tidy import empty
from test_ci_recipes import recipe

pytestmark = pytest.mark.realfs

ROOT = Path(__file__).resolve().parents[1]
GITLAB_CI_LOCAL_VERSION = "4.56.2"  # the last release that runs on Node.js 20
_KERNEL = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
#: Linux 5.18 lets FICLONE cross mounts of one filesystem (fs/remap_range.c compares superblocks).
_CLONE_ACROSS_BINDS = "clone" if _KERNEL >= (5, 18) else "copy"


def gitlab_ci_local_bin(kit: Path) -> Path:
    return kit / "node_modules" / ".bin" / "gitlab-ci-local"


def prepare_gitlab_ci_local(dest: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ClientUnavailableError("npm not found (install Node.js)")
    argv = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(dest)]
    done = subprocess.run(
        [*argv, f"gitlab-ci-local@{GITLAB_CI_LOCAL_VERSION}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ClientUnavailableError(f"npm install gitlab-ci-local failed: {done.stderr[-2000:]}")


def check_gitlab_ci_local(kit: Path) -> Path:
    if not gitlab_ci_local_bin(kit).exists():
        raise ClientUnavailableError(f"no gitlab-ci-local in {kit}")
    if shutil.which("rsync") is None:  # --shell-isolation copies the project with rsync
        raise ClientUnavailableError("rsync not found (apt-get install rsync)")
    return kit


@pytest.fixture(scope="module")
def gitlab_ci_local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("gitlab-ci-local")
    kit = from_env_or_prepare("LINKPROBE_GITLAB_CI_LOCAL", scratch, prepare_gitlab_ci_local, check_gitlab_ci_local)
    return gitlab_ci_local_bin(kit)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return from_env_or_prepare(
        "LINKPROBE_WHEELHOUSE", tmp_path_factory.mktemp("wh"), prepare_wheelhouse, check_wheelhouse
    )


Layout = Callable[[ScratchMounts], tuple[Path, Path]]


def _volumes_on(make: str) -> Layout:
    def build(mounts: ScratchMounts) -> tuple[Path, Path]:
        disk = mounts.ext4() if make == "ext4" else mounts.xfs(reflink=True)
        (disk / "cache").mkdir()
        (disk / "builds").mkdir()
        return mounts.bind(disk / "cache"), mounts.bind(disk / "builds")

    build.__name__ = f"cache and builds on one {make}"
    return build


def make_repo(builds: Path, cache: Path, wheelhouse: Path, job_variables: str = "") -> Path:
    """A git repository with the locked demo project, the template, and the docs' .gitlab-ci.yml."""
    repo = builds / "group" / "project"
    (repo / "ci" / "gitlab").mkdir(parents=True)
    shutil.copy2(ROOT / "ci" / "gitlab" / "linkprobe.yml", repo / "ci" / "gitlab" / "linkprobe.yml")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "gitlab-demo"\nversion = "0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["packaging", "idna", "six"]\n\n[tool.uv]\npackage = false\n'
    )
    locked = run(["uv", "lock"], env=uv_env(wheelhouse, {"UV_CACHE_DIR": str(builds / "lock-cache")}), cwd=repo)
    assert locked.returncode == 0, locked.stderr
    shutil.rmtree(builds / "lock-cache")
    pipeline = recipe("gitlab-include").replace("/cache/uv", str(cache / "uv"))  # the runner's volume, here
    if job_variables:
        pipeline = pipeline.replace("  extends: .linkprobe\n", f"  extends: .linkprobe\n  variables:\n{job_variables}")
    (repo / ".gitlab-ci.yml").write_text(pipeline)
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "demo"]):
        subprocess.run([*git, *argv], cwd=repo, check=True, capture_output=True)
    return repo


def run_pipeline(
    gitlab_ci_local: Path, repo: Path, wheelhouse: Path, scratch: Path, extra_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """gitlab-ci-local with ``linkprobe`` (the one under test) and the pinned uv on PATH, offline."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    (bin_dir / "linkprobe").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m linkprobe "$@"\n')
    (bin_dir / "linkprobe").chmod(0o755)
    env = uv_env(wheelhouse, {"HOME": str(scratch / "home")})
    env["PATH"] = f"{bin_dir}:{extra_path or bin_dir}:{env['PATH']}"
    env.pop("XDG_CACHE_HOME", None)
    return run([gitlab_ci_local, "--shell-isolation", "--no-color"], env=env, cwd=repo)


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        pytest.param(_volumes_on("ext4"), "copy", id="ext4"),
        pytest.param(_volumes_on("xfs"), _CLONE_ACROSS_BINDS, id="xfs-reflink"),
    ],
)
def test_pipeline_exports_the_mode_and_uv_installs_without_fallback(
    request: pytest.FixtureRequest,
    volumes: Layout,
    expected: str,
    mounts: ScratchMounts,
    gitlab_ci_local: Path,
    wheelhouse: Path,
    tmp_path: Path,
) -> None:
    cache, builds = volumes(mounts)
    request.addfinalizer(lambda: empty(cache, builds))  # the shared scratch disks are small
    repo = make_repo(builds, cache, wheelhouse)
    done = run_pipeline(gitlab_ci_local, repo, wheelhouse, tmp_path)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert f"test > linkprobe --for uv: UV_LINK_MODE={expected}" in printed
    assert " PASS  test" in printed
    assert "test $ uv sync --locked" in printed
    assert "test > Installed 3 packages" in printed
    job_output = "\n".join(line for line in printed.splitlines() if line.startswith("test > "))
    assert fallback_lines(job_output) == [], job_output  # gitlab-ci-local's own notes are not the job's
    build_dir = repo / ".gitlab-ci-local" / "builds" / "test"  # --shell-isolation: the job's own copy
    done_install = outcome(uv_pairs(cache / "uv", build_dir / ".venv"))
    assert done_install.mode == expected, done_install.summary()
    assert not (repo / ".venv").exists()
    print(f"\ngitlab-ci-local | {volumes.__name__} | UV_LINK_MODE={expected} | uv sync: {done_install.summary()}")


def test_a_job_mode_that_cannot_work_fails_before_uv(
    request: pytest.FixtureRequest, mounts: ScratchMounts, gitlab_ci_local: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    cache, builds = _volumes_on("ext4")(mounts)
    request.addfinalizer(lambda: empty(cache, builds))  # the shared scratch disks are small
    repo = make_repo(builds, cache, wheelhouse, job_variables="    UV_LINK_MODE: hardlink\n")
    done = run_pipeline(gitlab_ci_local, repo, wheelhouse, tmp_path)
    printed = done.stdout + done.stderr
    assert done.returncode != 0, printed
    assert "linkprobe: error: hardlink does not work from " in printed
    assert " FAIL  test" in printed
    assert not (repo / ".gitlab-ci-local" / "builds" / "test" / ".venv").exists()


def test_the_template_with_pnpm(
    request: pytest.FixtureRequest, mounts: ScratchMounts, gitlab_ci_local: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    """LINKPROBE_TOOL: pnpm, the store on the cache volume: the job exports
    pnpm_config_package_import_method=copy and pnpm copies, with no fallback line."""
    kit = from_env_or_prepare("LINKPROBE_PNPM", tmp_path / "pnpm-kit", prepare_pnpm_kit, check_pnpm_kit)
    cache, builds = _volumes_on("ext4")(mounts)
    request.addfinalizer(lambda: empty(cache, builds))  # the shared scratch disks are small
    store = cache / "pnpm-store"
    shutil.copytree(kit / "store", store, symlinks=True, ignore=shutil.ignore_patterns("projects"))
    shutil.copytree(kit / "cache", cache / "pnpm-cache")
    repo = builds / "group" / "web"
    (repo / "ci" / "gitlab").mkdir(parents=True)
    shutil.copy2(ROOT / "ci" / "gitlab" / "linkprobe.yml", repo / "ci" / "gitlab" / "linkprobe.yml")
    for name in ("package.json", "pnpm-lock.yaml"):
        shutil.copy2(kit / "project" / name, repo / name)
    (repo / ".gitlab-ci.yml").write_text(
        "include:\n  - local: ci/gitlab/linkprobe.yml\n\n"
        f"variables:\n  pnpm_config_store_dir: {store}\n\n"
        "test:\n  extends: .linkprobe\n  variables:\n    LINKPROBE_TOOL: pnpm\n  script:\n"
        f"    - pnpm install --offline --frozen-lockfile --cache-dir {cache / 'pnpm-cache'} --reporter append-only\n"
    )
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "demo"]):
        subprocess.run([*git, *argv], cwd=repo, check=True, capture_output=True)
    (tmp_path / "scratch").mkdir()
    done = run_pipeline(gitlab_ci_local, repo, wheelhouse, tmp_path / "scratch", extra_path=pnpm_bin(kit).parent)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "test > linkprobe --for pnpm: pnpm_config_package_import_method=copy" in printed
    assert "test > Packages are copied from the content-addressable store" in printed
    job_output = "\n".join(line for line in printed.splitlines() if line.startswith("test > "))
    assert fallback_lines(job_output) == [], job_output
    installed = outcome(pnpm_pairs(store, repo / ".gitlab-ci-local" / "builds" / "test"))
    assert installed.mode == "copy", installed.summary()
    print(f"\ngitlab-ci-local | pnpm, store on the cache volume | copy | pnpm: {installed.summary()}")
