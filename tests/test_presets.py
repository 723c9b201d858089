"""The pure rules of linkprobe.presets: each tool's words and default paths, table-tested."""

from __future__ import annotations

import pytest

from linkprobe.errors import InvalidModeError
from linkprobe.modes import LinkMode
from linkprobe.presets import (
    TOOLS,
    Located,
    UnknownToolError,
    bun_cache,
    get_preset,
    home_dir,
    pnpm_store,
    uv_cache,
    uv_environment,
)

C, H, S, P = LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.SYMLINK, LinkMode.COPY


@pytest.mark.parametrize(
    ("tool", "platform", "words", "auto_order", "variable"),
    [
        ("uv", "linux", {C: "clone", P: "copy", H: "hardlink", S: "symlink"}, (C, H, P), "UV_LINK_MODE"),
        ("uv", "win32", {C: "clone", P: "copy", H: "hardlink", S: "symlink"}, (C, H, P), "UV_LINK_MODE"),
        ("pnpm", "linux", {H: "hardlink", P: "copy", C: "clone"}, (C, H, P), "pnpm_config_package_import_method"),
        ("bun", "linux", {H: "hardlink", S: "symlink", P: "copyfile"}, (H, P), None),
        ("bun", "win32", {H: "hardlink", S: "symlink", P: "copyfile"}, (H, P), None),
        ("bun", "darwin", {C: "clonefile", H: "hardlink", S: "symlink", P: "copyfile"}, (C, H, P), None),
    ],
)
def test_vocabulary(
    tool: str,
    platform: str,
    words: dict[LinkMode, str],
    auto_order: tuple[LinkMode, ...],
    variable: str | None,
) -> None:
    preset = get_preset(tool, platform)
    assert dict(preset.words) == words
    assert preset.auto_order == auto_order  # linkprobe's order, clone first, less what the tool lacks
    assert preset.variable == variable
    assert LinkMode.SYMLINK not in preset.auto_order


@pytest.mark.parametrize(
    ("tool", "value", "expected"),
    [
        ("uv", "clone", C),
        ("uv", " Reflink ", C),  # uv's alias
        ("uv", "HARDLINK", H),
        ("uv", "symlink", S),
        ("uv", "", None),  # empty is unset
        ("pnpm", "auto", None),
        ("pnpm", "clone-or-copy", (C, P)),
        ("pnpm", "clone", C),
        ("bun", "copyfile", P),
        ("bun", "hardlink", H),
    ],
)
def test_parse_accepts_the_tools_words(tool: str, value: str, expected: object) -> None:
    assert get_preset(tool, "linux").parse(value, source="x") == expected


@pytest.mark.parametrize(
    ("tool", "value"),
    [
        ("uv", "auto"),  # uv has no auto: it would reject this value itself
        ("uv", "clone-or-copy"),
        ("pnpm", "symlink"),
        ("pnpm", "reflink"),
        ("bun", "copy"),  # bun says copyfile
        ("bun", "clonefile"),  # macOS only
    ],
)
def test_parse_rejects_other_words_and_lists_the_tools(tool: str, value: str) -> None:
    preset = get_preset(tool, "linux")
    with pytest.raises(InvalidModeError) as caught:
        preset.parse(value, source="environment variable V")
    assert caught.value.valid == preset.valid_words
    assert f"invalid environment variable V {value!r}: expected one of " in str(caught.value)


def test_words_listed_in_messages() -> None:
    assert get_preset("pnpm", "linux").valid_words == ("auto", "hardlink", "copy", "clone", "clone-or-copy")
    assert get_preset("bun", "linux").valid_words == ("hardlink", "symlink", "copyfile")


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(UnknownToolError, match=r"unknown tool 'npm' for --for: expected one of uv, pnpm, bun"):
        get_preset("npm", "linux")
    assert isinstance(UnknownToolError("x"), ValueError)  # the CLI maps it to exit 2
    assert TOOLS == ("uv", "pnpm", "bun")
    assert get_preset(" UV ", "linux").name == "uv"


