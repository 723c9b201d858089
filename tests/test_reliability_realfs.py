"""Reliability on real filesystems: hostile directories, full and quota-limited targets,
unprivileged users, and a 20,000-probe soak. Needs root and scratch mounts.

The figures printed with ``-s`` are the ones recorded in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fs_build import ScratchMounts
from _fs_fill import fill_space
from _fs_nobody import run_as_nobody
from _litter import find_litter

import linkprobe
from linkprobe import LinkMode, probe

pytestmark = pytest.mark.realfs

NOBODY = 65534
PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "LINKPROBE_MODE"}
    return subprocess.run(
        [sys.executable, "-m", "linkprobe", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def assert_one_error_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.startswith("linkprobe: error: "), stderr
    assert stderr.count("\n") == 1, stderr


@pytest.fixture(scope="module")
def nobody_code() -> Iterator[dict[str, str]]:
    """linkprobe copied where nobody can import it (/root is 0700), as test_scenarios does."""
    code = Path(tempfile.mkdtemp(prefix="linkprobe-code-", dir="/var/tmp"))
    shutil.copytree(Path(linkprobe.__file__).parent, code / "linkprobe")
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield {"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"}
    shutil.rmtree(code)


def as_nobody(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_as_nobody([PYTHON, "-m", "linkprobe", *args], env=env, timeout=60)


# ------------------------------------------------- a world-writable sticky directory

#: The racer, as nobody: plants ``.linkprobe-*`` names (symlinks to the victim, and
#: regular files) as fast as it can until the deadline. It keeps the newest 2,000 and
#: removes older ones itself, checking first that each is still there and still its own
#: inode; it prints what it saw and the names still planted.
_RACER = """
import collections, json, os, sys, time
directory, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
tags = ["src", "copy", "clone", "hardlink", "symlink"]
live = collections.OrderedDict()
gone, tampered, planted = [], [], 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    name = os.path.join(directory, f".linkprobe-{os.urandom(8).hex()}-{tags[planted % 5]}")
    try:
        if planted % 2:
            os.symlink(victim, name)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        continue
    live[name] = os.lstat(name).st_ino
    planted += 1
    if len(live) > 2000:
        old, ino = live.popitem(last=False)
        try:
            if os.lstat(old).st_ino != ino:
                tampered.append(old)
                continue
        except FileNotFoundError:
            gone.append(old)
            continue
        os.unlink(old)
