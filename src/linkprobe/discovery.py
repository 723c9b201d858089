"""Find an installer's cache and install target on this machine (``linkprobe --for TOOL``).

The rules are in :mod:`linkprobe.presets`; this module does the I/O they need: it asks the
installer itself (``uv cache dir``, ``pnpm store path``, ``bun pm cache``) when it is on PATH,
with a short timeout, and walks up from the working directory to the project root. An
installer that hangs, fails or prints nothing usable costs a note, never the answer: the
documented rule is used instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from linkprobe.errors import InvalidModeError, LinkprobeError
from linkprobe.modes import LinkMode, parse_mode, parse_order
from linkprobe.presets import (
    Located,
    NoVariableError,
    Preset,
    bun_cache,
    get_preset,
    home_dir,
    pnpm_store,
    uv_cache,
    uv_environment,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "TOOL_TIMEOUT",
    "ForRequest",
    "MissingPathError",
    "Plan",
    "ask_tool",
    "discover",
    "for_request",
    "project_root",
]

#: Seconds to wait for ``uv cache dir`` and the like. They answer in well under a second;
#: Node.js starting pnpm on a loaded CI machine takes the longest.
TOOL_TIMEOUT: Final[float] = 10.0


class MissingPathError(LinkprobeError, ValueError):
    """``--for`` with SOURCE but no TARGET: both come from the tool's rules, or both are given."""

    def __init__(self) -> None:
        super().__init__("--for takes no paths (the tool's own cache and target) or both SOURCE and TARGET")


@dataclass(frozen=True)
class Plan:
    """Where a tool's files come from and go to, and the rule behind each."""

    preset: Preset
    source: Located
    target: Located
    #: Why a rule was passed over (the tool's command timed out, say): one line each.
    notes: tuple[str, ...] = ()