HOME = "/home/u"


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", Located("/home/u/.cache/uv", "default")),
        ({}, "darwin", Located("/home/u/.cache/uv", "default")),
        ({"XDG_CACHE_HOME": "/xdg"}, "linux", Located("/xdg/uv", "XDG_CACHE_HOME")),
        ({"XDG_CACHE_HOME": "relative"}, "linux", Located("/home/u/.cache/uv", "default")),  # measured: uv ignores it
        ({"XDG_CACHE_HOME": ""}, "linux", Located("/home/u/.cache/uv", "default")),
        ({"UV_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/xdg"}, "linux", Located("/c", "UV_CACHE_DIR")),
        ({"UV_CACHE_DIR": ""}, "linux", Located("/home/u/.cache/uv", "default")),
        (
            {"LOCALAPPDATA": r"C:\Users\u\AppData\Local"},
            "win32",
            Located(r"C:\Users\u\AppData\Local\uv\cache", "LOCALAPPDATA"),
        ),
        ({}, "win32", Located(r"C:\Users\u\AppData\Local\uv\cache", "default")),
    ],
)
def test_uv_cache(environ: dict[str, str], platform: str, expected: Located) -> None:
    home = r"C:\Users\u" if platform == "win32" else HOME
    assert uv_cache(environ, home, platform) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Located("/p/.venv", "default")),
        ({"UV_PROJECT_ENVIRONMENT": "/elsewhere/env"}, Located("/elsewhere/env", "UV_PROJECT_ENVIRONMENT")),
        ({"UV_PROJECT_ENVIRONMENT": "build/env"}, Located("/p/build/env", "UV_PROJECT_ENVIRONMENT")),
        ({"UV_PROJECT_ENVIRONMENT": ""}, Located("/p/.venv", "default")),
    ],
)
def test_uv_environment(environ: dict[str, str], expected: Located) -> None:
    assert uv_environment(environ, "/p", "linux") == expected


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", Located("/home/u/.local/share/pnpm/store", "default")),
        ({}, "darwin", Located("/home/u/Library/pnpm/store", "default")),
        ({"XDG_DATA_HOME": "/xd"}, "linux", Located("/xd/pnpm/store", "XDG_DATA_HOME")),
        ({"PNPM_HOME": "/ph", "XDG_DATA_HOME": "/xd"}, "linux", Located("/ph/store", "PNPM_HOME")),
        ({"pnpm_config_store_dir": "/sd", "PNPM_HOME": "/ph"}, "linux", Located("/sd", "pnpm_config_store_dir")),
        ({"PNPM_CONFIG_STORE_DIR": "/SD"}, "linux", Located("/SD", "PNPM_CONFIG_STORE_DIR")),
        ({}, "win32", Located(r"C:\Users\u\AppData\Local\pnpm\store", "default")),
    ],
)
def test_pnpm_store(environ: dict[str, str], platform: str, expected: Located) -> None:
    home = r"C:\Users\u" if platform == "win32" else HOME
    assert pnpm_store(environ, home, platform) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Located("/home/u/.bun/install/cache", "default")),
        ({"XDG_CACHE_HOME": "/xc"}, Located("/xc/.bun/install/cache", "XDG_CACHE_HOME")),
        ({"BUN_INSTALL": "/bi", "XDG_CACHE_HOME": "/xc"}, Located("/bi/install/cache", "BUN_INSTALL")),
        ({"BUN_INSTALL_CACHE_DIR": "/bc", "BUN_INSTALL": "/bi"}, Located("/bc", "BUN_INSTALL_CACHE_DIR")),
    ],
)
def test_bun_cache(environ: dict[str, str], expected: Located) -> None:
    assert bun_cache(environ, HOME, "linux") == expected


def test_home_dir() -> None:
    assert home_dir({"HOME": "/h"}, "linux", "/pw") == "/h"
    assert home_dir({"HOME": ""}, "linux", "/pw") == "/pw"
    assert home_dir({"HOME": "/h", "USERPROFILE": r"C:\u"}, "win32", "x") == r"C:\u"
