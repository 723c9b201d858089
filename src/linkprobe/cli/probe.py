"""Find the best way to put files from SOURCE into TARGET:
clone, hardlink, symlink or copy.

``linkprobe probe SOURCE TARGET``, or plain ``linkprobe SOURCE TARGET``: prints the mode to
use, or why none works. Exit codes as :func:`linkprobe.cli.main.exit_status`.
"""

from __future__ import annotations

import io
import os
import sys

from linkprobe._facts import missing_note
from linkprobe._words import AUTO_ORDER_WORDS, VALID_WORDS, choice_words, requested_word, required
from linkprobe.cli._common import DEFAULT_ENV, EXIT_OK, UsageError, one_line, signals_as_exceptions, write
from linkprobe.errors import NoUsableModeError, UnsupportedModeError
from linkprobe.mounts import Mount, mount_table
from linkprobe.probe import find

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from typing import Final, TextIO

    from linkprobe._facts import Findings, SideFacts
    from linkprobe.discovery import ForRequest
    from linkprobe.result import Probe

__all__ = ["SCHEMA_VERSION", "ParsedArguments", "configure", "fast_parse", "run"]

#: The version of the ``--format json`` document (docs/cli.md). Adding a key keeps it;
#: removing or changing the meaning of one raises it.
SCHEMA_VERSION: Final[int] = 1
_FORMATS: Final[tuple[str, ...]] = ("mode", "text", "json", "env")


def _positive_seconds(text: str) -> float | None:
    """``text`` as a number of seconds, or None when it is not a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None  # NaN fails this too


def _seconds(text: str) -> float:
    value = _positive_seconds(text)
    if value is None:
        import argparse  # already imported: argparse is what calls this

        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """The probe command's arguments."""
    parser.add_argument("source", metavar="SOURCE", nargs="?", help="directory (or file) files come from, e.g. a cache")
    parser.add_argument("target", metavar="TARGET", nargs="?", help="directory files go to; may not exist yet")
    parser.add_argument(
        "--for",
        dest="tool",
        metavar="TOOL",
        help="uv, pnpm or bun: SOURCE and TARGET default to that tool's cache and install directory, the mode "
        "is read from and written as its variable (UV_LINK_MODE, pnpm_config_package_import_method), in its words",
    )
    parser.add_argument(
        "--mode",
        metavar="MODE",
        help=f"verify this mode instead of choosing one ({', '.join(VALID_WORDS)}; aliases reflink, cow, "
        "softlink; pnpm's clone-or-copy: the first of clone, copy that works)",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        help=f"read an explicit mode from environment variable NAME (default {DEFAULT_ENV}, or the --for "
        "tool's variable); --mode wins",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up waiting for a filesystem that does not answer (a hung FUSE or network mount) after "
        "SECONDS: unanswered modes count as timed out, auto answers copy, an explicit mode fails",
    )
    parser.add_argument(
        "--format", choices=_FORMATS, default="mode", help="mode word (default), text, json, or env (NAME=mode)"
    )


def _format_word(text: str) -> str | None:
    return text if text in _FORMATS else None


#: Every option of the probe command (as configure() makes them; a test holds the two
#: together): its flag, the attribute it sets, and the value as argparse would store it, or
#: None for a value argparse refuses (it then says why). Each takes exactly one value.
_OPTIONS: Final[dict[str, tuple[str, Callable[[str], object]]]] = {
    "--for": ("tool", str),
    "--mode": ("mode", str),
    "--env": ("env", str),
    "--timeout": ("timeout", _positive_seconds),
    "--format": ("format", _format_word),
}
_DEFAULTS: Final[dict[str, object]] = {
    "source": None,
    "target": None,
    "tool": None,
    "mode": None,
    "env": None,
    "timeout": None,
    "format": "mode",
}


class ParsedArguments:
    """What fast_parse() read: the attributes argparse's namespace would have, typed.
    (Not types.SimpleNamespace: importing ``types`` costs the start-up more than this class.)"""

    source: str | None
    target: str | None
    tool: str | None
    mode: str | None
    env: str | None
    timeout: float | None
    format: str

    def __init__(self, values: Mapping[str, object]) -> None:
        self.__dict__.update(values)


if TYPE_CHECKING:
    #: What run() reads: argparse's namespace, or the same attributes from fast_parse().
    Arguments = argparse.Namespace | ParsedArguments


