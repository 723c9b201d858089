"""``linkprobe audit`` on trees made by real installers: uv (and pnpm) in each link mode.

The installer is told the mode; the audit, knowing nothing of that, must find it: the package
files under the venv are hardlinks, clones, symlinks or copies of uv's cache, and
``--expect MODE`` holds for exactly that mode.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _clients import (
    CLONE_PROOF_MIN_BYTES,
    PNPM_IMPORT_METHOD_ENV,
    WHEEL_NAMES,
    check_pnpm_kit,
    check_wheelhouse,
    from_env_or_prepare,
    pnpm_pairs,
    prepare_pnpm_kit,
    prepare_wheelhouse,
    run,
    uv_env,
    uv_pairs,
)
from _fs_build import ScratchMounts
from test_clients_pnpm import pnpm_install

from linkprobe import LinkMode, audit
from linkprobe.auditing import SIZE_MATCH_MIN_BYTES

pytestmark = pytest.mark.realfs


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("wheelhouse")
    return from_env_or_prepare("LINKPROBE_WHEELHOUSE", scratch, prepare_wheelhouse, check_wheelhouse)


def uv_install(cache: Path, venv: Path, wheelhouse: Path, mode: str) -> None:
    env = uv_env(wheelhouse, {"UV_CACHE_DIR": str(cache), "UV_LINK_MODE": mode})
    offline = ["--offline", "--no-index", "--find-links", str(wheelhouse)]
    for argv in (
        ["venv", str(venv)],
        ["pip", "install", "--python", str(venv / "bin" / "python"), *offline, *WHEEL_NAMES],
    ):
        result = run(["uv", *argv], env=env)
        assert result.returncode == 0, result.stderr


def expect(mode: str, cache: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", "audit", "--expect", mode, "--env", "UV_LINK_MODE", cache, venv],
        capture_output=True,
        text=True,
        check=False,
    )


PLACES = {
    "hardlink": lambda m: (m.ext4(), m.ext4()),
    "copy": lambda m: (m.ext4(), m.ext4()),
    "symlink": lambda m: (m.ext4(), m.ext4()),
    "clone-btrfs": lambda m: (m.btrfs("a"), m.btrfs("b")),
    "clone-xfs": lambda m: (m.xfs(reflink=True), m.xfs(reflink=True)),
}


@pytest.mark.parametrize("case", list(PLACES))
def test_the_audit_finds_the_mode_uv_used(case: str, mounts: ScratchMounts, wheelhouse: Path) -> None:
    mode = case.partition("-")[0]
    cache_parent, project = PLACES[case](mounts)
    cache, venv = cache_parent / "uv-cache", project / ".venv"
    uv_install(cache, venv, wheelhouse, mode)
    package_files = uv_pairs(cache, venv)
    big = [pair for pair in package_files if pair[1].stat().st_size >= CLONE_PROOF_MIN_BYTES]

    result = audit(cache, venv)
    found = {kind: total.files for kind, total in result.kinds.items()}
    others = {"hardlink", "clone", "symlink"} - {mode}
    assert all(found[kind] == 0 for kind in others), found
    if mode == "copy":
        assert result.duplicated_files >= len(package_files)
        assert result.best is LinkMode.HARDLINK
        assert result.savable_bytes == result.duplicated_bytes >= sum(p[1].stat().st_size for p in package_files)
    else:
        # uv links the package files and the dist-info files it takes from the cache.
        assert found[mode] >= (len(big) if case == "clone-btrfs" else len(package_files)), found
        assert result.duplicated_files == 0  # nothing the cache holds was copied
        assert result.savable_bytes == 0
        assert all(path.startswith("lib/") for path in result.kinds[mode].examples)
    if case == "clone-btrfs":  # small files are inline in btrfs metadata: other, never clone
        assert result.other_reasons["inline"].files > 0

    held = expect(mode, cache, venv)
    assert held.returncode == 0, held.stderr
    if mode != "copy":
        wrong = expect("copy", cache, venv)
        assert wrong.returncode == 1
        assert wrong.stderr.startswith("linkprobe: error: expected copy: ")
    else:
        wrong = expect("hardlink", cache, venv)
        assert wrong.returncode == 1
        assert "set UV_LINK_MODE=hardlink" in wrong.stdout
    print(f"\nuv {mode} | {case} | audit: {found} | held twice {result.duplicated_files}")


@pytest.fixture(scope="module")
def pnpm_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("pnpm-kit")
    return from_env_or_prepare("LINKPROBE_PNPM", scratch, prepare_pnpm_kit, check_pnpm_kit)


PNPM_PLACES = {
    "hardlink": lambda m: (m.ext4(), m.ext4()),
    "copy": lambda m: (m.ext4(), m.ext4()),
    "clone": lambda m: (m.xfs(reflink=True), m.xfs(reflink=True)),
}


@pytest.mark.parametrize("mode", list(PNPM_PLACES))
def test_the_audit_finds_the_mode_pnpm_used(mode: str, mounts: ScratchMounts, pnpm_kit: Path, tmp_path: Path) -> None:
    """pnpm's store names files by the hash of their content: a copy is found by size and
    content, since no store file is in the same place as the installed one."""
    store_parent, project_parent = PNPM_PLACES[mode](mounts)
    store, project = store_parent / "pnpm-store", project_parent / "app"
    pnpm_install(pnpm_kit, store, project, tmp_path, {PNPM_IMPORT_METHOD_ENV: mode})
    package_files = pnpm_pairs(store, project)
    result = audit(store, project / "node_modules")
    found = {kind: total.files for kind, total in result.kinds.items()}
    assert all(found[kind] == 0 for kind in {"hardlink", "clone", "symlink"} - {mode}), found
    # pnpm's own symlinks (node_modules/semver -> .pnpm/...) stay inside the tree
    assert result.other_reasons["symlink-internal"].files > 0
    big = [pair for pair in package_files if pair[1].stat().st_size >= SIZE_MATCH_MIN_BYTES]
    if mode == "copy":
        assert result.duplicated_files >= len(big)
        assert result.savable_bytes == result.duplicated_bytes > 0
    else:
        assert found[mode] >= len(package_files)
        assert result.duplicated_files == 0
    assert expect(mode, store, project / "node_modules").returncode == 0
    print(f"\npnpm {mode} | audit: {found} | held twice {result.duplicated_files} of {len(package_files)}")
