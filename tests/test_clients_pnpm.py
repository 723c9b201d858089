"""pnpm (from the npm registry, pinned in _clients.py) on real mounts, installing offline.

The store sits on one mount and the project on another (or the same), as in CI. linkprobe
picks the package-import-method; pnpm installs from the prepared store with
``--offline --frozen-lockfile``; inodes and FIEMAP show what pnpm really did.

pnpm 11 and later read settings from ``pnpm_config_*`` environment variables and ignore
``npm_config_*`` ones, so the variable is ``pnpm_config_package_import_method`` (the last test
here proves that npm_config_ is ignored by the pinned pnpm).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _clients import (
    PAIRS,
    PNPM_IMPORT_METHOD_ENV,
    Pair,
    bind_pair,
    check_pnpm_kit,
    client_env,
    from_env_or_prepare,
    linkprobe_env,
    outcome,
    pnpm_bin,
    pnpm_dirs,
    pnpm_pairs,
    prepare_pnpm_kit,
    run,
)
from _fs_build import ScratchMounts

pytestmark = pytest.mark.realfs

#: How pnpm words each mode in its "Packages are ... from the content-addressable store" line.
_PNPM_SAYS = {"hardlink": "hard linked", "clone": "cloned", "copy": "copied"}


@pytest.fixture(scope="module")
def pnpm_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("pnpm-kit")
    return from_env_or_prepare("LINKPROBE_PNPM", scratch, prepare_pnpm_kit, check_pnpm_kit)


def pnpm_install(kit: Path, store: Path, project: Path, home: Path, settings: dict[str, str]) -> str:
    """Offline install of the kit's lockfile into ``project`` from ``store``; returns pnpm's output."""
    if not store.exists():
        # Everything but the registry of projects that used the store (links to the kit's project).
        shutil.copytree(kit / "store", store, symlinks=True, ignore=shutil.ignore_patterns("projects"))
    shutil.copytree(kit / "cache", home / "pnpm-cache")  # package metadata, for the lockfile check
    project.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "pnpm-lock.yaml"):
        shutil.copy2(kit / "project" / name, project / name)
    env = client_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), **settings})
    env.pop("XDG_DATA_HOME", None)
    env.pop("XDG_STATE_HOME", None)
    argv = [str(pnpm_bin(kit)), "install", "--offline", "--frozen-lockfile", *pnpm_dirs(store, home / "pnpm-cache")]
    result = run(argv, env=env, cwd=project)
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    return printed


def says(printed: str) -> str:
    """The mode pnpm reports it used."""
    for mode, words in _PNPM_SAYS.items():
        if f"Packages are {words} from the content-addressable store" in printed:
            return mode
    raise AssertionError(f"pnpm did not say how it imported packages:\n{printed}")


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_pnpm_imports_with_the_method_linkprobe_chose(
    pair: Pair, mounts: ScratchMounts, pnpm_kit: Path, tmp_path: Path
) -> None:
    store_parent, project_parent = pair.build(mounts)
    store, project = store_parent / "pnpm-store", project_parent / "app"
    shutil.copytree(pnpm_kit / "store", store, symlinks=True, ignore=shutil.ignore_patterns("projects"))

    chosen = linkprobe_env(store, project / "node_modules", PNPM_IMPORT_METHOD_ENV, client_env())
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout == f"{PNPM_IMPORT_METHOD_ENV}={pair.expected}\n"

    printed = pnpm_install(pnpm_kit, store, project, tmp_path, {PNPM_IMPORT_METHOD_ENV: pair.expected})
    assert says(printed) == pair.expected
    done = outcome(pnpm_pairs(store, project))
    assert done.mode == pair.expected, done.summary()
    if pair.expected == "hardlink":
        assert min(done.nlinks) >= 2
    else:
        assert set(done.nlinks) == {1}
    print(f"\npnpm | {pair.name} | linkprobe: {pair.expected} | pnpm: {done.summary()}")


def test_exported_hardlink_across_a_bind_mount(mounts: ScratchMounts, pnpm_kit: Path, tmp_path: Path) -> None:
    """linkprobe stops the job; pnpm left alone would quietly copy, with no warning at all."""
    store_parent, project_parent = bind_pair(mounts)
    store, project = store_parent / "pnpm-store", project_parent / "app"
    settings = {PNPM_IMPORT_METHOD_ENV: "hardlink"}
    checked = linkprobe_env(store, project / "node_modules", PNPM_IMPORT_METHOD_ENV, client_env(settings))
    assert checked.returncode == 1
    assert checked.stdout == ""
    assert checked.stderr.startswith("linkprobe: error: hardlink does not work from ")

    printed = pnpm_install(pnpm_kit, store, project, tmp_path, settings)
    assert says(printed) == "copy"
    assert "WARN" not in printed
    assert outcome(pnpm_pairs(store, project)).mode == "copy"


def test_pnpm_ignores_npm_config_variables(mounts: ScratchMounts, pnpm_kit: Path, tmp_path: Path) -> None:
    """Why the recipes use pnpm_config_: the npm_config_ spelling asks for copy and gets hardlinks."""
    store, project = mounts.ext4() / "pnpm-store", mounts.ext4() / "app"
    printed = pnpm_install(pnpm_kit, store, project, tmp_path, {"npm_config_package_import_method": "copy"})
    assert says(printed) == "hardlink"
    assert outcome(pnpm_pairs(store, project)).mode == "hardlink"


@pytest.mark.parametrize(("build", "expected"), [("ext4", "copy"), ("btrfs", "clone")])
def test_pnpms_clone_or_copy_is_read_as_an_order(
    build: str, expected: str, mounts: ScratchMounts, pnpm_kit: Path, tmp_path: Path
) -> None:
    """clone-or-copy is the user's own rule: clone, else copy -- never hardlink, even on one
    ext4 where auto would say hardlink. linkprobe prints the one of the two that works."""
    if build == "ext4":
        store_parent, project_parent = mounts.ext4(), mounts.ext4()
    else:
        store_parent, project_parent = mounts.btrfs("a"), mounts.btrfs("b")
    store, project = store_parent / "pnpm-store", project_parent / "app"
    shutil.copytree(pnpm_kit / "store", store, symlinks=True, ignore=shutil.ignore_patterns("projects"))
    settings = {PNPM_IMPORT_METHOD_ENV: "clone-or-copy"}
    chosen = linkprobe_env(store, project / "node_modules", PNPM_IMPORT_METHOD_ENV, client_env(settings))
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout == f"{PNPM_IMPORT_METHOD_ENV}={expected}\n"

    printed = pnpm_install(pnpm_kit, store, project, tmp_path, {PNPM_IMPORT_METHOD_ENV: expected})
    assert says(printed) == expected
    assert outcome(pnpm_pairs(store, project)).mode == expected
