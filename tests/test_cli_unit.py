"""The command line, in-process (``linkprobe.cli.main``) and as ``python -m linkprobe``.

Everything runs on tmp_path on one filesystem, except one test that uses /dev/shm as a
second mount when it is one. Only ``copy`` is assumed to work; the other modes depend
on the filesystem under tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from _cli import run_main as captured_main
from _stderr import error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkprobe import SCRATCH_PREFIX, InvalidModeError, __version__, parse_mode, probe
from linkprobe.cli import EXIT_NO_MODE, EXIT_OK, EXIT_USAGE
from linkprobe.modes import parse_order
from linkprobe.mounts import find_mount, mount_table

AUTO_WORDS = {"clone", "hardlink", "copy"}
ENV = "LINKPROBE_MODE"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        document = json.loads(self.out)
        assert isinstance(document, dict)
        return document


def litter(root: Path | str) -> list[str]:
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        found.extend(os.path.join(directory, name) for name in dirs + files if name.startswith(SCRATCH_PREFIX))
    return found


def run_main(argv: list[str], *, roots: tuple[Path | str, ...] = ()) -> Run:
    """main() in-process, stdout and stderr captured; then no scratch file may be left."""
    code, out, err = captured_main(argv)
    for root in roots:
        assert litter(root) == []
    return Run(code, out, err)


def assert_one_error_line(run: Run) -> None:
    assert "Traceback" not in run.err
    error_line(run.err)


@pytest.fixture(autouse=True)
def no_mode_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("FOO", raising=False)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    source = tmp_path / "cache"
    target = tmp_path / "project"
    source.mkdir()
    target.mkdir()
    (source / "pkg.whl").write_bytes(b"wheel")
    return str(source), str(target)


Cli = Callable[..., Run]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    def call(*argv: str) -> Run:
        return run_main(list(argv), roots=(tmp_path,))

    yield call
    assert litter(tmp_path) == []


# ------------------------------------------------------------------------ output formats


def test_default_format_prints_one_mode_word(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair)
    assert run.code == EXIT_OK
    assert run.err == ""
    assert run.out.endswith("\n")
    assert len(run.out.splitlines()) == 1
    word = run.out.strip()
    assert word in AUTO_WORDS
    best = probe(*pair, cache=False).best
    assert best is not None
    assert word == best.value


def test_env_format(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--format", "env", "--env", "FOO")
    assert run.code == EXIT_OK
    name, _, word = run.out.strip().partition("=")
    assert name == "FOO"
    assert word in AUTO_WORDS
    assert run.out.count("\n") == 1


def test_env_format_reads_the_named_variable(cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOO", "copy")
    monkeypatch.setenv(ENV, "nope")  # not the variable named by --env: ignored
    run = cli(*pair, "--format", "env", "--env", "FOO")
    assert (run.code, run.out) == (EXIT_OK, "FOO=copy\n")


def test_json_format(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--format", "json")
    assert run.code == EXIT_OK
    document = run.json()
    assert document["mode"] in AUTO_WORDS
    assert document["explicit"] is False
    assert document["mode"] == document["best"]
    assert set(document["modes"]) == {"clone", "hardlink", "symlink", "copy"}
    assert document["modes"]["copy"]["supported"] is True
    assert document["source"]["given"] == pair[0]
    assert document["target"]["probed"] == os.path.realpath(pair[1])
    assert "error" not in document


def test_json_format_explicit(cli: Cli, pair: tuple[str, str]) -> None:
    document = cli(*pair, "--format", "json", "--mode", "COPY").json()
    assert document["mode"] == "copy"
    assert document["explicit"] is True


def test_text_format_mentions_every_mode(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--format", "text")
    assert run.code == EXIT_OK
    lines = run.out.splitlines()
    assert lines[0].startswith("mode: ")
    assert lines[0].endswith("(auto)")
    for word in ("clone", "hardlink", "symlink", "copy"):
        assert any(line.strip().startswith(word) for line in lines[1:5]), word
    assert f"source: {pair[0]}" in run.out
    assert f"target: {pair[1]}" in run.out


# --------------------------------------------------------------------- explicit modes


@pytest.mark.parametrize("spelling", ["copy", "COPY", " Copy "])
def test_mode_copy(cli: Cli, pair: tuple[str, str], spelling: str) -> None:
    run = cli(*pair, "--mode", spelling)
    assert (run.code, run.out, run.err) == (EXIT_OK, "copy\n", "")


def test_mode_symlink_is_verified_not_replaced(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--mode", "softlink")
    if run.code == EXIT_OK:
        assert run.out == "symlink\n"
    else:
        assert run.code == EXIT_NO_MODE
        assert run.out == ""
        assert_one_error_line(run)


def test_mode_reflink_either_works_or_fails_cleanly(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--mode", "reflink")
    if run.code == EXIT_OK:
        assert run.out == "clone\n"
    else:
        assert run.code == EXIT_NO_MODE
        assert run.out == ""  # never another mode
        assert_one_error_line(run)
        assert "clone does not work from" in run.err


def test_mode_bogus(cli: Cli, pair: tuple[str, str]) -> None:
    run = cli(*pair, "--mode", "bogus")
    assert run.code == EXIT_USAGE
    assert run.out == ""
    assert_one_error_line(run)
    assert "invalid --mode 'bogus'" in run.err
    assert "auto, clone, hardlink, symlink, copy" in run.err


def test_env_garbage(cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "nope")
    run = cli(*pair)
    assert run.code == EXIT_USAGE
    assert run.out == ""
    assert_one_error_line(run)
    assert ENV in run.err
    assert "'nope'" in run.err


def test_env_explicit_mode(cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "copy")
    document = cli(*pair, "--format", "json").json()
    assert (document["mode"], document["explicit"]) == ("copy", True)


@pytest.mark.parametrize("where", ["--mode", "env"])
def test_pnpms_clone_or_copy_is_the_order_clone_then_copy(
    cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # tmp_path is one filesystem: auto would say hardlink (or clone); the order never does.
    if where == "env":
        monkeypatch.setenv("pnpm_config_package_import_method", "clone-or-copy")
        run = cli(*pair, "--env", "pnpm_config_package_import_method", "--format", "env")
    else:
        run = cli(*pair, "--mode", "Clone-or-Copy", "--env", "pnpm_config_package_import_method", "--format", "env")
    result = probe(*pair, cache=False)
    expected = "clone" if result.supports("clone") else "copy"
    assert (run.code, run.out, run.err) == (EXIT_OK, f"pnpm_config_package_import_method={expected}\n", "")


@pytest.mark.parametrize("env_value", ["nope", "symlink", "hardlink"])
def test_mode_beats_env(cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch, env_value: str) -> None:
    monkeypatch.setenv(ENV, env_value)
    run = cli(*pair, "--mode", "copy")
    assert (run.code, run.out, run.err) == (EXIT_OK, "copy\n", "")


def test_mode_auto_beats_env(cli: Cli, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "nope")
    document = cli(*pair, "--mode", "auto", "--format", "json").json()
    assert document["explicit"] is False
    assert document["mode"] in AUTO_WORDS


# --------------------------------------------------------------------------- bad paths


@pytest.mark.parametrize("which", ["source", "target"])
def test_empty_path(cli: Cli, pair: tuple[str, str], which: str) -> None:
    argv = ["", pair[1]] if which == "source" else [pair[0], ""]
    run = cli(*argv)
    assert run.code == EXIT_USAGE
    assert run.out == ""
    assert_one_error_line(run)
    assert f"{which} path is empty" in run.err


def test_target_is_a_file(cli: Cli, pair: tuple[str, str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    run = cli(pair[0], str(afile))
    assert run.code == EXIT_USAGE
    assert run.out == ""
    assert_one_error_line(run)
    assert "not a directory" in run.err
    assert repr(str(afile)) in run.err
    assert afile.read_text() == "x"


def test_missing_source_is_probed_at_nearest_existing_ancestor(cli: Cli, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    source = base / "a" / "b" / "c" / "d"
    target = tmp_path / "new" / "project"
    run = cli(str(source), str(target), "--format", "json")
    assert run.code == EXIT_OK
    document = run.json()
    assert document["source"]["given"] == str(source)
    assert document["source"]["probed"] == os.path.realpath(base)
    assert document["target"]["probed"] == os.path.realpath(tmp_path)
    # Nothing was created on the way.
    assert not (base / "a").exists()
    assert not (tmp_path / "new").exists()


def test_source_file_is_linked_from_directly(cli: Cli, pair: tuple[str, str]) -> None:
    wheel = os.path.join(pair[0], "pkg.whl")
    document = cli(wheel, pair[1], "--format", "json").json()
    assert document["source"]["probed"] == os.path.realpath(wheel)
    assert document["linked_from"] == os.path.realpath(wheel)
    assert document["linked_from_existing"] is True
    assert Path(wheel).read_bytes() == b"wheel"


# ------------------------------------------------------------ a second mount: /dev/shm


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[str]:
    """A fresh directory on /dev/shm, if that is a different mount from tmp_path."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    mounts = mount_table()
    here = find_mount(os.path.realpath(tmp_path), mounts)
    there = find_mount(os.path.realpath("/dev/shm"), mounts)
    if here is None or there is None or (here.mount_point, here.mount_id) == (there.mount_point, there.mount_id):
        pytest.skip("/dev/shm is not a separate mount from tmp_path here")
    directory = tempfile.mkdtemp(prefix="linkprobe-cli-test-", dir="/dev/shm")
    try:
        yield directory
        assert litter(directory) == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_explicit_hardlink_across_mounts_fails(cli: Cli, shm_dir: str, tmp_path: Path) -> None:
    run = run_main([shm_dir, str(tmp_path), "--mode", "hardlink"], roots=(tmp_path, shm_dir))
    assert run.code == EXIT_NO_MODE
    assert run.out == ""
    assert_one_error_line(run)
    assert "different mounts" in run.err
    assert "hardlink does not work from" in run.err


