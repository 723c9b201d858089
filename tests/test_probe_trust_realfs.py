"""The probe on real filesystems: its verdicts hold for the source's own files, a cached
answer follows mounts, and a timeout leaves nothing behind on a filesystem that answers.

Needs root (mounts, ``nobody`` through setpriv) and the scratch filesystems of tests/_fs_build.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _commands import run
from _fs_build import ScratchMounts
from _fs_nobody import run_as_nobody
from _litter import find_litter

import linkprobe
from linkprobe import LinkMode, probe

pytestmark = pytest.mark.realfs

NOBODY = 65534
PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks")
#: Prints probe(SOURCE, TARGET).to_dict() as JSON, as whoever runs it.
_PROBE_JSON = (
    "import json, sys; from linkprobe import probe; print(json.dumps(probe(sys.argv[1], sys.argv[2]).to_dict()))"
)


@pytest.fixture
def protected_hardlinks() -> Iterator[None]:
    """fs.protected_hardlinks=1 for the test (a global sysctl: put back as it was)."""
    before = PROTECTED_HARDLINKS.read_text()
    PROTECTED_HARDLINKS.write_text("1\n")
    try:
        yield
    finally:
        PROTECTED_HARDLINKS.write_text(before)


@pytest.fixture(scope="module")
def nobody_env() -> Iterator[dict[str, str]]:
    """linkprobe copied where nobody can import it (/root is 0700)."""
    code = Path(tempfile.mkdtemp(prefix="linkprobe-code-", dir="/var/tmp"))
    shutil.copytree(Path(linkprobe.__file__).parent, code / "linkprobe")
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield {"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"}
    shutil.rmtree(code)


def probe_as_nobody(env: dict[str, str], source: Path, target: Path) -> dict[str, object]:
    done = run_as_nobody([PYTHON, "-c", _PROBE_JSON, str(source), str(target)], env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def shared_cache(base: Path, *, files: bool = True) -> tuple[Path, Path]:
    """A CI-style shared cache: directories 1777, files root's 0644, the first files two
    levels down; and a project directory of nobody's."""
    cache = base / "cache"
    wheels = cache / "wheels-v5" / "pkg-1.0"
    wheels.mkdir(parents=True)
    for directory in (cache, cache / "wheels-v5", wheels):
        directory.chmod(0o1777)
    if files:
        for name in ("__init__.py", "core.py"):
            (wheels / name).write_bytes(b"x = 1\n" * 100)
            (wheels / name).chmod(0o644)
    project = base / "project"
    project.mkdir()
    os.chown(project, NOBODY, NOBODY)
    return cache, project


def modes(document: dict[str, object]) -> dict[str, dict[str, object]]:
    found = document["modes"]
    assert isinstance(found, dict)
    return found


# ----------------------------------------------------- verdicts hold for the real files


@pytest.mark.usefixtures("protected_hardlinks")
def test_shared_cache_as_nobody_is_not_hardlink_on_ext4(mounts: ScratchMounts, nobody_env: dict[str, str]) -> None:
    """nobody can make its own file in the 1777 cache and link it, but not root's files."""
    cache, project = shared_cache(mounts.ext4())
    document = probe_as_nobody(nobody_env, cache, project)
    assert document["best"] == "copy", document
    hardlink = modes(document)["hardlink"]
    assert (hardlink["status"], hardlink["errno"]) == ("unsupported", "EPERM")
    assert "the source's files belong to uid 0; fs.protected_hardlinks forbids linking them" in str(hardlink["reason"])
    checked = document["existing_file"]
    assert isinstance(checked, str)
    assert Path(checked).parent == cache / "wheels-v5" / "pkg-1.0"
    assert str(checked) in str(hardlink["reason"])
    # The links were made from a scratch file; the existing file was checked as well.
    assert (document["linked_from"], document["linked_from_existing"]) == (None, False)
    assert modes(document)["clone"]["errno"] == "EOPNOTSUPP"  # ext4: no reflink at all
    assert modes(document)["copy"]["status"] == "supported"
    assert find_litter([cache, project]) == []


