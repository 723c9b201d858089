"""The probe command's own parser of common command lines (``fast_parse``) against argparse.

Whenever ``fast_parse`` answers, argparse must make the same namespace of the same argv;
whenever it does not, argparse parses (and reports errors) as before. Either way, what the
command line prints and exits with is the same as with argparse alone. And the common
command lines start without argparse (nor re, gettext, locale), which is what it is for.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from _cli import run_main
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import linkprobe
from linkprobe.cli import probe as probe_command

#: The module (``linkprobe.cli.main`` as an attribute is the function of that name).
main_module = importlib.import_module("linkprobe.cli.main")

#: The directory that holds the linkprobe package, for a child that ignores PYTHONPATH (-I).
_PACKAGE_PARENT = str(Path(linkprobe.__file__).resolve().parent.parent)
#: Modules the fast path must not import; argparse brings all four.
_PARSER_MODULES = ("argparse", "gettext", "locale", "re")


def argparse_namespace(argv: list[str], *, named: bool = False) -> dict[str, object] | None:
    """vars() of argparse's parse of ``argv`` (the probe command's parser), None when it exits."""
    parser = main_module._parser("probe", probe_command, named=named, arguments=argv)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            parsed: dict[str, object] = vars(parser.parse_args(argv))
        except SystemExit:
            return None
    return parsed


def test_options_are_the_parsers_options() -> None:
    """The table fast_parse reads names every option of configure()'s parser, with its
    attribute, and fast_parse's defaults are argparse's."""
    parser = main_module._parser("probe", probe_command, named=False)
    options = {
        flag: action.dest
        for action in parser._actions
        for flag in action.option_strings
        if action.dest not in ("help", "version")
    }
    assert options == {flag: dest for flag, (dest, _) in probe_command._OPTIONS.items()}
    assert all(action.nargs is None for action in parser._actions if action.option_strings and action.dest in options)
    fast = probe_command.fast_parse([])
    assert fast is not None
    assert vars(fast) == argparse_namespace([])


# Words argparse reads in different ways: positionals (a command name among them), values
# valid and invalid for --format and --timeout, empty strings, words that start with "-"
# (a lone "-", a negative number, "--", -h, -V), prefixes and misspellings of options, and
# every option in both forms.
_WORDS = [
    "src",
    "dst",
    "a b",
    "",
    "probe",
    "audit",
    "uv",
    "copy",
    "text",
    "json",
    "env",
    "mode",
    "yaml",
    "5",
    "0.5",
    "0",
    "1e3",
    "nan",
    "inf",
    "x=y",
    "-",
    "-1",
    "-5",
    "-x",
    "--",
    "-h",
    "--help",
    "-V",
    "--version",
    "--form",
    "--mod",
    "--fo",
    "--formats",
    "--FORMAT",
    "-format",
    "--nope",
    "--nope=1",
]
_OPTION_WORDS = [*probe_command._OPTIONS, *(f"{flag}=" for flag in probe_command._OPTIONS)]
_VALUES = ["", "text", "json", "env", "mode", "yaml", "5", "0", "-1", "nan", "inf", "x=y", "uv", "a b", "-", "--"]
token = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_OPTION_WORDS),
    st.builds(
        lambda flag, value: f"{flag}={value}", st.sampled_from(list(probe_command._OPTIONS)), st.sampled_from(_VALUES)
    ),
    st.text(st.sampled_from("-=ab t"), max_size=5),
)


@st.composite
def option_lines(draw: st.DrawFn) -> list[str]:
    """Options with values (mostly good ones) and up to three positionals, in any order:
    the command lines fast_parse takes, and their near misses."""
    words: list[list[str]] = []
    for flag in draw(st.lists(st.sampled_from(list(probe_command._OPTIONS)), max_size=4)):
        good = {"--format": ["mode", "text", "json", "env"], "--timeout": ["5", "1e3", "0.5"], "--for": ["uv", "nope"]}
        value = draw(st.sampled_from(good.get(flag, ["copy", "auto", "clone-or-copy", "X", ""]) + _VALUES))
        words.append([f"{flag}={value}"] if draw(st.booleans()) else [flag, value])
    places = ["src", "dst", "dst/new", "missing/x", "", "src/file"]
    positionals = draw(st.lists(st.sampled_from(places), min_size=draw(st.sampled_from([0, 2, 2])), max_size=3))
    if draw(st.booleans()):  # next to each other, as usual
        words.insert(draw(st.integers(0, len(words))), positionals)
    else:
        for positional in positionals:
            words.insert(draw(st.integers(0, len(words))), [positional])
    return [word for group in words for word in group]


argvs = st.one_of(st.lists(token, max_size=8), option_lines())


@settings(max_examples=3000, deadline=None)
@given(argvs)
@example(["src", "dst"])
@example(["--format", "text", "src", "dst"])
@example(["src", "--format", "text", "dst"])  # an option between the positionals
@example(["--mode=", "--env", "", "src"])
@example(["--timeout", "nan", "src", "dst"])
@example(["--format=json=x", "src", "dst"])
@example(["--mode", "-1", "src", "dst"])
@example(["src", "dst", "extra"])
def test_fast_parse_agrees_with_argparse(argv: list[str]) -> None:
    fast = probe_command.fast_parse(argv)
    if fast is not None:
        assert vars(fast) == argparse_namespace(argv)
        assert vars(fast) == argparse_namespace(argv, named=True)  # linkprobe probe ...


def test_fast_parse_takes_the_common_command_lines() -> None:
    """What a CI job runs is parsed without argparse (else the fast path would be dead code)."""
    lines = [
        ["src", "dst"],
        ["--format", "env", "src", "dst"],
        ["--format=text", "--mode", "copy", "src", "dst"],
        ["src", "dst", "--env", "UV_LINK_MODE", "--timeout", "5"],
        ["--for", "uv"],
        ["--for=pnpm", "--format", "json"],
    ]
    for argv in lines:
        fast = probe_command.fast_parse(argv)
        assert fast is not None, argv
        assert vars(fast) == argparse_namespace(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-h"],
        ["--version"],
        ["--", "src", "dst"],
        ["--form", "text", "src", "dst"],  # an abbreviation: argparse refuses it
        ["--format", "yaml", "src", "dst"],
        ["--timeout", "0", "src", "dst"],
        ["--mode"],
        ["--mode", "--env", "X"],
        ["-", "dst"],
        ["src", "dst", "extra"],
        ["src", "--mode", "copy", "dst"],
    ],
)
def test_fast_parse_leaves_the_rest_to_argparse(argv: list[str]) -> None:
    assert probe_command.fast_parse(argv) is None


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A source with a file and a place for a target, as ``src`` and ``dst`` in the cwd."""
    root = tmp_path_factory.mktemp("fast-parse")
    (root / "src").mkdir()
    (root / "src" / "file").write_bytes(b"x")
    empty_path = root / "no-tools"
    empty_path.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        # --for must not find or run a real tool: what it prints would not be ours to compare.
        patch.setenv("PATH", str(empty_path))
        patch.setenv("HOME", str(root))
        for name in list(os.environ):
            if name.startswith(("LINKPROBE_", "UV_", "XDG_", "npm_", "pnpm_", "BUN_")) or name == "COLUMNS":
                patch.delenv(name)
        yield root


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(argvs, argvs.map(lambda argv: ["probe", *argv])))
@example(["src", "dst"])
@example(["--format", "text", "src", "dst"])
@example(["--for", "uv", "--format", "json", "src", "dst"])
@example(["--format", "env", "--env", "", "src", "dst"])
@example(["src", "--format", "text", "dst"])
@example(["--help"])
def test_the_command_line_behaves_as_with_argparse_alone(places: Path, argv: list[str]) -> None:
    """Exit code, stdout and stderr of main(argv): the same with and without fast_parse."""
    with_fast = run_main(argv)
    with mock.patch.object(probe_command, "fast_parse", return_value=None):
        argparse_only = run_main(argv)
    assert with_fast == argparse_only