def test_explicit_hardlink_across_mounts_json_has_error(shm_dir: str, tmp_path: Path) -> None:
    run = run_main([shm_dir, str(tmp_path), "--mode", "hardlink", "--format", "json"], roots=(tmp_path, shm_dir))
    assert run.code == EXIT_NO_MODE
    document = run.json()
    assert document["mode"] is None
    assert document["explicit"] is True
    assert "different mounts" in document["error"]
    assert document["modes"]["hardlink"]["errno"] == "EXDEV"
    assert document["same_mount"] is False


def test_auto_across_mounts_never_picks_hardlink(shm_dir: str, tmp_path: Path) -> None:
    run = run_main([shm_dir, str(tmp_path)], roots=(tmp_path, shm_dir))
    assert run.code == EXIT_OK
    assert run.out.strip() in {"clone", "copy"}


def test_error_stays_one_line_for_a_path_with_a_newline(shm_dir: str, tmp_path: Path) -> None:
    source = os.path.join(shm_dir, "two\nlines")
    os.mkdir(source)
    run = run_main([source, str(tmp_path), "--mode", "hardlink"], roots=(tmp_path, shm_dir))
    assert run.code == EXIT_NO_MODE
    assert_one_error_line(run)


# ------------------------------------------------------------------------- subprocess


