"""The Linker never hurts what it is given and says what it did: wrong arguments, the
fallback warning (its words, how often, where it points), rollback bookkeeping.

On the test machine's own filesystem (tmp_path), with backends that fail on cue; the
same guarantees on loop-mounted filesystems are in test_linker_trust_realfs.py.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest

from linkprobe import Linker, LinkFailedError, LinkMode, LinkModeFallbackWarning, LinkprobeError, errors
from linkprobe.api import ManyResult, SourceHints
from linkprobe.linux import LinuxBackend
from linkprobe.probe import SCRATCH_PREFIX


def make_tree(root: Path, packages: int = 4, files: int = 40) -> Path:
    """``files`` small modules over ``packages`` directories, one executable, one symlink."""
    source = root / "cache"
    for index in range(files):
        path = source / f"pkg{index % packages}" / f"mod{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(50 + index))
    tool = source / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (source / "bin" / "alias").symlink_to("tool")
    return source


class FailingBackend(LinuxBackend):
    """The Linux backend, except that linking names outside the probe's scratch files
    fails with ``code`` once ``after`` of them were made (None: never)."""

    def __init__(self, code: int = errno.EXDEV, after: int | None = None) -> None:
        self.code = code
        self.after = after
        self.made = 0

    def hardlink(self, source: str, target: str) -> None:
        if not os.path.basename(target).startswith(SCRATCH_PREFIX) and self.after is not None:
            if self.made >= self.after:
                raise OSError(self.code, os.strerror(self.code), source, None, target)
            self.made += 1
        super().hardlink(source, target)


def test_link_of_a_directory_is_an_error_of_that_call_not_a_fallback(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    linker = Linker(env=None, prefer=("hardlink", "copy"))
    first = tmp_path / "venv" / "tool"
    assert linker.link(source / "bin" / "tool", first) is LinkMode.HARDLINK
    with pytest.raises(IsADirectoryError) as raised:
        linker.link(source / "pkg0", tmp_path / "venv" / "pkg0")
    assert isinstance(raised.value, LinkprobeError)
    assert raised.value.errno == errno.EISDIR
    assert (raised.value.filename, raised.value.filename2) == (str(source / "pkg0"), str(tmp_path / "venv" / "pkg0"))
    assert "directory" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert linker.fallbacks == ()
    assert linker.mode is LinkMode.HARDLINK
    # The pair still hardlinks: the next file shares the source's inode.
    assert linker.link(source / "pkg1" / "mod1.py", tmp_path / "venv" / "mod1.py") is LinkMode.HARDLINK
    assert os.stat(tmp_path / "venv" / "mod1.py").st_ino == os.stat(source / "pkg1" / "mod1.py").st_ino
    assert not (tmp_path / "venv" / "pkg0").exists()


@pytest.mark.parametrize("kind", ["missing", "dangling symlink", "fifo", "symlink to a directory"])
def test_link_of_a_wrong_source_changes_nothing(tmp_path: Path, kind: str) -> None:
    source = make_tree(tmp_path)
    wrong = tmp_path / "wrong"
    expected: type[BaseException] = LinkprobeError
    if kind == "missing":
        expected = FileNotFoundError
    elif kind == "dangling symlink":
        wrong.symlink_to(tmp_path / "nowhere")
        expected = FileNotFoundError
    elif kind == "fifo":
        os.mkfifo(wrong)  # opening it to copy would block for ever; link(2) would link it
    else:
        wrong.symlink_to(source / "pkg0")
        expected = IsADirectoryError
    linker = Linker(env=None, prefer=("hardlink", "copy"))
    target = tmp_path / "venv" / "deep" / "file"
    with pytest.raises(expected) as raised:
        linker.link(wrong, target)
    assert isinstance(raised.value, LinkprobeError)
    assert isinstance(raised.value, OSError)
    assert raised.value.filename == str(wrong)
    assert linker.fallbacks == ()
    assert linker.mode is None  # not even probed
    assert not (tmp_path / "venv").exists()


def test_link_tree_of_a_missing_source_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        Linker(env=None).link_tree(tmp_path / "no-such-cache", tmp_path / "venv")
    assert isinstance(raised.value, LinkprobeError)
    assert raised.value.errno == errno.ENOENT
    assert "does not exist" in str(raised.value)
    assert "not a directory" not in str(raised.value)
    assert not (tmp_path / "venv").exists()


def test_link_tree_of_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as raised:
        Linker(env=None).link_tree(tmp_path / "file", tmp_path / "venv")
    assert isinstance(raised.value, LinkprobeError)
    assert raised.value.errno == errno.ENOTDIR
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("workers", [0, -1, -4, True, 1.5, "2"])
def test_workers_below_one_or_not_a_number_is_refused(workers: object) -> None:
    with pytest.raises(ValueError, match="workers") as raised:
        Linker(env=None, workers=workers)  # type: ignore[arg-type]
    assert isinstance(raised.value, LinkprobeError)


def test_an_empty_prefer_is_refused() -> None:
    with pytest.raises(ValueError, match="prefer") as raised:
        Linker(env=None, prefer=())
    assert isinstance(raised.value, LinkprobeError)


def _fallback_warnings(caught: Sequence[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, LinkModeFallbackWarning)]


@pytest.mark.parametrize("workers", [1, 4])
def test_the_fallback_warning_points_at_the_callers_line(tmp_path: Path, workers: int) -> None:
    source = make_tree(tmp_path, packages=8, files=1200)  # batches of 128 reach every worker
    linker = Linker(env=None, prefer=("hardlink", "copy"), workers=workers, backend=FailingBackend(after=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        stats = linker.link_tree(source, tmp_path / "venv")
    found = _fallback_warnings(caught)
    assert [(w.filename, w.lineno) for w in found] == [(__file__, line)]
    assert stats.copied == 1201
    assert len(linker.fallbacks) == 1


def test_the_fallback_warning_of_link_points_at_the_callers_line(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    linker = Linker(env=None, prefer=("hardlink", "copy"), backend=FailingBackend(after=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        assert linker.link(source / "bin" / "tool", tmp_path / "venv" / "tool") is LinkMode.COPY
    assert [(w.filename, w.lineno) for w in _fallback_warnings(caught)] == [(__file__, line)]


@pytest.mark.parametrize(
    ("env", "advice"),
    [
        ("UV_LINK_MODE", "UV_LINK_MODE=copy"),
        ("LINKPROBE_MODE", "LINKPROBE_MODE=copy"),
        (None, "pass mode='copy'"),
    ],
)
def test_the_fallback_warning_names_the_callers_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, advice: str
) -> None:
    for name in ("UV_LINK_MODE", "LINKPROBE_MODE"):
        monkeypatch.delenv(name, raising=False)
    source = make_tree(tmp_path)
    linker = Linker(env=env, prefer=("hardlink", "copy"), backend=FailingBackend(after=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        linker.link_tree(source, tmp_path / "venv")
    (warning,) = _fallback_warnings(caught)
    message = str(warning.message)
    assert advice in message
    for other in {"UV_LINK_MODE", "LINKPROBE_MODE"} - {env}:
        assert other not in message


_ONE_FALLBACK = textwrap.dedent(
    """
    import errno, os, sys
    from linkprobe import Linker
    from linkprobe.linux import LinuxBackend

    class Failing(LinuxBackend):
        def hardlink(self, source, target):
            if not os.path.basename(target).startswith(".linkprobe-"):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), source, None, target)
            super().hardlink(source, target)

    print(Linker(env="UV_LINK_MODE", prefer=("hardlink", "copy"), backend=Failing()).link_tree(*sys.argv[1:]))
    """
)


def test_the_fallback_is_printed_once_by_default(tmp_path: Path) -> None:
    """Default warning filters, logging not configured: one message on stderr, not two
    (the warning, and logging's last-resort handler printing the log record)."""
    source = make_tree(tmp_path)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONWARNINGS", "UV_LINK_MODE")}
    done = subprocess.run(
        [sys.executable, "-c", _ONE_FALLBACK, str(source), str(tmp_path / "venv")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert done.stderr.count("hardlink failed from") == 1, done.stderr
    assert "LinkModeFallbackWarning" in done.stderr
    assert "UV_LINK_MODE=copy" in done.stderr


def test_an_application_that_configures_logging_still_gets_the_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_tree(tmp_path)
    linker = Linker(env=None, prefer=("hardlink", "copy"), backend=FailingBackend(after=0))
    with caplog.at_level("WARNING", "linkprobe"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linker.link_tree(source, tmp_path / "venv")
    assert [r.levelname for r in caplog.records if r.name == "linkprobe"] == ["WARNING"]


# -- what link() and link_tree() leave behind when they fail ----------------------------------------


def test_link_removes_the_directories_it_made_when_the_file_fails(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    (tmp_path / "venv").mkdir()
    linker = Linker("hardlink", env=None, backend=FailingBackend(after=0))
    with pytest.raises(errors.UnsupportedModeError):
        linker.link(source / "bin" / "tool", tmp_path / "venv" / "lib" / "deep" / "tool")
    assert os.listdir(tmp_path / "venv") == []


def test_link_names_the_path_that_is_too_long(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    parent = tmp_path / "t"
    while len(os.fsencode(str(parent))) + 201 < 4000:
        parent = parent / ("d" * 200)
    parent = parent / ("e" * (4000 - len(os.fsencode(str(parent))) - 1))
    assert len(os.fsencode(str(parent))) == 4000  # room for the probe's scratch names
    parent.mkdir(parents=True)
    target = parent / ("f" * 120)
    size = len(os.fsencode(str(target)))
    assert size >= 4096
    with pytest.raises(LinkFailedError) as raised:
        Linker(env=None).link(source / "bin" / "tool", target)
    assert raised.value.errno == errno.ENAMETOOLONG
    assert str(target) in raised.value.reason
    assert f"{size} bytes" in raised.value.reason


class InterferingBackend(LinuxBackend):
    """Fails the ``fail_at``-th file made through make_many with ENOSPC; just before
    that, somebody else puts a file into a directory the Linker created and replaces
    one of the Linker's hardlinks with a file of their own."""

    def __init__(self, fail_at: int, foreign_dir: Path, replaced: Path) -> None:
        self.fail_at = fail_at
        self.seen = 0
        self.foreign_dir = foreign_dir
        self.replaced = replaced

    def make_many(
        self,
        mode: str,
        source_dir: str,
        target_dir: str,
        files: Sequence[tuple[str, SourceHints]],
        start: int = 0,
        budget: int | None = None,
    ) -> ManyResult:
        made = 0
        for index in range(start, len(files)):
            if self.seen == self.fail_at:
                (self.foreign_dir / "theirs.txt").write_text("somebody else's")
                os.unlink(self.replaced)
                self.replaced.write_text("replaced by somebody else")
                return index, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), made
            self.seen += 1
            done, error, one = super().make_many(mode, source_dir, target_dir, files[: index + 1], index)
            made += one
            if error is not None:
                return done, error, made
        return len(files), None, made


def test_rollback_leaves_what_is_no_longer_its_own(tmp_path: Path) -> None:
    source = tmp_path / "cache"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    for name in ("a", "b"):
        for index in range(5):
            (source / name / f"m{index}.py").write_text(f"{name}{index}")
    target = tmp_path / "venv"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    # Which of a/ and b/ is walked first depends on the directory's order: make both
    # candidates, then aim at whichever held the first files made.
    backend = InterferingBackend(fail_at=7, foreign_dir=target / "a", replaced=target / "a" / "m0.py")
    order = [entry.name for entry in os.scandir(source)]
    first = order[-1]  # the walk pops directories last-in first-out
    backend.foreign_dir, backend.replaced = target / first, target / first / "m0.py"
    linker = Linker("hardlink", env=None, backend=backend)
    with pytest.raises(LinkFailedError) as raised:
        linker.link_tree(source, target)
    error = raised.value
    assert error.errno == errno.ENOSPC
    assert error.stats is not None
    assert error.stats.hardlinked == 7
    assert error.stats.directories == 2
    assert set(error.not_removed) == {str(target / first / "m0.py"), str(target / first)}
    assert sorted(os.listdir(target)) == sorted(["keep.txt", first])
    assert sorted(os.listdir(target / first)) == ["m0.py", "theirs.txt"]
    assert (target / first / "m0.py").read_text() == "replaced by somebody else"
    assert (target / "keep.txt").read_text() == "mine"


def test_auto_mode_rolls_back_too(tmp_path: Path) -> None:
    """A failure that is not about the mode (ENOSPC) in auto mode: the same undo."""
    source = make_tree(tmp_path, files=60)
    linker = Linker(env=None, prefer=("hardlink", "copy"), backend=FailingBackend(errno.ENOSPC, after=30))
    with pytest.raises(LinkFailedError) as raised:
        linker.link_tree(source, tmp_path / "venv")
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.stats is not None
    assert raised.value.stats.hardlinked == 30
    assert raised.value.not_removed == ()
    assert not (tmp_path / "venv").exists()
    assert linker.fallbacks == ()


def test_a_successful_tree_is_left_as_made(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    stats = Linker("copy", env=None, workers=2).link_tree(source, tmp_path / "venv")
    assert stats.copied == 41
    assert stat.S_IMODE(os.stat(tmp_path / "venv" / "bin" / "tool").st_mode) == 0o755
    assert os.readlink(tmp_path / "venv" / "bin" / "alias") == "tool"


class InterruptingBackend(LinuxBackend):
    """Ctrl-C in the middle of a tree: KeyboardInterrupt after ``after`` files."""

    def __init__(self, after: int) -> None:
        self.after = after

    def make_many(
        self,
        mode: str,
        source_dir: str,
        target_dir: str,
        files: Sequence[tuple[str, SourceHints]],
        start: int = 0,
        budget: int | None = None,
    ) -> ManyResult:
        if self.after <= 0:
            raise KeyboardInterrupt
        end = min(len(files), start + self.after)
        self.after -= end - start
        done, error, made = super().make_many(mode, source_dir, target_dir, files[:end], start, budget)
        if error is not None or end == len(files):
            return done, error, made
        raise KeyboardInterrupt


def test_an_interrupted_tree_is_removed_and_the_interrupt_goes_on(tmp_path: Path) -> None:
    source = make_tree(tmp_path, files=80)
    with pytest.raises(KeyboardInterrupt):
        Linker("copy", env=None, backend=InterruptingBackend(after=30)).link_tree(source, tmp_path / "venv")
    assert not (tmp_path / "venv").exists()


def test_an_unreadable_source_directory_is_a_linkprobe_error_with_the_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scandir(3) refused (as EACCES would for a user without read permission; root reads
    everything, so the refusal is staged)."""
    source = make_tree(tmp_path)
    real_scandir = os.scandir
    refused = str(source / "pkg2")

    def scandir(path: str) -> object:
        if os.fspath(path) == refused:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(LinkFailedError) as raised:
        Linker("copy", env=None).link_tree(source, tmp_path / "venv")
    assert raised.value.errno == errno.EACCES
    assert raised.value.filename == refused
    assert isinstance(raised.value.__cause__, PermissionError)
    assert raised.value.stats is not None
    assert not (tmp_path / "venv").exists()


def test_with_replace_a_replaced_file_keeps_its_new_content_after_a_failure(tmp_path: Path) -> None:
    source = tmp_path / "cache"
    (source / "z").mkdir(parents=True)
    for index in range(20):
        (source / f"m{index:02d}.py").write_text(f"new {index}")
    (source / "z" / "fails.py").write_text("walked after the top directory's files")
    target = tmp_path / "venv"
    target.mkdir()
    (target / "m00.py").write_text("old 0")  # replaced by the call
    (target / "keep.txt").write_text("mine")
    backend = FailingBackend(errno.ENOSPC, after=20)  # the 20 top files (m00 replaced), then z/fails.py
    with pytest.raises(LinkFailedError) as raised:
        Linker("hardlink", env=None, replace=True, backend=backend).link_tree(source, target)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(os.listdir(target)) == ["keep.txt", "m00.py"]
    assert (target / "m00.py").read_text() == "new 0"
    assert raised.value.not_removed == ()


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_link_with_replace_onto_the_source_itself_is_refused(tmp_path: Path, mode: str) -> None:
    source = make_tree(tmp_path)
    file = source / "pkg0" / "mod0.py"
    content, inode = file.read_bytes(), file.stat().st_ino
    alias = tmp_path / "alias"
    alias.symlink_to(source / "pkg0")
    for target in (file, alias / "mod0.py"):
        with pytest.raises(ValueError, match="the target is the source itself") as raised:
            Linker(mode, env=None, replace=True).link(file, target)
        assert isinstance(raised.value, LinkprobeError)
    assert (file.read_bytes(), file.stat().st_ino) == (content, inode)
    assert not [name for name in os.listdir(source / "pkg0") if name.startswith(SCRATCH_PREFIX)]


class SymlinkFailingBackend(LinuxBackend):
    """symlink(2) fails with ENOSPC once ``after`` names outside the probe's were made."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.made = 0

    def symlink(self, source: str, target: str) -> None:
        if not os.path.basename(target).startswith(SCRATCH_PREFIX):
            if self.made >= self.after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source, None, target)
            self.made += 1
        super().symlink(source, target)


def test_symlink_mode_is_undone_too(tmp_path: Path) -> None:
    """Files made as symlinks to the cache, and the tree's own symlinks, are removed when
    their text is still the one the call wrote."""
    source = make_tree(tmp_path, files=40)
    target = tmp_path / "venv"
    with pytest.raises(LinkFailedError) as raised:
        Linker("symlink", env=None, backend=SymlinkFailingBackend(after=30)).link_tree(source, target)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.stats is not None
    assert raised.value.stats.symlinked + raised.value.stats.symlinks == 30
    assert raised.value.not_removed == ()
    assert not target.exists()


class NoSymlinksBackend(LinuxBackend):
    """A target that cannot hold symlinks, as exfat-fuse (ENOSYS), found after the probe."""

    def symlink(self, source: str, target: str) -> None:
        if not os.path.basename(target).startswith(SCRATCH_PREFIX):
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), source, None, target)
        super().symlink(source, target)


def test_the_symlink_warning_names_the_callers_variable_and_points_at_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_LINK_MODE", raising=False)
    source = make_tree(tmp_path)
    linker = Linker(env="UV_LINK_MODE", prefer=("copy",), workers=4, backend=NoSymlinksBackend())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        linker.link_tree(source, tmp_path / "venv")
    (warning,) = _fallback_warnings(caught)
    assert "UV_LINK_MODE=copy" in str(warning.message)
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert (tmp_path / "venv" / "bin" / "alias").read_bytes() == (source / "bin" / "tool").read_bytes()


class FallBackThenFullBackend(FailingBackend):
    """Hard links fail EXDEV after 10 files (auto falls back to copy); copies then fail
    ENOSPC after 10 more."""

    def __init__(self) -> None:
        super().__init__(errno.EXDEV, after=10)
        self.copies = 0

    def copy(self, source: str, target: str, hints: SourceHints | None = None) -> None:
        if not os.path.basename(target).startswith(SCRATCH_PREFIX):
            if self.copies >= 10:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source, None, target)
            self.copies += 1
        super().copy(source, target, hints)


def test_a_failure_after_a_fallback_undoes_both_modes(tmp_path: Path) -> None:
    source = make_tree(tmp_path, files=60)
    linker = Linker(env=None, prefer=("hardlink", "copy"), backend=FallBackThenFullBackend())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LinkFailedError) as raised:
            linker.link_tree(source, tmp_path / "venv")
    assert len(_fallback_warnings(caught)) == 1  # the fallback is still told, before the error
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.stats is not None
    assert (raised.value.stats.hardlinked, raised.value.stats.copied) == (10, 10)
    assert raised.value.not_removed == ()
    assert not (tmp_path / "venv").exists()
    assert [(f.from_mode, f.to_mode) for f in linker.fallbacks] == [(LinkMode.HARDLINK, LinkMode.COPY)]
