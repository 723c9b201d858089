"""What each installer calls its link modes, where it keeps its cache and where it installs.

Pure rules, no I/O: every function takes the environment as a mapping and the home and
platform as arguments, so each rule is table-tested. Running the installer's own command
(``uv cache dir``) and walking up to the project root happen in :mod:`linkprobe.discovery`.

Sources of the rules (checked against the real tools where the test machine has them):

- uv: ``crates/uv-cache`` (``--cache-dir`` / ``UV_CACHE_DIR``, else the platform cache
  directory: ``$XDG_CACHE_HOME/uv``, ``~/.cache/uv``, ``%LOCALAPPDATA%\\uv\\cache``),
  ``UV_PROJECT_ENVIRONMENT`` (relative to the project root), ``UV_LINK_MODE`` with clone
  (alias reflink), copy, hardlink, symlink; uv has no ``auto`` word.
- pnpm 11 and 12: the ``storeDir`` setting (``pnpm_config_store_dir``), else
  ``$PNPM_HOME/store``, ``$XDG_DATA_HOME/pnpm/store``, ``~/.local/share/pnpm/store`` (Linux),
  ``~/Library/pnpm/store`` (macOS), ``~\\AppData\\Local\\pnpm\\store`` (Windows); pnpm adds a
  store-layout directory (``v11``) that only ``pnpm store path`` knows. ``packageImportMethod``
  = auto, hardlink, copy, clone, clone-or-copy, read from ``pnpm_config_package_import_method``
  (pnpm 11 and later ignore ``npm_config_*``).
- bun 1.4: ``BUN_INSTALL_CACHE_DIR``, else ``$BUN_INSTALL/install/cache``, else
  ``$XDG_CACHE_HOME/.bun/install/cache``, else ``~/.bun/install/cache`` (what ``bun pm cache``
  prints under each). ``bun install --backend`` = hardlink, symlink, copyfile on Linux and
  Windows, plus clonefile on macOS; no environment variable or bunfig key selects it.
"""

from __future__ import annotations

import ntpath
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from linkprobe.errors import InvalidModeError, LinkprobeError
from linkprobe.modes import AUTO_ORDER, LinkMode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "TOOLS",
    "Located",
    "NoVariableError",
    "Preset",
    "UnknownToolError",
    "bun_cache",
    "get_preset",
    "home_dir",
    "pnpm_store",
    "uv_cache",
    "uv_environment",
]


class UnknownToolError(LinkprobeError, ValueError):
    """``--for`` named a tool linkprobe has no rules for."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown tool {name!r} for --for: expected one of {', '.join(TOOLS)}")


class NoVariableError(LinkprobeError, ValueError):
    """``--format env`` for a tool that reads its link mode from no environment variable."""

    def __init__(self, tool: str, option: str) -> None:
        self.tool = tool
        super().__init__(
            f"{tool} reads its link mode from no environment variable, so --format env has nothing to set; "
            f'use --format mode (e.g. {tool} install {option} "$(linkprobe --for {tool})"), '
            "or name a variable with --env"
        )


@dataclass(frozen=True)
class Located:
    """A path a preset chose, and the rule it came from (``"UV_CACHE_DIR"``, ``"default"``...)."""

    path: str
    origin: str


@dataclass(frozen=True)
class Preset:
    """One installer's vocabulary and which of linkprobe's modes it can be told to use."""

    name: str
    #: The environment variable the tool reads its mode from; None when there is none (bun).
    variable: str | None
    #: The tool's word for each mode it supports, in the tool's documented order.
    words: Mapping[LinkMode, str]
    #: Words naming an order of modes (pnpm's clone-or-copy).
    order_words: Mapping[str, tuple[LinkMode, ...]]
    #: Words meaning "the tool decides" (pnpm's auto).
    auto_words: frozenset[str]
    #: Extra spellings the tool accepts for a mode (uv's reflink).
    aliases: Mapping[str, LinkMode]
    #: How the mode is given on the tool's command line, for messages.
    option: str
    #: The tool's command that prints its cache directory, if it has one.
    cache_command: tuple[str, ...]

    @property
    def modes(self) -> tuple[LinkMode, ...]:
        return tuple(self.words)

    @property
    def auto_order(self) -> tuple[LinkMode, ...]:
        """linkprobe's auto order (clone, hardlink, copy), less what the tool cannot do."""
        return tuple(mode for mode in AUTO_ORDER if mode in self.words)

    @property
    def valid_words(self) -> tuple[str, ...]:
        return (*sorted(self.auto_words), *self.words.values(), *self.order_words)

    def word(self, mode: LinkMode) -> str:
        """The tool's word for ``mode``; KeyError if the tool cannot be told to use it."""
        return self.words[mode]

    def parse(self, value: str, *, source: str) -> LinkMode | tuple[LinkMode, ...] | None:
        """A mode, an order, or None (auto) from one of the tool's words.

        Case and surrounding white space are ignored, as linkprobe's own words are. A value
        outside the tool's vocabulary is an :class:`InvalidModeError` listing the tool's words:
        ``UV_LINK_MODE=auto`` is not something uv accepts, so it is not read as auto either.
        """
        word = value.strip().lower()
        if not word or word in self.auto_words:  # every tool here treats an empty variable as unset
            return None
        if word in self.order_words:
            return self.order_words[word]
        for mode, tool_word in self.words.items():
            if word == tool_word or self.aliases.get(word) is mode:
                return mode
        raise InvalidModeError(value, source=source, valid=self.valid_words)