def _run(argv: list[str], *, cwd: str, environ: Mapping[str, str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv``; (exit status, stdout, stderr). A timeout kills its whole process group,
    so a wrapper script's children (node under a shell shim) cannot keep the pipes open."""
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="surrogateescape",
        start_new_session=sys.platform != "win32",
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            if sys.platform == "win32":
                process.kill()
            else:
                import signal

                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return process.returncode, out, err


def ask_tool(
    argv: tuple[str, ...], *, cwd: str, environ: Mapping[str, str], timeout: float = TOOL_TIMEOUT
) -> tuple[str | None, str | None]:
    """(the directory the tool printed, None) or (None, why not) or (None, None) if it is not on PATH."""
    import shutil

    executable = shutil.which(argv[0], path=environ.get("PATH", os.defpath))
    if executable is None:
        return None, None
    shown = " ".join(argv)
    try:
        status, out, err = _run([executable, *argv[1:]], cwd=cwd, environ=environ, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"`{shown}` did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"`{shown}` could not run: {exc.strerror or exc}"
    if status != 0:
        last = (err.strip().splitlines() or [""])[-1]
        return None, f"`{shown}` failed with exit status {status}" + (f": {last}" if last else "")
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        return None, f"`{shown}` printed no directory"
    # The answer is the last line: a tool may print a warning before it.
    return os.path.join(cwd, lines[-1]), None  # a relative answer is relative to cwd


def _exists(path: str) -> bool:
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):
        return False


def _ancestors(cwd: str) -> list[str]:
    here = os.path.abspath(cwd)
    found = [here]
    while (parent := os.path.dirname(here)) != here:
        found.append(parent)
        here = parent
    return found


def _has_workspaces(package_json: str) -> bool:
    import json

    try:
        with open(package_json, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and "workspaces" in document


def project_root(tool: str, cwd: str) -> str:
    """The directory the tool installs for, found upward from ``cwd`` (else ``cwd``).

    uv: the nearest directory holding ``pyproject.toml``. pnpm: the nearest holding
    ``pnpm-workspace.yaml``, else the nearest holding ``package.json``. bun: the nearest
    holding ``package.json``, or an outer one whose ``package.json`` has ``workspaces``.
    """
    ancestors = _ancestors(cwd)
    if tool == "uv":
        return next((d for d in ancestors if _exists(os.path.join(d, "pyproject.toml"))), ancestors[0])
    if tool == "pnpm":
        for marker in ("pnpm-workspace.yaml", "package.json"):
            found = next((d for d in ancestors if _exists(os.path.join(d, marker))), None)
            if found is not None:
                return found
        return ancestors[0]
    packages = [d for d in ancestors if _exists(os.path.join(d, "package.json"))]
    workspace = next((d for d in packages if _has_workspaces(os.path.join(d, "package.json"))), None)
    return workspace or (packages[0] if packages else ancestors[0])


def _home(environ: Mapping[str, str], platform: str) -> str:
    if sys.platform == "win32":
        fallback = os.path.expanduser("~")
    else:
        import pwd

        try:
            fallback = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:  # a uid with no passwd entry (containers)
            fallback = "/"
    return home_dir(environ, platform, fallback)


def _documented_source(preset: Preset, environ: Mapping[str, str], home: str, platform: str) -> Located:
    if preset.name == "uv":
        return uv_cache(environ, home, platform)
    if preset.name == "pnpm":
        return pnpm_store(environ, home, platform)
    return bun_cache(environ, home, platform)


def discover(
    preset: Preset,
    source: str | None = None,
    target: str | None = None,
    *,
    environ: Mapping[str, str],
    cwd: str,
    platform: str = sys.platform,
    timeout: float = TOOL_TIMEOUT,
) -> Plan:
    """The tool's cache and target; a path given as an argument is used as it is."""
    notes = []
    if source is not None:
        found_source = Located(source, "argument")
    else:
        answer, note = ask_tool(preset.cache_command, cwd=cwd, environ=environ, timeout=timeout)
        documented = _documented_source(preset, environ, _home(environ, platform), platform)
        if answer is not None:
            found_source = Located(answer, " ".join(preset.cache_command))
        else:
            found_source = documented
            if note is not None:
                notes.append(f"{note}; using {documented.origin}: {documented.path}")
    if target is not None:
        found_target = Located(target, "argument")
    else:
        root = project_root(preset.name, cwd)
        if preset.name == "uv":
            found_target = uv_environment(environ, root, platform)
        else:
            found_target = Located(os.path.join(root, "node_modules"), "default")
    return Plan(preset, found_source, found_target, tuple(notes))


@dataclass(frozen=True)
class ForRequest:
    """Everything the probe command needs for ``--for``: paths, variable, what was asked."""

    plan: Plan
    #: The variable read and written (``--env`` overrides the tool's); None: no variable.
    variable: str | None
    #: One mode (explicit), None (auto).
    explicit: LinkMode | None
    #: The order auto (or an order word such as clone-or-copy) chooses in.
    order: tuple[LinkMode, ...]

    def word(self, mode: LinkMode) -> str:
        return self.plan.preset.word(mode)


def _from_mode_option(preset: Preset, value: str) -> LinkMode | tuple[LinkMode, ...] | None:
    """``--mode`` takes the tool's words and linkprobe's own (``--for bun --mode copy``)."""
    try:
        return preset.parse(value, source="--mode")
    except InvalidModeError:
        chosen = parse_order(value) or parse_mode(value, source="--mode")
    unsupported = [m for m in ((chosen,) if isinstance(chosen, LinkMode) else chosen or ()) if m not in preset.words]
    if unsupported:
        raise InvalidModeError(value, source=f"--mode for {preset.name} here", valid=preset.valid_words)
    return chosen


def for_request(
    tool: str,
    source: str | None,
    target: str | None,
    *,
    mode: str | None,
    env: str | None,
    env_given: bool,
    output_format: str,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    platform: str = sys.platform,
    timeout: float = TOOL_TIMEOUT,
) -> ForRequest:
    """Read ``--for TOOL`` with the other options of the probe command.

    ``env`` is ``--env`` (``env_given`` says whether the user gave it): it replaces the tool's
    variable, both the one read and the one ``--format env`` writes.

    :raises UnknownToolError: an unknown tool (the message lists the known ones).
    :raises MissingPathError: only one of SOURCE and TARGET.
    :raises NoVariableError: ``--format env`` for a tool without a variable (bun).
    :raises InvalidModeError: a word the tool does not accept.
    """
    preset = get_preset(tool, platform)
    if (source is None) != (target is None):
        raise MissingPathError
    variable = (env or None) if env_given else preset.variable
    if output_format == "env" and variable is None and not env_given:
        raise NoVariableError(preset.name, preset.option)
    environ = os.environ if environ is None else environ
    chosen: LinkMode | tuple[LinkMode, ...] | None
    if mode is not None:
        chosen = _from_mode_option(preset, mode)
    elif variable is not None and variable in environ:
        chosen = preset.parse(environ[variable], source=f"environment variable {variable}")
    else:
        chosen = None
    plan = discover(preset, source, target, environ=environ, cwd=cwd or os.getcwd(), platform=platform, timeout=timeout)
    if isinstance(chosen, tuple):
        return ForRequest(plan, variable, None, chosen)
    return ForRequest(plan, variable, chosen, preset.auto_order)