@pytest.mark.usefixtures("protected_hardlinks")
def test_shared_cache_as_nobody_is_clone_on_btrfs(mounts: ScratchMounts, nobody_env: dict[str, str]) -> None:
    """A clone needs only read access to the source file: root's 0644 file clones."""
    cache, project = shared_cache(mounts.btrfs("a"))
    document = probe_as_nobody(nobody_env, cache, project)
    assert document["best"] == "clone", document
    assert modes(document)["clone"]["status"] == "supported"
    assert modes(document)["hardlink"]["errno"] == "EPERM"
    assert document["existing_file"] is not None
    assert find_litter([cache, project]) == []


@pytest.mark.usefixtures("protected_hardlinks")
def test_shared_cache_as_root_is_still_hardlink(mounts: ScratchMounts) -> None:
    """Root may link anybody's file (CAP_FOWNER): the check agrees with the scratch file."""
    cache, project = shared_cache(mounts.ext4())
    result = probe(cache, project, cache=False)
    assert result.best is LinkMode.HARDLINK
    assert result.existing_file is not None
    assert Path(result.existing_file).parent == cache / "wheels-v5" / "pkg-1.0"
    assert find_litter([cache, project]) == []


@pytest.mark.usefixtures("protected_hardlinks")
def test_empty_shared_cache_as_nobody_answers_as_before(mounts: ScratchMounts, nobody_env: dict[str, str]) -> None:
    """No file to check: the scratch file's verdicts stand."""
    cache, project = shared_cache(mounts.ext4(), files=False)
    document = probe_as_nobody(nobody_env, cache, project)
    assert document["best"] == "hardlink", document
    assert document["existing_file"] is None
    assert find_litter([cache, project]) == []


def test_existing_file_check_leaves_the_file_as_it_was(mounts: ScratchMounts) -> None:
    """Content, mode, owner, link count and mtime of the checked file are unchanged, on a
    filesystem where both clone and hardlink are attempted from it."""
    base = mounts.xfs(reflink=True)
    cache = base / "cache"
    cache.mkdir()
    wheel = cache / "big.whl"
    with open(wheel, "wb") as handle:
        handle.truncate(64 << 20)  # sparse, 64 MiB: a clone shares it, never copies it
    os.utime(wheel, (1_000_000_000, 1_000_000_000))
    before = os.stat(wheel)
    result = probe(cache, base / "venv", cache=False)
    after = os.stat(wheel)
    assert result.best is LinkMode.CLONE
    assert result.existing_file == str(wheel)
    assert result.verdict(LinkMode.HARDLINK).supported
    for field in ("st_mode", "st_uid", "st_gid", "st_nlink", "st_size", "st_mtime_ns", "st_ino"):
        assert getattr(after, field) == getattr(before, field), field
    assert find_litter([base]) == []


# ---------------------------------------------------------- a cached answer follows mounts


@contextlib.contextmanager
def mounted(*argv: str | os.PathLike[str]) -> Iterator[None]:
    """mount ARGV...; the last argument is the mount point, unmounted whatever happens."""
    run(["mount", *argv])
    try:
        yield
    finally:
        run(["umount", argv[-1]])


def test_tmpfs_over_the_target_between_two_probes(mounts: ScratchMounts) -> None:
    base = mounts.ext4()
    source, target = base / "cache", base / "venv"
    source.mkdir()
    target.mkdir()
    assert probe(source, target).best is LinkMode.HARDLINK
    with mounted("-t", "tmpfs", "linkprobe-over", target):
        again = probe(source, target)
        assert again.target.fstype == "tmpfs"
        assert again.verdict(LinkMode.HARDLINK).errno == errno.EXDEV
        assert again.best is LinkMode.COPY
    assert probe(source, target).best is LinkMode.HARDLINK  # unmounted: as before
    assert find_litter([base]) == []


