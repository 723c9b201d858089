"""linkprobe.discovery: the cache and target of each tool from every rule, with fake tools on
PATH (answering, failing, hanging, silent) and, at the end, with the real uv, pnpm and bun."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _bunkit import bun_bin, kit_from_env_or
from _clients import check_pnpm_kit, client_env, pnpm_bin, unavailable, uv_bin

from linkprobe.discovery import MissingPathError, ask_tool, discover, for_request, project_root
from linkprobe.errors import InvalidModeError
from linkprobe.modes import AUTO_ORDER, LinkMode
from linkprobe.presets import Located, NoVariableError, UnknownToolError, get_preset


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def plan_for(
    tool: str, environ: dict[str, str], cwd: Path, timeout: float = 5.0
) -> tuple[Located, Located, tuple[str, ...]]:
    plan = discover(get_preset(tool, "linux"), environ=environ, cwd=str(cwd), platform="linux", timeout=timeout)
    return plan.source, plan.target, plan.notes


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a subdirectory; the tests run from the subdirectory."""
    root = tmp_path / "proj"
    (root / "src" / "pkg").mkdir(parents=True)
    return root


# -- project roots -----------------------------------------------------------------------------


def test_uv_root_is_the_nearest_pyproject(project: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\n")
    assert project_root("uv", str(project / "src" / "pkg")) == str(project)
    (project / "src" / "pyproject.toml").write_text("[project]\n")
    assert project_root("uv", str(project / "src" / "pkg")) == str(project / "src")


def test_no_marker_means_the_working_directory(project: Path) -> None:
    here = project / "src" / "pkg"
    for tool in ("uv", "pnpm", "bun"):
        assert project_root(tool, str(here)) == str(here)


def test_pnpm_root_is_the_workspace_over_the_nearest_package(project: Path) -> None:
    (project / "src" / "package.json").write_text("{}")
    assert project_root("pnpm", str(project / "src" / "pkg")) == str(project / "src")
    (project / "pnpm-workspace.yaml").write_text("packages: ['src']\n")
    assert project_root("pnpm", str(project / "src" / "pkg")) == str(project)


def test_bun_root_is_the_workspace_package(project: Path) -> None:
    (project / "src" / "package.json").write_text("{}")
    (project / "package.json").write_text('{"name": "outer"}')
    assert project_root("bun", str(project / "src" / "pkg")) == str(project / "src")
    (project / "package.json").write_text('{"workspaces": ["src"]}')
    assert project_root("bun", str(project / "src" / "pkg")) == str(project)


# -- each rule, with no tool on PATH -----------------------------------------------------------


def no_tools(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return {"PATH": str(empty), "HOME": str(tmp_path / "home"), **extra}


@pytest.mark.parametrize(
    ("tool", "extra", "source_rel", "origin"),
    [
        ("uv", {}, "home/.cache/uv", "default"),
        ("uv", {"XDG_CACHE_HOME": "{t}/xdg"}, "xdg/uv", "XDG_CACHE_HOME"),
        ("uv", {"UV_CACHE_DIR": "{t}/uvc"}, "uvc", "UV_CACHE_DIR"),
        ("pnpm", {}, "home/.local/share/pnpm/store", "default"),
        ("pnpm", {"XDG_DATA_HOME": "{t}/xd"}, "xd/pnpm/store", "XDG_DATA_HOME"),
        ("pnpm", {"PNPM_HOME": "{t}/ph"}, "ph/store", "PNPM_HOME"),
        ("pnpm", {"pnpm_config_store_dir": "{t}/sd"}, "sd", "pnpm_config_store_dir"),
        ("bun", {}, "home/.bun/install/cache", "default"),
        ("bun", {"XDG_CACHE_HOME": "{t}/xc"}, "xc/.bun/install/cache", "XDG_CACHE_HOME"),
        ("bun", {"BUN_INSTALL": "{t}/bi"}, "bi/install/cache", "BUN_INSTALL"),
        ("bun", {"BUN_INSTALL_CACHE_DIR": "{t}/bc"}, "bc", "BUN_INSTALL_CACHE_DIR"),
    ],
)
def test_documented_rule_without_the_tool(
    tool: str, extra: dict[str, str], source_rel: str, origin: str, tmp_path: Path, project: Path
) -> None:
    environ = no_tools(tmp_path, **{k: v.format(t=tmp_path) for k, v in extra.items()})
    source, _, notes = plan_for(tool, environ, project / "src")
    assert source == Located(str(tmp_path / source_rel), origin)
    assert notes == ()  # a tool that is not installed is not worth a note


def test_home_changed_moves_every_default(tmp_path: Path, project: Path) -> None:
    for home in ("h1", "h2"):
        environ = no_tools(tmp_path)
        environ["HOME"] = str(tmp_path / home)
        assert plan_for("uv", environ, project)[0].path == str(tmp_path / home / ".cache" / "uv")
        assert plan_for("pnpm", environ, project)[0].path == str(tmp_path / home / ".local/share/pnpm/store")
        assert plan_for("bun", environ, project)[0].path == str(tmp_path / home / ".bun/install/cache")


@pytest.mark.parametrize(
    ("tool", "marker", "extra", "target_rel", "origin"),
    [
        ("uv", "pyproject.toml", {}, "proj/.venv", "default"),
        ("uv", "pyproject.toml", {"UV_PROJECT_ENVIRONMENT": "envs/a"}, "proj/envs/a", "UV_PROJECT_ENVIRONMENT"),
        ("uv", "pyproject.toml", {"UV_PROJECT_ENVIRONMENT": "{t}/abs"}, "abs", "UV_PROJECT_ENVIRONMENT"),
        ("pnpm", "pnpm-workspace.yaml", {}, "proj/node_modules", "default"),
        ("bun", "package.json", {}, "proj/node_modules", "default"),
    ],
)
def test_target_from_a_subdirectory(
    tool: str, marker: str, extra: dict[str, str], target_rel: str, origin: str, tmp_path: Path, project: Path
) -> None:
    (project / marker).write_text("{}\n")
    environ = no_tools(tmp_path, **{k: v.format(t=tmp_path) for k, v in extra.items()})
    _, target, _ = plan_for(tool, environ, project / "src" / "pkg")
    assert target == Located(str(tmp_path / target_rel), origin)


# -- the tool's own command ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "argv"), [("uv", "uv cache dir"), ("pnpm", "pnpm store path"), ("bun", "bun pm cache")]
)
def test_the_tools_answer_wins_over_the_variables(tool: str, argv: str, tmp_path: Path, project: Path) -> None:
    name = argv.split(maxsplit=1)[0]
    fake_tool(tmp_path / "bin", name, f'[ "$*" = "{argv.partition(" ")[2]}" ] || exit 9\necho "$(pwd)/from-tool"')
    environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path), "UV_CACHE_DIR": "/no", "PNPM_HOME": "/no"}
    source, _, notes = plan_for(tool, environ, project / "src")
    assert source == Located(str(project / "src" / "from-tool"), argv)  # it ran in the working directory
    assert notes == ()