def fast_parse(arguments: Sequence[str]) -> ParsedArguments | None:
    """The namespace argparse makes of ``arguments`` (configure()'s parser), for the
    command lines a CI job runs; None for any other, which argparse then parses.

    Understood: up to two positionals (SOURCE, TARGET) next to each other, and each
    option as ``--name VALUE`` or ``--name=VALUE``, the last one winning. Left to
    argparse: ``-h``, ``-V``, ``--``, anything else that starts with ``-`` (an unknown
    option or an abbreviation, which the parser refuses; a value or positional such as
    ``-1`` or ``--``, which it reads by rules of its own), a missing value, a value
    argparse refuses, a third positional, and positionals with an option between them (argparse
    may fill TARGET with its default before it sees the second one).
    """
    values = dict(_DEFAULTS)
    positionals: list[str] = []
    after_positionals = False  # an option came after the positionals
    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        if not word.startswith("-"):  # argparse: a positional (or, after an option, its value)
            if after_positionals:
                return None
            positionals.append(word)
            continue
        after_positionals = bool(positionals)
        flag, equals, value = word.partition("=")
        option = _OPTIONS.get(flag)
        if option is None:
            return None
        if not equals:
            if index == len(arguments):
                return None
            value = arguments[index]
            index += 1
        if value.startswith("-"):  # an option, not a value; or "--", which argparse drops from values
            return None
        dest, convert = option
        converted = convert(value)
        if converted is None:
            return None
        values[dest] = converted
    if len(positionals) > 2:
        return None
    values.update(zip(("source", "target"), positionals, strict=False))
    return ParsedArguments(values)


class _Request:
    """What the user asked for: the word as given, where it came from, what it means.

    Modes are words here (a LinkMode with --for: it equals its word), so that the
    one-word formats never import the enum module (linkprobe._words)."""

    def __init__(self, args: Arguments, env: str | None, wanted: ForRequest | None = None) -> None:
        word, source = requested_word(args.mode, env or None, os.environ, mode_source="--mode")
        text = word.strip() if word is not None else None
        #: The word asked for (stripped), or None when nothing was asked for.
        self.word = text or None
        self.source = source if self.word is not None else None
        #: With --for: the tool's rules, already read (its words, its modes).
        self.wanted = wanted
        self.mode: str | None
        self.order: tuple[str, ...]
        if wanted is not None:
            self.mode = wanted.explicit
            self.order = AUTO_ORDER_WORDS if wanted.order == AUTO_ORDER_WORDS else wanted.order
            return
        # pnpm's "clone-or-copy" names an order, not a mode: the user's own fallback rule.
        chosen = choice_words(word, source=source)
        self.mode = chosen if isinstance(chosen, str) else None
        self.order = chosen if isinstance(chosen, tuple) else AUTO_ORDER_WORDS

    @property
    def explicit(self) -> bool:
        return self.mode is not None


def _how(request: _Request) -> str:
    if request.explicit:
        return f"explicit, from {request.source}"
    if request.word is not None and request.order is not AUTO_ORDER_WORDS:
        return f"auto, in the order {request.word} from {request.source}"
    return "auto"


def _tool_word(wanted: ForRequest, mode: str) -> str:
    from linkprobe.modes import LinkMode  # already imported: --for reads the tool's rules

    return wanted.word(LinkMode(mode))


def _render_text(result: Probe, mode: str | None, request: _Request, out: TextIO) -> None:
    lines = [f"mode: {mode or 'none'} ({_how(request)})"]
    if request.wanted is not None:
        plan, shown = request.wanted.plan, request.wanted.variable
        value = _tool_word(request.wanted, mode) if mode else "none"
        lines.append(f"for {plan.preset.name}: {f'{shown}={value}' if shown else value}")
        lines.append(f"  source from {plan.source.origin}, target from {plan.target.origin}")
    for verdict in result.verdicts:
        errno_name = f" [{verdict.errno_name}]" if verdict.errno_name else ""
        lines.append(f"  {verdict.mode.value:<9} {verdict.status.value:<12}{errno_name} {verdict.reason}")
    for role, side in (("source", result.source), ("target", result.target)):
        lines.append(
            f"{role}: {side.given}\n  {missing_note(side) or 'probed ' + side.probed}\n"
            f"  st_dev {'unknown (no answer)' if side.st_dev is None else side.st_dev}, "
            f"mount {side.mount_point} ({side.fstype}{', read-only' if side.read_only else ''})"
        )
    lines.append(
        f"same device: {'yes' if result.same_device else 'no'}, same mount: {'yes' if result.same_mount else 'no'}"
    )
    if result.linked_from_existing:
        lines.append(f"linked from existing file {result.linked_from}")
    elif result.existing_file is not None:
        lines.append(f"checked on existing file {result.existing_file}")
    if result.timed_out:
        lines.append("timed out: modes marked timed-out were not verified")
    out.write("\n".join(lines) + "\n")