def run_module(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != ENV}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_module_mode_copy(pair: tuple[str, str], tmp_path: Path) -> None:
    done = run_module([*pair, "--mode", "copy"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "copy\n", "")
    assert litter(tmp_path) == []


def test_module_auto(pair: tuple[str, str], tmp_path: Path) -> None:
    done = run_module(list(pair))
    assert done.returncode == 0
    assert done.stdout.strip() in AUTO_WORDS
    assert litter(tmp_path) == []


def test_module_bad_mode(pair: tuple[str, str]) -> None:
    done = run_module([*pair, "--mode", "bogus"])
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert "'bogus'" in done.stderr


def test_module_env_garbage(pair: tuple[str, str]) -> None:
    done = run_module(list(pair), env={ENV: "nope"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert ENV in done.stderr


def test_module_target_is_a_file(pair: tuple[str, str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = run_module([pair[0], str(afile)])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_module_version() -> None:
    done = run_module(["--version"])
    assert done.returncode == 0
    assert done.stdout.strip() == f"linkprobe {__version__}"


def test_bad_format_is_usage_error(pair: tuple[str, str]) -> None:
    run = run_main([*pair, "--format", "yaml"])
    assert run.code == EXIT_USAGE
    assert "Traceback" not in run.err


# ---------------------------------------------------------------------------- property

#: Text an environment variable can hold: no NUL, no lone surrogates.
ENV_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
MODE_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["copy", " HARDLINK", "reflink ", "softlink", "auto", "", "clone\n", " Clone-Or-Copy"]),
)


def expected_codes(text: str) -> set[int]:
    if parse_order(text) is not None:
        return {EXIT_OK, EXIT_NO_MODE}
    try:
        parse_mode(text)
    except InvalidModeError:
        return {EXIT_USAGE}
    return {EXIT_OK, EXIT_NO_MODE}


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    base = tmp_path_factory.mktemp("cli-fuzz")
    (base / "src").mkdir()
    (base / "dst").mkdir()
    return str(base / "src"), str(base / "dst")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MODE_TEXT)
def test_any_mode_text(shared_pair: tuple[str, str], text: str) -> None:
    run = run_main([*shared_pair, f"--mode={text}"], roots=shared_pair)
    assert run.code in expected_codes(text)
    assert "Traceback" not in run.err
    if run.code == EXIT_OK:
        order = parse_order(text)
        mode = None if order else parse_mode(text)
        if order:
            assert run.out.strip() in {m.value for m in order}
        elif mode is None:
            assert run.out.strip() in AUTO_WORDS
        else:
            assert run.out == f"{mode.value}\n"  # an explicit mode is never replaced
    else:
        assert run.out == ""
        error_line(run.err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=ENV_TEXT)
def test_any_env_value(shared_pair: tuple[str, str], value: str) -> None:
    with mock.patch.dict(os.environ, {ENV: value}):
        run = run_main(list(shared_pair), roots=shared_pair)
    assert run.code in expected_codes(value)
    assert "Traceback" not in run.err
    if run.code == EXIT_USAGE:
        assert ENV in run.err
        error_line(run.err)