def test_a_relative_answer_is_relative_to_the_working_directory(tmp_path: Path, project: Path) -> None:
    fake_tool(tmp_path / "bin", "uv", "echo warning: something >&2; echo; echo rel/cache")
    source, _, _ = plan_for("uv", {"PATH": str(tmp_path / "bin")}, project)
    assert source.path == str(project / "rel" / "cache")


@pytest.mark.parametrize(
    ("script", "note"),
    [
        ("echo boom >&2; exit 3", "`uv cache dir` failed with exit status 3: boom"),
        ("exit 0", "`uv cache dir` printed no directory"),
        ("exec sleep 30", "`uv cache dir` did not answer within 0.5 s"),
        ("sleep 30 & wait", "`uv cache dir` did not answer within 0.5 s"),  # a child holding the pipes
    ],
)
def test_a_tool_that_fails_or_hangs_falls_back_to_the_rule_with_a_note(
    script: str, note: str, tmp_path: Path, project: Path
) -> None:
    fake_tool(tmp_path / "bin", "uv", script)
    environ = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "UV_CACHE_DIR": str(tmp_path / "c")}
    source, _, notes = plan_for("uv", environ, project, timeout=0.5)
    assert source == Located(str(tmp_path / "c"), "UV_CACHE_DIR")
    assert notes == (f"{note}; using UV_CACHE_DIR: {tmp_path / 'c'}",)


def test_a_tool_that_cannot_be_executed(tmp_path: Path) -> None:
    broken = fake_tool(tmp_path / "bin", "uv", "")
    broken.write_bytes(b"\x7fELF garbage")  # exec format error
    answer, note = ask_tool(("uv", "cache", "dir"), cwd=str(tmp_path), environ={"PATH": str(tmp_path / "bin")})
    assert answer is None
    assert note is not None
    assert note.startswith("`uv cache dir` could not run: ")