def test_bind_mount_of_the_target_onto_itself(mounts: ScratchMounts) -> None:
    """Same st_dev and inode before and after: only the mount table tells the change."""
    base = mounts.ext4()
    source, target = base / "cache", base / "venv"
    source.mkdir()
    target.mkdir()
    first = probe(source, target)
    assert first.best is LinkMode.HARDLINK
    identity = os.stat(target)
    with mounted("--bind", target, target):
        assert (os.stat(target).st_dev, os.stat(target).st_ino) == (identity.st_dev, identity.st_ino)
        again = probe(source, target)
        assert again.target.mount_id != first.target.mount_id
        assert again.verdict(LinkMode.HARDLINK).errno == errno.EXDEV  # link(2) never crosses mounts
        assert again.best is LinkMode.COPY
    assert find_litter([base]) == []


def test_tmpfs_over_an_ancestor_of_a_missing_target(mounts: ScratchMounts) -> None:
    base = mounts.ext4()
    source, project = base / "cache", base / "project"
    source.mkdir()
    project.mkdir()
    target = project / "sub" / ".venv"  # does not exist: probed at project
    first = probe(source, target)
    assert (first.best, first.target.exists, first.target.probed) == (LinkMode.HARDLINK, False, str(project))
    with mounted("-t", "tmpfs", "linkprobe-over", project):
        again = probe(source, target)
        assert (again.best, again.target.fstype, again.target.exists) == (LinkMode.COPY, "tmpfs", False)
    assert find_litter([base]) == []