def _uv() -> Preset:
    return Preset(
        name="uv",
        variable="UV_LINK_MODE",
        words={
            LinkMode.CLONE: "clone",
            LinkMode.COPY: "copy",
            LinkMode.HARDLINK: "hardlink",
            LinkMode.SYMLINK: "symlink",
        },
        order_words={},
        auto_words=frozenset(),
        aliases={"reflink": LinkMode.CLONE},
        option="--link-mode",
        cache_command=("uv", "cache", "dir"),
    )


def _pnpm() -> Preset:
    return Preset(
        name="pnpm",
        variable="pnpm_config_package_import_method",
        words={LinkMode.HARDLINK: "hardlink", LinkMode.COPY: "copy", LinkMode.CLONE: "clone"},
        order_words={"clone-or-copy": (LinkMode.CLONE, LinkMode.COPY)},
        auto_words=frozenset({"auto"}),
        aliases={},
        option="--package-import-method",
        cache_command=("pnpm", "store", "path"),
    )


def _bun(platform: str) -> Preset:
    # bun's --backend on Linux and Windows: hardlink (default), symlink, copyfile
    # (`bun install --help`, bun 1.4.4); clonefile exists on macOS only.
    words = {LinkMode.HARDLINK: "hardlink", LinkMode.SYMLINK: "symlink", LinkMode.COPY: "copyfile"}
    if platform == "darwin":
        words = {LinkMode.CLONE: "clonefile", **words}
    return Preset(
        name="bun",
        variable=None,
        words=words,
        order_words={},
        auto_words=frozenset(),
        aliases={},
        option="--backend",
        cache_command=("bun", "pm", "cache"),
    )


TOOLS: Final[tuple[str, ...]] = ("uv", "pnpm", "bun")


def get_preset(name: str, platform: str) -> Preset:
    """The rules for ``name`` (``uv``, ``pnpm``, ``bun``) on ``platform`` (``sys.platform``).

    :raises UnknownToolError: for any other name; the message lists the known ones.
    """
    key = name.strip().lower()
    if key == "uv":
        return _uv()
    if key == "pnpm":
        return _pnpm()
    if key == "bun":
        return _bun(platform)
    raise UnknownToolError(name)


# -- default paths: pure functions of the environment ------------------------------------------


def _join(platform: str, *parts: str) -> str:
    return ntpath.join(*parts) if platform == "win32" else posixpath.join(*parts)


def _absolute(value: str, platform: str) -> bool:
    return ntpath.isabs(value) if platform == "win32" else posixpath.isabs(value)


