"""``linkprobe --for uv|pnpm|bun`` with no paths, run from a project subdirectory, on real mounts.

For each tool and each cache/project pair: the tool's cache is where the tool itself puts it
(HOME on the cache's mount; the tool on PATH answers ``uv cache dir`` / ``pnpm store path`` /
``bun pm cache``), the project is on the other mount, and linkprobe runs from a subdirectory of
the project. It must find both by itself (the JSON says so), answer in the tool's words, and the
real tool, installing offline with that answer, must then do exactly that (inodes and FIEMAP
decide, see _clients.classify) and print no fallback line.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from _bunkit import bun_bin, kit_from_env_or
from _clients import (
    CLONE_PROOF_MIN_BYTES,
    PAIRS,
    Pair,
    check_pnpm_kit,
    check_wheelhouse,
    client_env,
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

pytestmark = pytest.mark.realfs

_IDS = [p.name for p in PAIRS]
#: bun on Linux has no clonefile backend: its best is hardlink where link(2) works, else copyfile.
#: Its copyfile uses copy_file_range(2), which btrfs serves by sharing extents (measured: the
#: installed files then share the cache's blocks), so the files are own inodes that are clones.
_BUN_EXPECTED = {
    "same ext4": ("hardlink", "hardlink"),
    "bind mount of one ext4": ("copyfile", "copy"),
    "btrfs subvolumes a -> b": ("copyfile", "clone"),
    "xfs reflink=1": ("hardlink", "hardlink"),  # one XFS, one mount: hardlink is first for bun
    "ext4 cache -> tmpfs project": ("copyfile", "copy"),
}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("wheelhouse")
    return from_env_or_prepare("LINKPROBE_WHEELHOUSE", scratch, prepare_wheelhouse, check_wheelhouse)


@pytest.fixture(scope="module")
def pnpm_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return from_env_or_prepare("LINKPROBE_PNPM", tmp_path_factory.mktemp("pnpm-kit"), prepare_pnpm_kit, check_pnpm_kit)


@pytest.fixture(scope="module")
def bun_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit_from_env_or(tmp_path_factory.mktemp("bun-kit"))


def linkprobe_for(tool: str, cwd: Path, env: dict[str, str], *extra: str) -> tuple[str, dict[str, object]]:
    """(``--for TOOL --format env|mode`` output, the JSON document), both from ``cwd``."""
    fmt = "mode" if tool == "bun" else "env"
    line = run([sys.executable, "-m", "linkprobe", "--for", tool, "--format", fmt, *extra], env=env, cwd=cwd)
    assert line.returncode == 0, line.stderr
    # The one line allowed: the tool's cache does not exist yet (a tool that has not run).
    assert all(
        note.startswith("linkprobe: note: source ") and " does not exist yet; probed " in note
        for note in line.stderr.splitlines()
    ), line.stderr
    assert len(line.stderr.splitlines()) <= 1, line.stderr
    doc = run([sys.executable, "-m", "linkprobe", "--for", tool, "--format", "json", *extra], env=env, cwd=cwd)
    assert doc.returncode == 0, doc.stderr
    return line.stdout, json.loads(doc.stdout)


def sides(document: dict[str, object]) -> tuple[tuple[object, object], tuple[object, object]]:
    source, target = document["source"], document["target"]
    assert isinstance(source, dict)
    assert isinstance(target, dict)
    return (source["given"], source["from"]), (target["given"], target["from"])


def new_home(parent: Path) -> Path:
    home = parent / "home"
    home.mkdir()
    return home


# -- uv ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=_IDS)
def test_for_uv(request: pytest.FixtureRequest, pair: Pair, mounts: ScratchMounts, wheelhouse: Path) -> None:
    cache_parent, project_parent = pair.build(mounts)
    request.addfinalizer(lambda: empty(cache_parent, project_parent))  # the shared scratch disks are small
    home, app = new_home(cache_parent), project_parent / "app"
    (app / "src" / "pkg").mkdir(parents=True)
    (app / "pyproject.toml").write_text(
        '[project]\nname = "for-uv"\nversion = "0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["packaging", "idna", "six"]\n\n[tool.uv]\npackage = false\n'
    )
    env = uv_env(wheelhouse, {"HOME": str(home)})
    env.pop("XDG_CACHE_HOME", None)
    here = app / "src" / "pkg"

    line, document = linkprobe_for("uv", here, env)
    assert line == f"UV_LINK_MODE={pair.expected}\n"
    cache = home / ".cache" / "uv"
    assert sides(document) == ((str(cache), "uv cache dir"), (str(app / ".venv"), "default"))
    assert (document["tool"], document["variable"], document["value"]) == ("uv", "UV_LINK_MODE", pair.expected)

    synced = run(["uv", "sync"], env={**env, "UV_LINK_MODE": pair.expected}, cwd=here)
    printed = synced.stdout + synced.stderr
    assert synced.returncode == 0, printed
    assert fallback_lines(printed) == [], printed
    done = outcome(uv_pairs(cache, app / ".venv"))
    assert done.mode == pair.expected, done.summary()
    print(f"\n--for uv | {pair.name} | UV_LINK_MODE={pair.expected} | uv sync: {done.summary()} | no fallback line")


# -- pnpm --------------------------------------------------------------------------------------


#: pnpm's default store: (the mode, whether pnpm moved the store to the top of the project's
#: filesystem because link(2) from HOME into the project fails; also between btrfs subvolumes,
#: where clone would have worked). On the project's filesystem: clone where it can, else hardlink.
_PNPM_DEFAULT_STORE = {
    "same ext4": ("hardlink", False),
    "bind mount of one ext4": ("hardlink", True),
    "btrfs subvolumes a -> b": ("clone", True),
    "xfs reflink=1": ("clone", False),
    "ext4 cache -> tmpfs project": ("hardlink", True),
}


@pytest.mark.parametrize("store_rule", ["default", "pnpm_config_store_dir"])
@pytest.mark.parametrize("pair", PAIRS, ids=_IDS)
def test_for_pnpm(
    request: pytest.FixtureRequest, pair: Pair, store_rule: str, mounts: ScratchMounts, pnpm_kit: Path
) -> None:
    """pnpm keeps "one store per disk": when HOME cannot hardlink into the project, its default
    store is ``.pnpm-store`` at the top of the project's filesystem (pnpm's storeDir docs), and
    ``pnpm store path`` says so. A store set with pnpm_config_store_dir stays where it is."""
    cache_parent, project_parent = pair.build(mounts)
    request.addfinalizer(lambda: empty(cache_parent, project_parent))  # the shared scratch disks are small
    home, app = new_home(cache_parent), project_parent / "app"
    (app / "packages" / "web").mkdir(parents=True)
    for name in ("package.json", "pnpm-lock.yaml"):
        shutil.copy2(pnpm_kit / "project" / name, app / name)
    env = client_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")})
    env["PATH"] = f"{pnpm_bin(pnpm_kit).parent}:{env['PATH']}"
    for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "PNPM_HOME"):
        env.pop(name, None)
    if store_rule == "pnpm_config_store_dir":
        env["pnpm_config_store_dir"] = str(cache_parent / "pnpm-store")
        expected, moved = pair.expected, False
    else:
        expected, moved = _PNPM_DEFAULT_STORE[pair.name]

    line, document = linkprobe_for("pnpm", app / "packages" / "web", env)
    assert line == f"pnpm_config_package_import_method={expected}\n"
    (source, source_from), target = sides(document)
    assert source_from == "pnpm store path"
    assert target == (str(app / "node_modules"), "default")
    store = Path(str(source)).parent  # pnpm adds its layout directory (v11)
    assert Path(str(source)).name.startswith("v")
    if store_rule == "pnpm_config_store_dir":
        assert store == cache_parent / "pnpm-store"
    elif not moved:
        assert store == home / ".local" / "share" / "pnpm" / "store"
    else:
        assert store.name == ".pnpm-store"
        assert app.is_relative_to(store.parent)
    shutil.copytree(pnpm_kit / "store", store, symlinks=True, ignore=shutil.ignore_patterns("projects"))
    shutil.copytree(pnpm_kit / "cache", home / "pnpm-cache")  # package metadata, for the lockfile check

    argv = ["pnpm", "install", "--offline", "--frozen-lockfile", "--cache-dir", str(home / "pnpm-cache")]
    chosen = {**env, "pnpm_config_package_import_method": expected}
    installed = run([*argv, "--reporter", "append-only"], env=chosen, cwd=app)
    printed = installed.stdout + installed.stderr
    assert installed.returncode == 0, printed
    assert fallback_lines(printed) == [], printed
    done = outcome(pnpm_pairs(store, app))
    assert done.mode == expected, done.summary()
    print(f"\n--for pnpm | {pair.name} | store {store_rule} | {expected} | pnpm: {done.summary()} | no fallback line")
    if store.name == ".pnpm-store":
        shutil.rmtree(store)  # at the top of a shared scratch filesystem: the next test's store


# -- bun ---------------------------------------------------------------------------------------


def bun_pairs(cache: Path, app: Path) -> list[tuple[Path, Path]]:
    (package,) = cache.glob("semver@*")
    installed = app / "node_modules" / "semver"
    pairs = [(f, installed / f.relative_to(package)) for f in sorted(package.rglob("*")) if f.is_file()]
    assert len([p for p in pairs if p[0].stat().st_size >= CLONE_PROOF_MIN_BYTES]) >= 3
    return pairs


@pytest.mark.parametrize("pair", PAIRS, ids=_IDS)
def test_for_bun(request: pytest.FixtureRequest, pair: Pair, mounts: ScratchMounts, bun_kit: Path) -> None:
    word, expected_outcome = _BUN_EXPECTED[pair.name]
    cache_parent, project_parent = pair.build(mounts)
    request.addfinalizer(lambda: empty(cache_parent, project_parent))  # the shared scratch disks are small
    home, app = new_home(cache_parent), project_parent / "app"
    cache = home / ".bun" / "install" / "cache"
    shutil.copytree(bun_kit / "cache", cache, symlinks=True)
    (app / "src").mkdir(parents=True)
    for name in ("package.json", "bun.lock"):
        shutil.copy2(bun_kit / "project" / name, app / name)
    env = client_env({"HOME": str(home), "PATH": f"{bun_bin(bun_kit).parent}:/usr/bin:/bin"})
    for name in ("XDG_CACHE_HOME", "BUN_INSTALL", "BUN_INSTALL_CACHE_DIR"):
        env.pop(name, None)

    line, document = linkprobe_for("bun", app / "src", env)
    assert line == f"{word}\n"
    assert sides(document) == ((str(cache), "bun pm cache"), (str(app / "node_modules"), "default"))
    assert (document["tool"], document["variable"], document["value"]) == ("bun", None, word)

    installed = run(["bun", "install", "--offline", "--frozen-lockfile", "--backend", word], env=env, cwd=app)
    printed = installed.stdout + installed.stderr
    assert installed.returncode == 0, printed
    assert fallback_lines(printed) == [], printed
    done = outcome(bun_pairs(cache, app))
    assert done.mode == expected_outcome, done.summary()
    print(f"\n--for bun | {pair.name} | --backend {word} | bun: {done.summary()} | no fallback line")