def test_a_forked_child_keeps_the_parents_mount_events(mounts: ScratchMounts) -> None:
    """A change the parent has not polled yet when it forks: the child's polls must not
    take it (the descriptor is shared after fork), and the child trusts no table read
    before the fork."""
    from linkprobe.mounts import mount_generation

    base = mounts.ext4()
    source, target = base / "cache", base / "venv"
    source.mkdir()
    target.mkdir()
    assert probe(source, target).best is LinkMode.HARDLINK
    before = mount_generation()
    with mounted("--bind", target, target):
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                answer = [mount_generation() != before, mount_generation() == mount_generation()]
                answer.append(probe(source, target).best is LinkMode.COPY)
                os.write(write, json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = json.loads(pipe.read() or "null")
        os.waitpid(child, 0)
        assert report == [True, True, True]
        assert mount_generation() != before  # the parent still saw the bind mount
        assert probe(source, target).best is LinkMode.COPY
    assert find_litter([base]) == []


# ------------------------------------------------------------- timeout: nothing left behind


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_tiny_timeout_on_a_healthy_disk_leaves_nothing(mounts: ScratchMounts, kind: str) -> None:
    """The CLI exits right after its deadline while the probe thread holds scratch files:
    exit waits for the thread's clean-up on a filesystem that answers."""
    base = mounts.tmpfs() if kind == "tmpfs" else mounts.ext4()
    source, target = base / "cache", base / "venv"
    source.mkdir()
    (source / "pkg.py").write_text("x = 1\n")
    env = {key: value for key, value in os.environ.items() if key != "LINKPROBE_MODE"}
    outputs = set()
    for _ in range(30):
        done = subprocess.run(
            [sys.executable, "-m", "linkprobe", "--timeout", "0.001", str(source), str(target)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
        assert find_litter([base]) == [], f"litter after run {_ + 1}"
    assert outputs <= {"copy\n", "clone\n", "hardlink\n"}
    assert not (base / "venv").exists()


def test_an_immutable_cache_is_seen_by_the_probe_and_copied_without_a_fallback(mounts: ScratchMounts) -> None:
    """chattr +i: link(2) refuses the cache's files with EPERM, for root too, while a new
    scratch file links. The probe sees it on the existing file, so the Linker copies from the
    first file on, with no fallback warning."""
    import warnings

    from linkprobe import Linker, LinkModeFallbackWarning

    base = mounts.ext4()
    cache, venv = base / "cache", base / "venv"
    (cache / "pkg").mkdir(parents=True)
    names = [cache / "pkg" / f"mod{index}.py" for index in range(5)]
    for path in names:
        path.write_text("x = 1\n")
    run(["chattr", "+i", *names])
    try:
        result = probe(cache, venv, cache=False)
        hardlink = result.verdict(LinkMode.HARDLINK)
        assert hardlink.errno == errno.EPERM
        assert "immutable or append-only" in hardlink.reason
        linker = Linker(env=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = linker.link_tree(cache, venv)
        assert [w for w in caught if issubclass(w.category, LinkModeFallbackWarning)] == []
        assert linker.mode is LinkMode.COPY
        assert stats.copied == len(names)
    finally:
        run(["chattr", "-i", *names])
    assert find_litter([base]) == []


@pytest.mark.usefixtures("protected_hardlinks")
def test_a_cache_nobody_cannot_read_has_no_working_mode(mounts: ScratchMounts, nobody_env: dict[str, str]) -> None:
    """Root's 0600 files in a 1777 cache: nobody's own scratch file copies and links fine,
    but no real file can be read, so neither copied nor cloned nor linked. Auto has no
    answer (the linker would fail on the first file), instead of a copy that cannot work."""
    cache, project = shared_cache(mounts.btrfs("a"))
    for path in cache.rglob("*.py"):
        path.chmod(0o600)
    document = probe_as_nobody(nobody_env, cache, project)
    assert document["best"] is None, document
    copy = modes(document)["copy"]
    assert copy["errno"] == "EACCES"
    assert str(copy["reason"]).startswith("the source's files cannot be read (permission denied on ")
    assert modes(document)["clone"]["errno"] == "EACCES"
    assert modes(document)["hardlink"]["errno"] == "EPERM"
    assert modes(document)["symlink"]["status"] == "supported"
    done = run_as_nobody([PYTHON, "-m", "linkprobe", str(cache), str(project)], env=nobody_env, timeout=60)
    assert done.returncode == 1
    assert "the source's files cannot be read" in done.stderr
    assert find_litter([cache, project]) == []


def test_unreadable_files_of_a_read_only_cache_and_a_source_file(
    mounts: ScratchMounts, nobody_env: dict[str, str]
) -> None:
    """The same read check where links are made from an existing file: a cache nobody
    cannot write to (root's 0755) and a source that is itself a file, both root's 0600."""
    base = mounts.ext4()
    cache = base / "cache"
    (cache / "pkg").mkdir(parents=True)
    wheel = cache / "pkg" / "mod.py"
    wheel.write_text("x = 1\n")
    wheel.chmod(0o600)
    project = base / "project"
    project.mkdir()
    os.chown(project, NOBODY, NOBODY)
    for source in (cache, wheel):
        document = probe_as_nobody(nobody_env, source, project)
        assert (document["linked_from"], document["linked_from_existing"]) == (str(wheel), True)
        assert document["best"] is None, document
        assert modes(document)["copy"]["errno"] == "EACCES"
        assert str(wheel) in str(modes(document)["copy"]["reason"])
    wheel.chmod(0o644)  # readable: copy works again
    assert probe_as_nobody(nobody_env, cache, project)["best"] == "copy"
    assert find_litter([base]) == []


def test_a_filesystem_mounted_inside_the_source_is_not_its_file(mounts: ScratchMounts) -> None:
    """The search does not enter a mount inside the source: a file there would fail to
    link with EXDEV and say nothing about the source's own files."""
    base = mounts.ext4()
    cache, venv = base / "cache", base / "venv"
    (cache / "inner").mkdir(parents=True)
    venv.mkdir()
    with mounted("-t", "tmpfs", "linkprobe-inner", cache / "inner"):
        (cache / "inner" / "elsewhere.py").write_text("x = 1\n")
        result = probe(cache, venv, cache=False)
        assert result.existing_file is None
        assert result.best is LinkMode.HARDLINK
        (cache / "own.py").write_text("x = 1\n")
        result = probe(cache, venv, cache=False)
        assert (result.existing_file, result.best) == (str(cache / "own.py"), LinkMode.HARDLINK)
    assert find_litter([base]) == []