def _imported_by(argv: list[str], places: Path) -> tuple[int, list[str]]:
    """The exit status of ``main(argv)`` in a fresh interpreter (-I -S: nothing else
    imports anything), and which of _PARSER_MODULES it imported."""
    code = (
        f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); from linkprobe.cli import main\n"
        f"try:\n    status = main({argv!r})\nexcept SystemExit as exc:\n    status = exc.code\n"
        f"print(*sorted(sys.modules.keys() & {set(_PARSER_MODULES)!r}), file=sys.stderr)\n"
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=places,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.returncode, done.stderr.splitlines()[-1].split()


@pytest.mark.parametrize(
    "argv",
    [
        ["src", "dst"],
        ["--format", "text", "src", "dst"],
        ["--format=env", "--env", "UV_LINK_MODE", "src", "dst"],
        ["probe", "--mode", "copy", "src", "dst"],
    ],
)
def test_common_command_lines_start_without_argparse(places: Path, argv: list[str]) -> None:
    assert _imported_by(argv, places) == (0, [])


@pytest.mark.parametrize(
    ("argv", "status"),
    [(["--help"], 0), (["-V"], 0), (["--format", "yaml", "src", "dst"], 2), (["src", "--", "dst"], 0)],
)
def test_other_command_lines_go_through_argparse(places: Path, argv: list[str], status: int) -> None:
    assert _imported_by(argv, places) == (status, sorted(_PARSER_MODULES))