def _env_name_ok(name: str) -> bool:
    """``--format env`` writes ``NAME=mode`` lines (into GITHUB_ENV, say): a NAME that is
    empty or holds ``=`` or a line break would write a different variable or a second line."""
    return name.splitlines() == [name] and "=" not in name and "\0" not in name


def _emit(fmt: str, env: str | None, found: Findings, mode: str | None, request: _Request, error: str | None) -> None:
    out = io.StringIO()  # rendered whole, then written once through write()
    if fmt in ("text", "json"):
        from linkprobe.result import as_probe  # the public result: these formats show all of it

        result = as_probe(found)
    if fmt == "text":
        _render_text(result, mode, request, out)
    elif fmt == "json":
        document = {
            "schema_version": SCHEMA_VERSION,
            "mode": str(mode) if mode else None,
            "explicit": request.explicit,
            "requested": request.word,
            "requested_from": request.source,
            **result.to_dict(),
        }
        if request.wanted is not None:  # the tool's view: its name, variable, word, and why these paths
            plan = request.wanted.plan
            document["tool"] = plan.preset.name
            document["variable"] = request.wanted.variable
            document["value"] = _tool_word(request.wanted, mode) if mode else None
            document["source"]["from"] = plan.source.origin
            document["target"]["from"] = plan.target.origin
        if error is not None:
            document["error"] = error
        import json  # only here: ~2 ms of start-up that the other formats do not need

        out.write(json.dumps(document, indent=2) + "\n")
    elif mode is not None:
        word = _tool_word(request.wanted, mode) if request.wanted is not None else str(mode)
        out.write(f"{env}={word}\n" if fmt == "env" else f"{word}\n")
    write(sys.stdout, out.getvalue())


def _for_tool(tool: str, args: Arguments) -> ForRequest:
    """``--for TOOL``: paths, variable and words from the tool's rules (linkprobe.discovery)."""
    from linkprobe.discovery import for_request

    wanted = for_request(
        tool,
        args.source,
        args.target,
        mode=args.mode,
        env=args.env,
        env_given=args.env is not None,
        output_format=args.format,
    )
    for note in wanted.plan.notes:  # a rule passed over (the tool's command hung): say so, go on
        sys.stderr.write(f"linkprobe: note: {one_line(note)}\n")
    return wanted


def _mounts_once() -> list[Mount]:
    return mount_table(watch=False)


def run(args: Arguments) -> int:
    """Probe, print the answer in ``args.format``; raise what the exit code is made from."""
    wanted = _for_tool(args.tool, args) if args.tool is not None else None
    env = wanted.variable if wanted is not None else (DEFAULT_ENV if args.env is None else args.env)
    if args.format == "env":
        if not env:
            raise UsageError("--format env needs a variable name (--env NAME), got an empty one")
        if not _env_name_ok(env):
            raise UsageError(f"--format env needs a variable name without '=' or line breaks, got {env!r}")
    request = _Request(args, env, wanted)
    source, target = (wanted.plan.source.path, wanted.plan.target.path) if wanted else (args.source, args.target)
    if source is None or target is None:
        missing = "SOURCE, TARGET" if source is None else "TARGET"
        raise UsageError(f"the following arguments are required: {missing} (or --for TOOL)")
    with signals_as_exceptions():
        # One probe in this process: the mount table is read, not watched for changes.
        found = find(source, target, timeout=args.timeout, mounts=_mounts_once)
    source_facts, target_facts, verdicts, *_ = found
    try:
        mode = required(verdicts, request.mode, request.order, source_facts.given, target_facts.given)
    except (UnsupportedModeError, NoUsableModeError) as exc:
        _emit(args.format, env, found, None, request, str(exc))
        raise
    if args.format in ("mode", "env"):  # text and json say it in their own output
        _note_missing(source_facts)
    _emit(args.format, env, found, mode, request, None)
    return EXIT_OK


def _note_missing(source: SideFacts) -> None:
    """One line on stderr when the source does not exist: the answer is then its nearest
    existing ancestor's, which a mistyped cache path would otherwise hide. A target that
    does not exist yet is the usual case (a venv about to be made): text and json say
    so, the one-word formats stay quiet."""
    note = missing_note(source)
    if note is not None:
        sys.stderr.write(f"linkprobe: note: source {one_line(source.given)} {note}\n")
