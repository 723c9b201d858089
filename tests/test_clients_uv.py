"""uv, installed from PyPI at the version pinned in the test dependencies, on real mounts.

For each cache/project pair: linkprobe picks UV_LINK_MODE before the venv exists, uv installs
offline with that mode, and the test proves from inodes and FIEMAP what uv really did. The
expected mode of each pair (``PAIRS`` in _clients.py) comes from the kernel's rules, not from
linkprobe.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _clients import (
    PAIRS,
    WHEEL_NAMES,
    Pair,
    bind_pair,
    check_wheelhouse,
    fallback_lines,
    from_env_or_prepare,
    linkprobe_env,
    outcome,
    prepare_wheelhouse,
    run,
    uv_env,
    uv_pairs,
)
from _fs_build import ScratchMounts

pytestmark = pytest.mark.realfs


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("wheelhouse")
    return from_env_or_prepare("LINKPROBE_WHEELHOUSE", scratch, prepare_wheelhouse, check_wheelhouse)


def uv_install(venv: Path, wheelhouse: Path, env: dict[str, str]) -> str:
    """`uv venv` + `uv pip install`, offline; returns everything uv printed."""
    offline = ["--offline", "--no-index", "--find-links", str(wheelhouse)]
    printed = []
    for argv in (
        ["venv", str(venv)],
        ["pip", "install", "--python", str(venv / "bin" / "python"), *offline, *WHEEL_NAMES],
    ):
        result = run(["uv", *argv], env=env)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout + result.stderr)
    return "".join(printed)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_uv_installs_with_the_mode_linkprobe_chose(pair: Pair, mounts: ScratchMounts, wheelhouse: Path) -> None:
    cache_parent, project = pair.build(mounts)
    cache, venv = cache_parent / "uv-cache", project / ".venv"
    env = uv_env(wheelhouse)

    chosen = linkprobe_env(cache, venv, "UV_LINK_MODE", env)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout == f"UV_LINK_MODE={pair.expected}\n"
    assert not venv.exists()  # linkprobe probed the parent and created nothing

    printed = uv_install(venv, wheelhouse, {**env, "UV_CACHE_DIR": str(cache), "UV_LINK_MODE": pair.expected})
    assert fallback_lines(printed) == []
    done = outcome(uv_pairs(cache, venv))
    assert done.mode == pair.expected, done.summary()
    if pair.expected == "hardlink":
        assert min(done.nlinks) >= 2
    else:
        assert set(done.nlinks) == {1}
    print(f"\nuv | {pair.name} | linkprobe: {pair.expected} | uv: {done.summary()} | fallback lines: none")


def test_without_linkprobe_uv_falls_back_across_a_bind_mount(mounts: ScratchMounts, wheelhouse: Path) -> None:
    """The problem itself: uv's default (hardlink) warns and copies. Also proves the detector works."""
    cache_parent, project = bind_pair(mounts)
    cache, venv = cache_parent / "uv-cache", project / ".venv"
    printed = uv_install(venv, wheelhouse, uv_env(wheelhouse, {"UV_CACHE_DIR": str(cache)}))
    warnings = fallback_lines(printed)
    assert any("Failed to hardlink files; falling back to full copy" in line for line in warnings), printed
    assert outcome(uv_pairs(cache, venv)).mode == "copy"
    print(f"\nuv | bind mount, UV_LINK_MODE unset, no linkprobe | uv: {warnings[0].strip()}")


def test_exported_hardlink_across_a_bind_mount_stops_the_job(mounts: ScratchMounts, wheelhouse: Path) -> None:
    cache_parent, project = bind_pair(mounts)
    env = uv_env(wheelhouse, {"UV_LINK_MODE": "hardlink"})
    result = linkprobe_env(cache_parent / "uv-cache", project / ".venv", "UV_LINK_MODE", env)
    assert result.returncode == 1
    assert result.stdout == ""  # nothing to append to $GITHUB_ENV
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("linkprobe: error: hardlink does not work from ")
    assert "different mounts" in result.stderr
    print(f"\nuv | bind mount, UV_LINK_MODE=hardlink exported | linkprobe exit 1: {result.stderr.strip()}")


def test_exported_copy_is_kept_although_hardlink_would_work(mounts: ScratchMounts, wheelhouse: Path) -> None:
    """An explicit mode is checked, never upgraded: uv then copies, as the user asked."""
    cache, venv = mounts.ext4() / "uv-cache", mounts.ext4() / ".venv"
    env = uv_env(wheelhouse, {"UV_LINK_MODE": "copy", "UV_CACHE_DIR": str(cache)})
    chosen = linkprobe_env(cache, venv, "UV_LINK_MODE", env)
    assert chosen.stdout == "UV_LINK_MODE=copy\n"
    assert fallback_lines(uv_install(venv, wheelhouse, env)) == []
    assert outcome(uv_pairs(cache, venv)).mode == "copy"


def test_uv_is_the_pinned_one() -> None:
    """What the tests run is the uv pinned in pyproject.toml, not one from the developer's PATH."""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    pins = re.findall(r'"uv==([0-9.]+)"', pyproject)
    assert len(pins) == 1, pins
    result = run(["uv", "--version"], env=uv_env(Path("/nonexistent")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["uv", pins[0]]