print(json.dumps({"planted": planted, "live": live, "gone": gone, "tampered": tampered}))
"""


def test_sticky_directory_with_a_racer_planting_names(mounts: ScratchMounts) -> None:
    """Root probes a 01777 directory while nobody plants .linkprobe-* names in it.

    Nothing planted may be followed or removed, the victim stays as it was, and no
    scratch file of the probe remains. (The racer cannot guess the probe's 64-bit
    names; test_reliability.py plants exactly those names in-process, and swaps them
    between create and remove.)
    """
    base = mounts.tmpfs()  # plenty of inodes for the racer's names (the shared ext4 has far fewer)
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = base / "victim.txt"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o644)
    before = victim.stat()
    racer_result: list[subprocess.CompletedProcess[str]] = []
    racer = threading.Thread(
        target=lambda: racer_result.append(
            run_as_nobody([PYTHON, "-c", _RACER, str(shared), str(victim), "3"], timeout=60)
        )
    )
    racer.start()
    try:
        deadline = time.monotonic() + 10
        while not any(shared.iterdir()) and time.monotonic() < deadline:  # racer is running
            time.sleep(0.005)
        probes, started = 0, time.monotonic()
        while racer.is_alive():
            result = probe(shared, shared, cache=False)
            assert result.best is LinkMode.HARDLINK, result.to_dict()
            probes += 1
        elapsed = time.monotonic() - started
    finally:
        racer.join()
    done = racer_result[0]
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    planted: dict[str, int] = report["live"]
    after = victim.stat()
    assert victim.read_bytes() == b"precious\n"
    assert (after.st_nlink, after.st_mode, after.st_ino, after.st_mtime_ns) == (
        before.st_nlink,
        before.st_mode,
        before.st_ino,
        before.st_mtime_ns,
    )
    present = {os.path.join(shared, entry.name): entry.inode() for entry in os.scandir(shared)}
    missing = report["gone"] + [name for name in planted if name not in present]
    changed = report["tampered"] + [name for name, ino in planted.items() if name in present and present[name] != ino]
    ours = [name for name in present if name not in planted]
    for name in planted:  # the racer's names, not litter of ours
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    print(
        f"\nsticky race: {probes} probes by root in {elapsed:.1f} s while nobody planted {report['planted']} "
        f"names; planted names removed by someone else: {len(missing)}, replaced: {len(changed)}, "
        f"probe litter: {len(ours)}, victim unchanged: yes"
    )
    assert (missing, changed, ours) == ([], [], [])
    assert probes >= 50
    assert report["planted"] >= 10_000


# ------------------------------------------------------ full, quota-limited targets


def test_full_filesystem_target_exits_1_and_full_source_still_answers(mounts: ScratchMounts) -> None:
    """A full ext4: as a target (from another fs) no mode works, exit 1 with the reason;
    as a source it cannot take a scratch file, so the probe links from a file it holds."""
    full = mounts.small_ext4(8)
    cache, project = full / "cache", full / "project"
    cache.mkdir()
    project.mkdir()  # its directory block exists before the fill: a link needs no more
    (cache / "pkg.py").write_bytes(b"x = 1\n")
    assert fill_space(full) > 0
    done = run_cli(str(mounts.ext4()), str(project))
    assert done.returncode == 1
    assert done.stdout == ""
    assert_one_error_line(done.stderr)
    assert "no space left on target" in done.stderr
    result = probe(cache, project, cache=False)
    assert result.linked_from_existing
    assert result.linked_from == str(cache / "pkg.py")
    assert result.best is LinkMode.HARDLINK
    assert result.verdict(LinkMode.COPY).errno_name == "ENOSPC"
    done = run_cli(str(cache), str(project))
    assert (done.returncode, done.stdout, done.stderr) == (0, "hardlink\n", "")
    elsewhere = run_cli("--format", "json", str(cache), str(mounts.ext4()))
    assert elsewhere.returncode == 0, elsewhere.stderr
    document = json.loads(elsewhere.stdout)
    assert (document["mode"], document["linked_from_existing"]) == ("copy", True)
    assert find_litter([full]) == []
    mounts.release(full)


def test_quota_exceeded_target_exits_1(mounts: ScratchMounts) -> None:
    """EDQUOT from a btrfs qgroup limit (it applies to root too): exit 1, with the reason."""
    limited = mounts.quota_btrfs("2m")
    filled = fill_space(limited)
    assert 0 < filled <= 2 * 1024 * 1024
    done = run_cli("--format", "json", str(mounts.ext4()), str(limited))
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["modes"]["copy"]["errno"] == "EDQUOT"
    assert "disk quota exceeded on target" in document["error"]
    done = run_cli(str(mounts.ext4()), str(limited))
    assert done.returncode == 1
    assert_one_error_line(done.stderr)
    assert "disk quota exceeded on target" in done.stderr
    assert find_litter([limited]) == []
    mounts.release(limited)


# ---------------------------------------------------------- unprivileged ancestors


def test_unsearchable_and_unreadable_ancestors_as_nobody(mounts: ScratchMounts, nobody_code: dict[str, str]) -> None:
    """Root bypasses permissions, so these run as nobody. A parent that cannot be searched
    (no x) is bad input, exit 2; one that cannot be read (no r, x kept) is no obstacle."""
    base = mounts.ext4()
    locked = base / "locked"  # root's, 0700: nobody cannot look inside
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    blind = base / "blind"  # root's, 0711: nobody cannot list it but can pass through
    (blind / "cache").mkdir(parents=True)
    (blind / "cache" / "pkg.py").write_bytes(b"x = 1\n")
    blind.chmod(0o711)
    project = base / "project"
    project.mkdir()
    os.chown(project, NOBODY, NOBODY)
    cases = {
        "target": as_nobody(nobody_code, str(project), str(locked / "inner" / ".venv")),
        "source": as_nobody(nobody_code, str(locked / "inner"), str(project)),
    }
    for role, done in cases.items():
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert_one_error_line(done.stderr)
        assert f"permission denied: cannot look inside a parent of the {role}" in done.stderr
    done = as_nobody(nobody_code, "--format", "json", str(blind / "cache"), str(project))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["mode"] == "copy"  # root's file: protected_hardlinks refuses the link
    assert document["linked_from_existing"] is True
    assert find_litter([base]) == []


# ------------------------------------------------------------------------------ soak

_SOAK = """
import json, os, sys, time
from linkprobe import probe
source, target, warm_up, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

def fds():
    return len(os.listdir("/proc/self/fd"))

for _ in range(warm_up):
    probe(source, target, cache=False)
report = {"rss_kib": [rss_kib()], "fds": [fds()]}
started = time.perf_counter()
for done in range(1, runs + 1):
    probe(source, target, cache=False)
    if done % 5000 == 0:
        report["rss_kib"].append(rss_kib())
        report["fds"].append(fds())
report["seconds"] = time.perf_counter() - started
print(json.dumps(report))
"""
SOAK_RUNS = 20_000
WARM_UP = 1_000
#: Growth allowed after the warm-up. A leak of even one small object per probe would show
#: as ~20,000 x 100 B = 2 MiB; allocator noise (pymalloc arenas, the mount table re-read
#: per probe) stays well under 1 MiB.
RSS_SLACK_KIB = 1024


def test_soak_20000_uncached_probes_memory_and_fds_flat(mounts: ScratchMounts) -> None:
    source, target = mounts.tmpfs(), mounts.tmpfs()
    (source / "pkg.py").write_bytes(b"x = 1\n")
    done = subprocess.run(
        [sys.executable, "-c", _SOAK, str(source), str(target), str(WARM_UP), str(SOAK_RUNS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rss, fds = report["rss_kib"], report["fds"]
    print(
        f"\nsoak: {SOAK_RUNS} uncached probes after {WARM_UP} warm-up, {report['seconds']:.1f} s "
        f"({report['seconds'] / SOAK_RUNS * 1e6:.0f} us/probe); RSS KiB every 5,000: {rss}; "
        f"fds: {fds}; litter found: {len(find_litter([source, target]))}"
    )
    assert max(rss) - rss[0] < RSS_SLACK_KIB
    assert len(set(fds)) == 1
    assert find_litter([source, target]) == []