def home_dir(environ: Mapping[str, str], platform: str, fallback: str) -> str:
    """HOME (USERPROFILE on Windows) as the tools read it; ``fallback`` (the password database) if unset."""
    name = "USERPROFILE" if platform == "win32" else "HOME"
    return environ.get(name) or fallback


def _set(environ: Mapping[str, str], name: str) -> str | None:
    # Every tool here treats an empty variable as unset.
    return environ.get(name) or None


def uv_cache(environ: Mapping[str, str], home: str, platform: str) -> Located:
    """Where uv keeps its cache when ``uv cache dir`` cannot be asked."""
    given = _set(environ, "UV_CACHE_DIR")
    if given:
        return Located(given, "UV_CACHE_DIR")
    if platform == "win32":
        local = _set(environ, "LOCALAPPDATA")
        if local:
            return Located(_join(platform, local, "uv", "cache"), "LOCALAPPDATA")
        return Located(_join(platform, home, "AppData", "Local", "uv", "cache"), "default")
    # uv uses the XDG layout on macOS too (etcetera's choose_base_strategy), not ~/Library/Caches.
    xdg = _set(environ, "XDG_CACHE_HOME")
    if xdg and _absolute(xdg, platform):  # the XDG spec: a relative value is ignored
        return Located(_join(platform, xdg, "uv"), "XDG_CACHE_HOME")
    return Located(_join(platform, home, ".cache", "uv"), "default")


def uv_environment(environ: Mapping[str, str], project_root: str, platform: str) -> Located:
    """The virtual environment ``uv sync`` installs into: ``UV_PROJECT_ENVIRONMENT``, else ``.venv``.

    uv resolves a relative ``UV_PROJECT_ENVIRONMENT`` against the project (workspace) root.
    """
    given = _set(environ, "UV_PROJECT_ENVIRONMENT")
    if given:
        path = given if _absolute(given, platform) else _join(platform, project_root, given)
        return Located(path, "UV_PROJECT_ENVIRONMENT")
    return Located(_join(platform, project_root, ".venv"), "default")


def pnpm_store(environ: Mapping[str, str], home: str, platform: str) -> Located:
    """pnpm's documented store directory (``storeDir``) when ``pnpm store path`` cannot be asked.

    The real store is a layout-version directory inside it (``v11``), which only pnpm knows;
    both are on the same mount, which is what a probe needs.
    """
    for name in ("pnpm_config_store_dir", "PNPM_CONFIG_STORE_DIR"):
        given = _set(environ, name)
        if given:
            return Located(given, name)
    pnpm_home = _set(environ, "PNPM_HOME")
    if pnpm_home:
        return Located(_join(platform, pnpm_home, "store"), "PNPM_HOME")
    xdg = _set(environ, "XDG_DATA_HOME")
    if xdg:
        return Located(_join(platform, xdg, "pnpm", "store"), "XDG_DATA_HOME")
    if platform == "win32":
        local = _set(environ, "LOCALAPPDATA")
        if local:
            return Located(_join(platform, local, "pnpm", "store"), "LOCALAPPDATA")
        return Located(_join(platform, home, "AppData", "Local", "pnpm", "store"), "default")
    if platform == "darwin":
        return Located(_join(platform, home, "Library", "pnpm", "store"), "default")
    return Located(_join(platform, home, ".local", "share", "pnpm", "store"), "default")


def bun_cache(environ: Mapping[str, str], home: str, platform: str) -> Located:
    """bun's package cache when ``bun pm cache`` cannot be asked."""
    given = _set(environ, "BUN_INSTALL_CACHE_DIR")
    if given:
        return Located(given, "BUN_INSTALL_CACHE_DIR")
    install = _set(environ, "BUN_INSTALL")
    if install:
        return Located(_join(platform, install, "install", "cache"), "BUN_INSTALL")
    xdg = _set(environ, "XDG_CACHE_HOME")
    if xdg:
        return Located(_join(platform, xdg, ".bun", "install", "cache"), "XDG_CACHE_HOME")
    return Located(_join(platform, home, ".bun", "install", "cache"), "default")
