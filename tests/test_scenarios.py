"""probe() and the CLI on real filesystems: every verdict equals what the kernel allows.

Each scenario states the expected verdict of every mode, written from the kernel's rules
(link(2), ioctl_ficlone(2)) and the measurements in shared/facts.md — not read back from
linkprobe. The table printed with ``-s`` is the one quoted in the issue notes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _mounts import ScratchMounts, fill_inodes, run_as_nobody

import linkprobe
from linkprobe import LinkMode, Probe, UnsupportedModeError, probe

pytestmark = pytest.mark.realfs

OK = None  # the mode works
# Linux 5.18 made FICLONE compare superblocks instead of mounts (fs/remap_range.c): on a
# bind mount of one ext4 it now reaches ext4, which answers EOPNOTSUPP; before, EXDEV.
_KERNEL = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
CLONE_ACROSS_BIND = errno.EOPNOTSUPP if _KERNEL >= (5, 18) else errno.EXDEV
EXDEV, EOPNOTSUPP, EPERM, ENOSYS = errno.EXDEV, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[ScratchMounts], tuple[Path, Path]]
    best: LinkMode | None
    # errno per mode, None = works
    clone: int | None
    hardlink: int | None
    symlink: int | None
    copy: int | None
    reason_has: str = ""


def same_dir(m: ScratchMounts) -> tuple[Path, Path]:
    directory = m.ext4()
    return directory, directory


def siblings(m: ScratchMounts) -> tuple[Path, Path]:
    return m.ext4(), m.ext4()


def bind_of_ext4(m: ScratchMounts) -> tuple[Path, Path]:
    source = m.ext4()
    (source / "project").mkdir()
    return source, m.bind(source / "project")


def ro_source(m: ScratchMounts) -> tuple[Path, Path]:
    cache = m.ext4()
    (cache / "wheels").mkdir()
    (cache / "wheels" / "a.py").write_bytes(b"print('cached')\n")
    return m.ro_bind(cache), m.ext4()


def deep_missing_target(m: ScratchMounts) -> tuple[Path, Path]:
    return m.ext4(), m.ext4() / "a" / "b" / "c" / ".venv"


def odd_names(m: ScratchMounts) -> tuple[Path, Path]:
    source = m.ext4() / "cache with spaces"
    target = m.ext4() / "prøject ñ 項目" / ".venv"
    source.mkdir()
    target.parent.mkdir()
    return source, target


def symlink_into_other_fs(m: ScratchMounts) -> tuple[Path, Path]:
    link = m.ext4() / "venv-link"
    link.symlink_to(m.btrfs("a"), target_is_directory=True)
    return m.ext4(), link


SCENARIOS = [
    Scenario("ext4 same dir", same_dir, LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK, "ext4 has no reflink"),
    Scenario("ext4 sibling dirs", siblings, LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK),
    Scenario("ext4 -> tmpfs", lambda m: (m.ext4(), m.tmpfs()), LinkMode.COPY, EXDEV, EXDEV, OK, OK, "different mounts"),
    Scenario("tmpfs -> ext4", lambda m: (m.tmpfs(), m.ext4()), LinkMode.COPY, EXDEV, EXDEV, OK, OK),
    Scenario("btrfs one subvolume", lambda m: (m.btrfs("a"), m.btrfs("a")), LinkMode.CLONE, OK, OK, OK, OK),
    Scenario(
        "btrfs subvolume a -> b",
        lambda m: (m.btrfs("a"), m.btrfs("b")),
        LinkMode.CLONE,
        OK,
        EXDEV,
        OK,
        OK,
        "subvolumes",
    ),
    Scenario("btrfs -> ext4", lambda m: (m.btrfs("a"), m.ext4()), LinkMode.COPY, EXDEV, EXDEV, OK, OK),
    Scenario("xfs reflink=1", lambda m: (m.xfs(True), m.xfs(True)), LinkMode.CLONE, OK, OK, OK, OK),
    Scenario("xfs reflink=0", lambda m: (m.xfs(False), m.xfs(False)), LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK),
    Scenario(
        "bind mount of same ext4", bind_of_ext4, LinkMode.COPY, CLONE_ACROSS_BIND, EXDEV, OK, OK, "never crosses mount"
    ),
    Scenario(
        "overlayfs -> same overlayfs", lambda m: (m.overlay(), m.overlay()), LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK
    ),
    Scenario("ext4 -> overlayfs", lambda m: (m.ext4(), m.overlay()), LinkMode.COPY, EXDEV, EXDEV, OK, OK),
    Scenario(
        "exfat (FUSE)",
        lambda m: (m.exfat(), m.exfat()),
        LinkMode.COPY,
        EOPNOTSUPP,
        EPERM,
        ENOSYS,
        OK,
        "exfat has no hard links",
    ),
    Scenario("read-only source (existing file)", ro_source, LinkMode.COPY, CLONE_ACROSS_BIND, EXDEV, OK, OK),
    Scenario("target missing 4 levels deep", deep_missing_target, LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK),
    Scenario("spaces and non-ASCII", odd_names, LinkMode.HARDLINK, EOPNOTSUPP, OK, OK, OK),
    Scenario("target symlink into btrfs", symlink_into_other_fs, LinkMode.COPY, EXDEV, EXDEV, OK, OK),
]

_TABLE: list[str] = []


def expected_errnos(scenario: Scenario) -> dict[LinkMode, int | None]:
    return {
        LinkMode.CLONE: scenario.clone,
        LinkMode.HARDLINK: scenario.hardlink,
        LinkMode.SYMLINK: scenario.symlink,
        LinkMode.COPY: scenario.copy,
    }


def observed_errnos(result: Probe) -> dict[LinkMode, int | None]:
    return {v.mode: v.errno for v in result.verdicts}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario, mounts: ScratchMounts) -> None:
    source, target = scenario.build(mounts)
    result = probe(source, target, cache=False)
    assert observed_errnos(result) == expected_errnos(scenario), result.to_dict()
    assert result.best is scenario.best
    # Every explicit verdict: the supported ones are returned as is, the rest raise.
    for mode, code in expected_errnos(scenario).items():
        if code is None:
            assert linkprobe.select(source, target, mode, env=None) is mode
        else:
            with pytest.raises(UnsupportedModeError) as raised:
                linkprobe.select(source, target, mode, env=None)
            assert raised.value.errno == code
            assert raised.value.reason
    reasons = " | ".join(v.reason for v in result.verdicts)
    assert scenario.reason_has in reasons
    failing = ", ".join(f"{v.mode.value} {v.errno_name}" for v in result.verdicts if not v.supported) or "-"
    _TABLE.append(f"| {scenario.name} | {result.best.value if result.best else 'none'} | {failing} |")


def test_print_scenario_table() -> None:
    """Runs after the scenarios (file order): prints the table for the notes (-s)."""
    if _TABLE:
        print("\n| scenario | best | failing modes |\n|---|---|---|\n" + "\n".join(_TABLE))


def test_same_device_and_mount_facts(mounts: ScratchMounts) -> None:
    source = mounts.ext4()
    (source / "project").mkdir()
    bind = mounts.bind(source / "project")
    result = probe(source, bind, cache=False)
    assert result.same_device
    assert not result.same_mount
    subvolumes = probe(mounts.btrfs("a"), mounts.btrfs("b"), cache=False)
    assert not subvolumes.same_device
    assert subvolumes.same_mount
    assert subvolumes.target.fstype == "btrfs"


def test_read_only_source_links_from_existing_file(mounts: ScratchMounts) -> None:
    source, target = ro_source(mounts)
    result = probe(source, target, cache=False)
    assert result.linked_from_existing
    assert result.linked_from is not None
    assert result.linked_from.endswith("a.py")
    assert result.source.read_only


def test_read_only_empty_source_reports_not_probed(mounts: ScratchMounts) -> None:
    empty = mounts.ext4()
    source = mounts.ro_bind(empty)
    result = probe(source, empty, cache=False)
    for mode in (LinkMode.CLONE, LinkMode.HARDLINK):
        verdict = result.verdict(mode)
        assert verdict.status is linkprobe.Status.NOT_PROBED
        assert "read-only" in verdict.reason
        assert "no regular file" in verdict.reason
    assert result.best is LinkMode.COPY


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_read_only_target_exits_1(mounts: ScratchMounts) -> None:
    target = mounts.ro_bind(mounts.ext4())
    done = run_cli(str(mounts.ext4()), str(target))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "read-only" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_no_free_inodes_exits_1(mounts: ScratchMounts) -> None:
    target = mounts.tiny_tmpfs()
    fill_inodes(target)
    done = run_cli(str(mounts.ext4()), str(target))
    assert done.returncode == 1
    assert "no space left on target" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_explicit_env_across_bind_mount(mounts: ScratchMounts) -> None:
    source = mounts.ext4()
    (source / "p").mkdir()
    target = mounts.bind(source / "p")
    done = run_cli(
        "--format", "env", "--env", "UV_LINK_MODE", str(source), str(target / ".venv"), env={"UV_LINK_MODE": "hardlink"}
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "different mounts" in done.stderr
    done = run_cli(
        "--format", "env", "--env", "UV_LINK_MODE", str(source), str(target / ".venv"), env={"UV_LINK_MODE": ""}
    )
    assert (done.returncode, done.stdout) == (0, "UV_LINK_MODE=copy\n")


def test_cli_json_on_btrfs_subvolumes(mounts: ScratchMounts) -> None:
    done = run_cli("--format", "json", str(mounts.btrfs("a")), str(mounts.btrfs("b")))
    document = json.loads(done.stdout)
    assert document["mode"] == "clone"
    assert document["explicit"] is False
    assert document["modes"]["hardlink"]["errno"] == "EXDEV"
    assert document["source"]["fstype"] == "btrfs"


def test_unprivileged_user_and_protected_hardlinks(mounts: ScratchMounts) -> None:
    """nobody probing a root-owned 0644 cache: link() EPERM (fs.protected_hardlinks=1)."""
    if Path("/proc/sys/fs/protected_hardlinks").read_text().strip() != "1":
        pytest.skip("fs.protected_hardlinks is off on this machine")
    base = mounts.ext4()
    cache = base / "cache"
    cache.mkdir()
    (cache / "pkg.py").write_bytes(b"x = 1\n")
    os.chmod(cache / "pkg.py", 0o644)
    project = base / "project"
    project.mkdir()
    os.chown(project, 65534, 65534)
    # The package must be importable by nobody: copy it beside the mount, world-readable.
    code = Path(tempfile.mkdtemp(prefix="linkprobe-code-", dir=base))
    shutil.copytree(Path(linkprobe.__file__).parent, code / "linkprobe")
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
    env = {"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"}
    auto = run_as_nobody([python, "-m", "linkprobe", "--format", "json", str(cache), str(project)], env=env)
    assert auto.returncode == 0, auto.stderr
    document = json.loads(auto.stdout)
    assert document["mode"] == "copy"
    assert document["linked_from_existing"] is True
    assert document["modes"]["hardlink"]["errno"] == "EPERM"
    assert "protected_hardlinks" in document["modes"]["hardlink"]["reason"]
    explicit = run_as_nobody([python, "-m", "linkprobe", "--mode", "hardlink", str(cache), str(project)], env=env)
    assert explicit.returncode == 1
    assert "the source's files belong to uid 0; fs.protected_hardlinks forbids linking them" in explicit.stderr
    shutil.rmtree(code)


def test_interrupted_probe_leaves_nothing(mounts: ScratchMounts, monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt in the middle of the attempts: every scratch file is removed."""
    source, target = mounts.ext4(), mounts.ext4()
    from linkprobe.linux import LinuxBackend

    class Interrupting(LinuxBackend):
        def hardlink(self, src: str, dst: str) -> None:
            super().hardlink(src, dst)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        probe(source, target, cache=False, backend=Interrupting())
    assert not [p for p in [*source.iterdir(), *target.iterdir()] if p.name.startswith(".linkprobe-")]