def test_paths_given_are_used_as_they_are(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "uv", "exit 7")  # never asked
    plan = discover(get_preset("uv", "linux"), "/s", "/t", environ={"PATH": str(tmp_path / "bin")}, cwd="/")
    assert (plan.source, plan.target, plan.notes) == (Located("/s", "argument"), Located("/t", "argument"), ())


# -- reading the request -----------------------------------------------------------------------


def request(tool: str, environ: dict[str, str], *, mode: str | None = None, env: str | None = None, fmt: str = "mode"):  # type: ignore[no-untyped-def]
    return for_request(
        tool,
        "/s",
        "/t",
        mode=mode,
        env=env,
        env_given=env is not None,
        output_format=fmt,
        environ=environ,
        platform="linux",
    )


def test_the_tools_variable_is_read() -> None:
    assert request("uv", {"UV_LINK_MODE": "reflink"}).explicit is LinkMode.CLONE
    assert request("uv", {"LINKPROBE_MODE": "copy"}).explicit is None  # not uv's variable
    assert request("pnpm", {"pnpm_config_package_import_method": "copy"}).explicit is LinkMode.COPY
    assert request("pnpm", {"npm_config_package_import_method": "copy"}).explicit is None  # pnpm >= 11 ignores it
    done = request("pnpm", {"pnpm_config_package_import_method": "clone-or-copy"})
    assert (done.explicit, done.order) == (None, (LinkMode.CLONE, LinkMode.COPY))
    bun = request("bun", {"LINKPROBE_MODE": "copy"})
    assert (bun.variable, bun.explicit, bun.order) == (None, None, (LinkMode.HARDLINK, LinkMode.COPY))
    assert request("uv", {}).order == AUTO_ORDER


def test_mode_wins_and_env_overrides_the_variable() -> None:
    assert request("uv", {"UV_LINK_MODE": "copy"}, mode="hardlink").explicit is LinkMode.HARDLINK
    moved = request("uv", {"UV_LINK_MODE": "copy", "MINE": "symlink"}, env="MINE")
    assert (moved.variable, moved.explicit) == ("MINE", LinkMode.SYMLINK)
    assert request("uv", {"UV_LINK_MODE": "copy"}, env="").variable is None  # --env '': read no variable
    assert request("bun", {}, mode="copy").word(LinkMode.COPY) == "copyfile"  # linkprobe's word is fine for --mode
    assert request("bun", {}, mode="copyfile").explicit is LinkMode.COPY
    bun_env = request("bun", {"BUN_BACKEND": "copyfile"}, env="BUN_BACKEND", fmt="env")
    assert (bun_env.variable, bun_env.explicit) == ("BUN_BACKEND", LinkMode.COPY)


def test_bad_requests() -> None:
    with pytest.raises(UnknownToolError):
        request("yarn", {})
    with pytest.raises(
        InvalidModeError,
        match=r"invalid environment variable UV_LINK_MODE 'auto': expected one of clone, copy, hardlink, symlink",
    ):
        request("uv", {"UV_LINK_MODE": "auto"})
    with pytest.raises(InvalidModeError, match=r"invalid --mode for bun here 'clone'"):
        request("bun", {}, mode="clone")  # no clonefile on Linux
    with pytest.raises(InvalidModeError, match=r"invalid --mode for pnpm here 'symlink'"):
        request("pnpm", {}, mode="symlink")
    with pytest.raises(NoVariableError, match=r"bun reads its link mode from no environment variable"):
        request("bun", {}, fmt="env")
    with pytest.raises(MissingPathError):
        for_request("uv", "/s", None, mode=None, env=None, env_given=False, output_format="mode", environ={})


# -- the real tools ----------------------------------------------------------------------------


def test_real_uv_cache_dir_reads_the_projects_settings(tmp_path: Path, project: Path) -> None:
    try:
        uv = uv_bin()
    except RuntimeError as exc:
        unavailable(str(exc))
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "p"\nversion = "0"\n\n[tool.uv]\ncache-dir = "{tmp_path}/set"\n'
    )
    environ = client_env({"PATH": f"{uv.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    source, target, notes = plan_for("uv", environ, project / "src" / "pkg")
    assert source == Located(str(tmp_path / "set"), "uv cache dir")  # no variable or default says this
    assert target == Located(str(project / ".venv"), "default")
    assert notes == ()
    environ["UV_CACHE_DIR"] = str(tmp_path / "var")  # uv: the variable wins over the file
    assert plan_for("uv", environ, project)[0] == Located(str(tmp_path / "var"), "uv cache dir")


def test_real_pnpm_store_path_follows_home(tmp_path: Path, project: Path) -> None:
    kit = os.environ.get("LINKPROBE_PNPM")
    if not kit:
        unavailable("LINKPROBE_PNPM is not set (python tests/_clients.py WHEELHOUSE PNPM_KIT)")
    pnpm = pnpm_bin(check_pnpm_kit(Path(kit)))
    environ = client_env({"PATH": f"{pnpm.parent}{os.pathsep}{os.environ['PATH']}"})
    for home in ("h1", "h2"):
        environ["HOME"] = str(tmp_path / home)
        environ.pop("XDG_DATA_HOME", None)
        environ.pop("PNPM_HOME", None)
        source, _, notes = plan_for("pnpm", environ, project)
        assert notes == ()
        assert source.origin == "pnpm store path"
        # pnpm's own layout directory below the documented default
        assert Path(source.path).parent == tmp_path / home / ".local" / "share" / "pnpm" / "store"
        assert Path(source.path).name.startswith("v")


def test_real_bun_pm_cache_follows_each_variable(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, project: Path
) -> None:
    bun = bun_bin(kit_from_env_or(tmp_path_factory.mktemp("bun-kit")))
    base = client_env({"PATH": f"{bun.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    for key in ("XDG_CACHE_HOME", "BUN_INSTALL", "BUN_INSTALL_CACHE_DIR"):
        base.pop(key, None)
    cases = [
        ({}, "home/.bun/install/cache"),
        ({"XDG_CACHE_HOME": "xc"}, "xc/.bun/install/cache"),
        ({"BUN_INSTALL": "bi"}, "bi/install/cache"),
        ({"BUN_INSTALL_CACHE_DIR": "bc"}, "bc"),
    ]
    for extra, expected in cases:
        environ = {**base, **{k: str(tmp_path / v) for k, v in extra.items()}}
        source, _, _ = plan_for("bun", environ, project)
        assert source == Located(str(tmp_path / expected), "bun pm cache")
        # the documented rule (no bun on PATH) agrees with bun itself
        without = {**environ, "PATH": "/usr/bin:/bin"}
        assert plan_for("bun", without, project)[0].path == source.path


def test_real_uv_agrees_with_the_documented_rule_under_each_variable(tmp_path: Path, project: Path) -> None:
    try:
        uv = uv_bin()
    except RuntimeError as exc:
        unavailable(str(exc))
    base = client_env({"PATH": f"{uv.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    base.pop("XDG_CACHE_HOME", None)
    cases = [{}, {"XDG_CACHE_HOME": "xdg"}, {"XDG_CACHE_HOME": "xdg", "UV_CACHE_DIR": "uvc"}]
    for extra in cases:
        environ = {**base, **{k: str(tmp_path / v) for k, v in extra.items()}}
        asked, _, notes = plan_for("uv", environ, project)
        documented, _, _ = plan_for("uv", {**environ, "PATH": "/usr/bin:/bin"}, project)
        assert (asked.origin, notes) == ("uv cache dir", ())
        assert asked.path == documented.path, (extra, documented.origin)


def test_real_pnpm_agrees_with_the_documented_rule_under_each_variable(tmp_path: Path, project: Path) -> None:
    kit = os.environ.get("LINKPROBE_PNPM")
    if not kit:
        unavailable("LINKPROBE_PNPM is not set (python tests/_clients.py WHEELHOUSE PNPM_KIT)")
    pnpm = pnpm_bin(check_pnpm_kit(Path(kit)))
    base = client_env({"PATH": f"{pnpm.parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home")})
    for name in ("XDG_DATA_HOME", "PNPM_HOME"):
        base.pop(name, None)
    cases = [{}, {"XDG_DATA_HOME": "xd"}, {"XDG_DATA_HOME": "xd", "PNPM_HOME": "ph"}, {"pnpm_config_store_dir": "sd"}]
    for extra in cases:
        environ = {**base, **{k: str(tmp_path / v) for k, v in extra.items()}}
        asked, _, notes = plan_for("pnpm", environ, project)
        documented, _, _ = plan_for("pnpm", {**environ, "PATH": "/usr/bin:/bin"}, project)
        assert (asked.origin, notes) == ("pnpm store path", ())
        # pnpm's answer is the documented store plus its layout directory (v11)
        assert Path(asked.path).parent == Path(documented.path), (extra, documented.origin)
