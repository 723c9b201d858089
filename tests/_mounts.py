"""Scratch filesystems for tests, always torn down again.

``ScratchMounts`` builds real filesystems (loop-mounted ext4/btrfs/XFS images,
tmpfs, exFAT through FUSE, bind and overlay mounts) under one base directory.
Filesystems are built lazily on first request and reused for the whole
session; every request returns a NEW empty directory on that filesystem so
tests never collide.  ``close()`` unmounts everything, detaches loop devices
and deletes images; it is idempotent, never raises, and is also registered
with ``atexit``.  ``sweep_stale()`` cleans up after sessions that were killed
too hard for either (SIGKILL).

This module deliberately does not import pytest at module level so it can be
used from plain scripts; only ``need()`` imports it, lazily.

Observed on Debian 12 / kernel 6.18 (file system type strings, i.e. the
mountinfo "fstype" field; psutil.disk_partitions(all=True) reports the same
strings because it reads the same kernel table):

    ext4 / small_ext4   ext4      (source /dev/loopN)
    btrfs               btrfs     (source /dev/loopN, subvol=/ for the mount)
    xfs                 xfs       (source /dev/loopN)
    tmpfs / tiny_tmpfs  tmpfs     (source linkprobe-tmpfs / linkprobe-tiny-tmpfs)
    overlay             overlay   (source linkprobe-overlay)
    exfat               fuseblk   -- plain "fuseblk", NO "fuseblk.exfat"
                                     subtype, because mount.exfat-fuse does not
                                     pass subtype=; the source is /dev/loopN.
    bind / ro_bind      the type of the source filesystem (e.g. ext4).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "KINDS",
    "SCRATCH_PREFIX",
    "CommandError",
    "FilesystemUnavailableError",
    "MountInfo",
    "ScratchMounts",
    "capability_missing",
    "fill_inodes",
    "fill_space",
    "find_litter",
    "find_mount",
    "loop_devices_for",
    "make_base_dir",
    "need",
    "read_mountinfo",
    "require_or_raise",
    "run",
    "run_as_nobody",
    "scratch_parent",
    "sweep_stale",
]

#: Prefix of the library's own scratch files; tests must never leave these.
SCRATCH_PREFIX = ".linkprobe-"
#: Prefix of base directories created by ``make_base_dir``.
BASE_PREFIX = "linkprobe-fs-"
#: Filesystem kinds understood by ``capability_missing`` ("mount" means the
#: generic ability to mount anything, which bind mounts need).
KINDS = ("mount", "tmpfs", "ext4", "btrfs", "xfs", "exfat", "overlay")

MIB = 1024 * 1024
EXT4_MIB = 64
BTRFS_MIB = 256  # mkfs.btrfs wants >= ~114 MiB; sparse, so size is free.
XFS_MIB = 320  # mkfs.xfs refuses filesystems smaller than 300 MiB.
EXFAT_MIB = 64
SESSION_TMPFS_SIZE = "256m"

# Root's PATH normally has the sbin directories, but a stripped-down CI
# environment may not; mkfs.* and losetup live there.
_TOOL_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")
_CAP_SYS_ADMIN = 21
_LOOP_WAIT_SECONDS = 5.0
_UMOUNT_ATTEMPTS = 5


class CommandError(RuntimeError):
    """An external command failed; the message carries the command and stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exit status {returncode}"
        super().__init__(f"command failed ({status}): {shlex.join(self.cmd)}\n{stderr.strip()}")


class FilesystemUnavailableError(RuntimeError):
    """This machine cannot build the requested filesystem kind."""


# --------------------------------------------------------------------------
# Small utilities


def which(tool: str) -> str | None:
    """Find *tool* on PATH, falling back to the usual sbin directories."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_TOOL_DIRS])
    return shutil.which(tool, path=search)


def run(cmd: Sequence[str | os.PathLike[str]], *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run *cmd*; raise ``CommandError`` (with command and stderr) on failure."""
    argv = [os.fspath(part) for part in cmd]
    exe = argv[0] if os.path.isabs(argv[0]) else which(argv[0])
    if exe is None:
        raise CommandError(argv, 127, f"{argv[0]}: not found")
    # LC_ALL=C keeps error messages stable and English for the exception text.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        return subprocess.run(
            [exe, *argv[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise CommandError(argv, exc.returncode, exc.stderr or exc.stdout or "") from None
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        raise CommandError(argv, None, err) from None


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    device: str  # "major:minor"
    root: str  # path inside the filesystem that is mounted here
    mountpoint: str
    options: str  # per-mount options (ro/rw, nosuid, ...)
    fstype: str
    source: str
    super_options: str  # per-superblock options


def _unescape(text: str) -> str:
    # The kernel octal-escapes space, tab, newline and backslash.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mountinfo() -> list[MountInfo]:
    """Parse /proc/self/mountinfo (in kernel order, i.e. creation order)."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.rstrip("\n").split(" ")
            sep = fields.index("-", 6)  # optional fields end at a lone "-"
            entries.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    device=fields[2],
                    root=_unescape(fields[3]),
                    mountpoint=_unescape(fields[4]),
                    options=fields[5],
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
                )
            )
    return entries


def _is_under(path: str, top: str) -> bool:
    return top in (path, "/") or path.startswith(top.rstrip("/") + "/")


def find_mount(path: str | os.PathLike[str]) -> MountInfo:
    """Return the mount that *path* lives on (the top one if mounts are stacked)."""
    real = os.path.realpath(path)
    best: MountInfo | None = None
    for entry in read_mountinfo():
        if _is_under(real, entry.mountpoint) and (best is None or len(entry.mountpoint) >= len(best.mountpoint)):
            best = entry
    if best is None:
        raise LookupError(f"no mount found for {real}")
    return best


def _mounts_under(top: Path) -> list[MountInfo]:
    """Mounts at or below *top*, deepest (and most recently stacked) first."""
    found = [(index, entry) for index, entry in enumerate(read_mountinfo()) if _is_under(entry.mountpoint, str(top))]
    found.sort(key=lambda item: (item[1].mountpoint.count("/"), item[0]), reverse=True)
    return [entry for _, entry in found]


def _is_mountpoint(path: Path) -> bool:
    return any(entry.mountpoint == str(path) for entry in read_mountinfo())


def loop_devices_for(image: Path) -> list[str]:
    """Loop devices backed by *image* (``losetup -j``; needs the file to exist)."""
    if not image.exists():
        return []
    out = run(["losetup", "-n", "-O", "NAME", "-j", image]).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _loop_devices_under(top: Path) -> list[str]:
    """Loop devices whose backing file is below *top*, even if it was deleted."""
    out = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"]).stdout
    if not out.strip():
        return []
    devices = []
    for dev in json.loads(out).get("loopdevices", []):
        back = str(dev.get("back-file") or "").removesuffix(" (deleted)")
        if back and _is_under(back, str(top)):
            devices.append(str(dev["name"]))
    return devices


# --------------------------------------------------------------------------
# Capability checks


def _filesystem_available(fstype: str) -> bool:
    """True if the kernel knows *fstype* or can autoload it as a module."""
    try:
        with open("/proc/filesystems", encoding="utf-8") as f:
            known = {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return False
    if fstype in known:
        return True
    # /proc/filesystems only lists loaded modules; mount(2) autoloads others.
    module = {"fuseblk": "fuse", "overlay": "overlayfs"}.get(fstype, fstype)
    return Path("/lib/modules", os.uname().release, "kernel", "fs", module).is_dir()


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return False


_KIND_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    # kind: (tools, kernel filesystem types, needs loop devices)
    "mount": ((), (), False),
    "tmpfs": ((), ("tmpfs",), False),
    "ext4": (("mkfs.ext4", "losetup"), ("ext4",), True),
    "btrfs": (("mkfs.btrfs", "btrfs", "losetup"), ("btrfs",), True),
    "xfs": (("mkfs.xfs", "losetup"), ("xfs",), True),
    "exfat": (("mkfs.exfat", "mount.exfat-fuse", "losetup"), ("fuseblk",), True),
    "overlay": ((), ("overlay",), False),
}


def capability_missing(kind: str) -> str | None:
    """Why *kind* cannot be built here, or None if it can.  Never mounts."""
    if kind not in _KIND_NEEDS:
        raise ValueError(f"unknown filesystem kind {kind!r}; expected one of {KINDS}")
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root to mount filesystems"
    if not _has_cap_sys_admin():
        return "needs CAP_SYS_ADMIN to mount filesystems (unprivileged container?)"
    tools, fstypes, needs_loop = _KIND_NEEDS[kind]
    for tool in ("mount", "umount", *tools):
        if which(tool) is None:
            return f"{tool} not found (install its package)"
    for fstype in fstypes:
        if not _filesystem_available(fstype):
            return f"kernel does not support {fstype} (not in /proc/filesystems)"
    if needs_loop and not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (loop devices unavailable)"
    if kind == "exfat" and not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (FUSE unavailable)"
    return None


def require_or_raise(kind: str) -> None:
    """Default ``require`` hook of ScratchMounts: raise FilesystemUnavailableError."""
    reason = capability_missing(kind)
    if reason is not None:
        raise FilesystemUnavailableError(f"{kind}: {reason}")


def need(kind: str) -> None:
    """pytest-aware ``require`` hook: skip the test if *kind* is unavailable.

    With LINKPROBE_REQUIRE_REAL_FS=1 (set in CI) the test fails instead, so CI
    cannot silently skip the real-filesystem tests.
    """
    import pytest  # lazy: keeps this module usable without pytest

    reason = capability_missing(kind)
    if reason is None:
        return
    if os.environ.get("LINKPROBE_REQUIRE_REAL_FS") == "1":
        pytest.fail(f"LINKPROBE_REQUIRE_REAL_FS=1 but {kind} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{kind} unavailable: {reason}")


# --------------------------------------------------------------------------
# Base directories


def scratch_parent() -> Path:
    """Where base directories go: /var/tmp unless that is a RAM filesystem.

    Images are sparse but still hold real data; on a tmpfs /tmp they would
    eat RAM, so prefer a disk-backed directory.
    """
    candidates = [Path("/var/tmp"), Path(tempfile.gettempdir())]
    existing = [c.resolve() for c in candidates if c.is_dir()]
    for candidate in existing:
        if find_mount(candidate).fstype not in ("tmpfs", "ramfs"):
            return candidate
    if not existing:
        raise FileNotFoundError("no /var/tmp or temp directory")
    return existing[0]


def make_base_dir(parent: Path | None = None) -> Path:
    """Create a fresh base directory; its name embeds our pid for sweep_stale()."""
    parent = parent if parent is not None else scratch_parent()
    base = Path(tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{os.getpid()}-", dir=parent))
    # mkdtemp makes 0700; 0755 lets run_as_nobody() tests reach scratch dirs.
    base.chmod(0o755)
    return base.resolve()


def _pid_alive(pid: int) -> bool:
    """True if *pid* is a running process (zombies count as dead).

    A SIGKILLed session can linger as a zombie until its parent reaps it,
    and os.kill(pid, 0) still succeeds on zombies.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave its files alone
    state = stat.rpartition(")")[2].split()[0]  # the command name may contain spaces
    return state not in ("Z", "X")


def _unmount_tree(top: Path, errors: list[str]) -> bool:
    """Unmount everything at or below *top*, deepest first; lazily if stuck.

    Returns True if everything went away without a lazy unmount.
    """
    for attempt in range(_UMOUNT_ATTEMPTS):
        entries = _mounts_under(top)
        if not entries:
            return True
        for entry in entries:
            # Busy or already gone: either way, look again after a pause.
            with contextlib.suppress(CommandError):
                run(["umount", entry.mountpoint])
        if _mounts_under(top):
            time.sleep(0.05 * (attempt + 1))
    for entry in _mounts_under(top):
        # Last resort: detach from the namespace now, finish when idle.
        try:
            run(["umount", "-l", entry.mountpoint])
            errors.append(f"had to lazily unmount busy {entry.mountpoint}")
        except CommandError as exc:
            errors.append(str(exc))
    for entry in _mounts_under(top):
        errors.append(f"still mounted: {entry.mountpoint} ({entry.fstype})")
    return False


def _detach_loops(devices: Iterable[str], errors: list[str]) -> None:
    for device in devices:
        try:
            run(["losetup", "-d", device])
        except CommandError as exc:
            # Already detached (autoclear raced us) is fine; anything else
            # shows up when the caller re-checks.
            if "No such device" not in exc.stderr:
                errors.append(str(exc))


def _wait_for_no_loops(
    lister: Callable[[], list[str]], what: str, errors: list[str], wait: float = _LOOP_WAIT_SECONDS
) -> None:
    """Detach matching loop devices and poll until none is left.

    Detaching a device that is still open (a FUSE daemon that is just
    exiting, or a mount -o loop autoclear in flight) only schedules the
    detach, so give the kernel up to *wait* seconds.  After a lazy unmount
    waiting is pointless: the device goes when the last user lets go.
    """
    deadline = time.monotonic() + wait
    attempted = False
    while True:
        try:
            left = lister()
        except CommandError as exc:
            errors.append(str(exc))
            return
        if not left:
            return
        if time.monotonic() > deadline and attempted:
            errors.append(f"loop devices still attached to {what}: {', '.join(left)}")
            return
        _detach_loops(left, errors)
        attempted = True
        time.sleep(0.1)


def _safe_rmtree(path: Path, errors: list[str]) -> None:
    """rmtree that refuses to cross into anything still mounted.

    shutil.rmtree does not stop at mount points, so deleting a directory that
    still has a bind mount below it would delete the bind source's files.
    """
    if not path.exists() and not path.is_symlink():
        return
    still = _mounts_under(path)
    if still:
        errors.append(f"not removing {path}: {still[0].mountpoint} is still mounted")
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"could not remove {path}: {exc}")


def _clean_base(base: Path, errors: list[str], loop_wait: float = _LOOP_WAIT_SECONDS) -> None:
    """Unmount, detach and delete everything below *base*, then *base* itself."""
    clean = _unmount_tree(base, errors)
    try:
        _wait_for_no_loops(lambda: _loop_devices_under(base), str(base), errors, loop_wait if clean else 0)
    except CommandError as exc:  # losetup missing entirely
        errors.append(str(exc))
    _safe_rmtree(base, errors)


def sweep_stale(parent: Path | None = None) -> list[str]:
    """Clean base dirs left by sessions that died without cleanup (SIGKILL).

    Only touches ``linkprobe-fs-<pid>-*`` directories whose pid is gone, so
    concurrently running sessions are left alone.  Returns errors seen.
    """
    errors: list[str] = []
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return errors
    parent = parent if parent is not None else scratch_parent()
    pattern = re.compile(re.escape(BASE_PREFIX) + r"(\d+)-")
    for base in sorted(parent.glob(f"{BASE_PREFIX}*")):
        match = pattern.match(base.name)
        if match is None or not base.is_dir() or _pid_alive(int(match.group(1))):
            continue
        _clean_base(base.resolve(), errors)
    return errors


# --------------------------------------------------------------------------
# Filling filesystems


def fill_inodes(path: Path, *, max_files: int = 1_000_000) -> int:
    """Create empty files in *path* until ENOSPC; return how many were made.

    Refuses filesystems with more than *max_files* inodes so a typo cannot
    fill the root filesystem.
    """
    total = os.statvfs(path).f_files
    if total > max_files:
        raise ValueError(f"refusing to fill {path}: {total} inodes > max_files={max_files}")
    count = 0
    while count <= max_files:
        try:
            fd = os.open(path / f"fill-{count:07d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return count
            raise
        os.close(fd)
        count += 1
    raise RuntimeError(f"{path} still has inodes after {max_files} files")


#: What a full filesystem (or an exhausted quota) answers a write with.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def fill_space(path: Path, *, max_bytes: int = 1 << 30) -> int:
    """Write one file in *path* until ENOSPC (or EDQUOT, a quota_btrfs() limit);
    return bytes written.

    Returns 0 if the file cannot even be created (no inodes left).  Refuses
    filesystems larger than *max_bytes*.
    """
    st = os.statvfs(path)
    if st.f_blocks * st.f_frsize > max_bytes:
        raise ValueError(f"refusing to fill {path}: larger than max_bytes={max_bytes}")
    try:
        fd = os.open(path / "fill-data", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as exc:
        if exc.errno in _FULL:
            return 0
        raise
    written = 0
    chunk = 1 * MIB
    try:
        # Halve the chunk on ENOSPC so the last partial block gets used too.
        while chunk >= 1:
            try:
                written += os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno not in _FULL:
                    raise
                chunk //= 2
            if written > max_bytes:
                raise RuntimeError(f"{path} still has space after {max_bytes} bytes")
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
    finally:
        os.close(fd)
    return written


# --------------------------------------------------------------------------
# Litter check and running as nobody


def fuse_daemon_pid(mountpoint: Path) -> int:
    """The pid of the FUSE daemon serving *mountpoint* (found by its command line)."""
    wanted = os.fsencode(Path(mountpoint).resolve())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:  # the process exited meanwhile
            continue
        if wanted in argv and b"fuse" in os.path.basename(argv[0]):
            return int(entry.name)
    raise LookupError(f"no FUSE daemon found for {mountpoint}")


def find_litter(roots: Iterable[Path], prefix: str = SCRATCH_PREFIX) -> list[Path]:
    """Files or directories under *roots* whose name starts with *prefix*.

    Does not descend into other mount points below a root (they are either
    roots themselves or none of our business) nor into litter directories.
    """
    root_list = list(dict.fromkeys(Path(r) for r in roots))
    mountpoints = {entry.mountpoint for entry in read_mountinfo()}
    found: list[Path] = []
    for root in root_list:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            keep = []
            for name in dirnames:
                child = os.path.join(dirpath, name)
                if name.startswith(prefix):
                    found.append(Path(child))
                elif child not in mountpoints:
                    keep.append(name)
            dirnames[:] = keep
            found.extend(Path(dirpath, n) for n in filenames if n.startswith(prefix))
    return found


def run_as_nobody(argv: Sequence[str | os.PathLike[str]], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run *argv* as nobody:nogroup with no supplementary groups.

    The environment is minimal but keeps PATH and PYTHONPATH (so
    ``python -m linkprobe`` still resolves); ``env=`` in *kw* is merged on
    top.  Defaults: capture_output=True, text=True, check=False, cwd="/"
    (nobody usually cannot enter root's cwd).  Raises FileNotFoundError if
    neither setpriv nor runuser exists.
    """
    setpriv = which("setpriv")
    if setpriv is not None:
        prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    else:
        runuser = which("runuser")
        if runuser is None:
            raise FileNotFoundError("neither setpriv nor runuser is installed")
        prefix = [runuser, "-u", "nobody", "-g", "nogroup", "--"]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C.UTF-8",
        # nobody cannot write __pycache__ next to root-owned sources anyway.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(kw.pop("env", None) or {})
    check = bool(kw.pop("check", False))
    options: dict[str, Any] = {"capture_output": True, "text": True, "cwd": "/"}
    options.update(kw)
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [*prefix, *(os.fspath(arg) for arg in argv)], check=check, env=env, **options
    )
    return result


# --------------------------------------------------------------------------
# ScratchMounts


@dataclass
class _Mount:
    """One mount we own, recorded BEFORE it is built so partial builds clean up."""

    label: str
    mountpoint: Path
    shared: bool
    image: Path | None = None
    extra_dirs: list[Path] = field(default_factory=list)


class ScratchMounts:
    """Lazily built scratch filesystems under *base*; see the module docstring.

    *require* is called with a kind from ``KINDS`` before anything is built;
    the default raises FilesystemUnavailableError, conftest passes ``need`` so the
    test is skipped (or failed in CI).  With *remove_base* the base directory
    itself is deleted by ``close()``.  A lock makes calls from several threads
    safe, though pytest itself does not need that.
    """

    def __init__(
        self,
        base: Path,
        *,
        remove_base: bool = False,
        require: Callable[[str], None] = require_or_raise,
    ) -> None:
        self.base = Path(base).resolve()
        if re.search(r"[\s,:\\]", str(self.base)):
            # The path ends up inside mount option strings (overlay).
            raise ValueError(f"base path must not contain whitespace , : or \\: {self.base}")
        self.base.mkdir(parents=True, exist_ok=True)
        self.remove_base = remove_base
        self.timings: dict[str, float] = {}  # label -> seconds to build
        self._require = require
        self._lock = threading.RLock()
        self._mounts: list[_Mount] = []
        self._shared: dict[str, _Mount] = {}
        self._names = itertools.count(1)
        self._errors: list[str] = []
        self._closed = False
        self._owner_pid = os.getpid()
        self._images = self.base / "images"
        self._mnt = self.base / "mnt"
        atexit.register(self._atexit)

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> ScratchMounts:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- public filesystem builders ---------------------------------------

    def ext4(self) -> Path:
        """Fresh dir on the session's loop-mounted ext4 (64 MiB)."""
        return self._fresh_dir(self._shared_mount("ext4", "ext4", self._build_ext4))

    def ext4_other(self) -> Path:
        """Fresh dir on a second, distinct ext4 filesystem."""
        return self._fresh_dir(self._shared_mount("ext4-other", "ext4", self._build_ext4))

    def tmpfs(self) -> Path:
        """Fresh dir on the session's tmpfs."""
        return self._fresh_dir(self._shared_mount("tmpfs", "tmpfs", self._build_tmpfs))

    def btrfs(self, subvolume: str = "a") -> Path:
        """Fresh dir inside subvolume *subvolume* of the session's btrfs.

        Each subvolume has its own st_dev; the same name always means the same
        subvolume.  Names are simple words; "d-<digits>" is reserved for
        btrfs_root() directories.
        """
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", subvolume) or re.fullmatch(r"d-\d+|lost\+found", subvolume):
            raise ValueError(f"bad subvolume name {subvolume!r}")
        top = self._shared_mount("btrfs", "btrfs", self._build_btrfs)
        with self._lock:
            subvol = top / subvolume
            if not subvol.exists():
                run(["btrfs", "subvolume", "create", subvol])
            if subvol.stat().st_ino != 256:  # every btrfs subvolume root is inode 256
                raise RuntimeError(f"{subvol} exists but is not a btrfs subvolume")
            return self._fresh_dir(subvol)

    def btrfs_root(self) -> Path:
        """Fresh dir in the top-level subvolume of the session's btrfs."""
        return self._fresh_dir(self._shared_mount("btrfs", "btrfs", self._build_btrfs))

    def xfs(self, reflink: bool) -> Path:
        """Fresh dir on a session XFS; reflink=True and False are separate filesystems."""
        label = f"xfs-reflink{int(reflink)}"
        return self._fresh_dir(self._shared_mount(label, "xfs", lambda m: self._build_xfs(m, reflink=reflink)))

    def exfat(self) -> Path:
        """Fresh dir on the session's exFAT, mounted through FUSE (fuseblk)."""
        return self._fresh_dir(self._shared_mount("exfat", "exfat", self._build_exfat))

    def own_exfat(self) -> Path:
        """Fresh dir on a NEW exFAT FUSE mount, for tests that stop its daemon
        (see fuse_daemon_pid); lives until ``release()`` or ``close()``."""
        return self._fresh_dir(self._own_mount("own_exfat", "exfat", self._build_exfat))

    def overlay(self) -> Path:
        """Fresh dir inside the merged directory of the session's overlayfs."""
        return self._fresh_dir(self._shared_mount("overlay", "overlay", self._build_overlay))

    def tiny_tmpfs(self, nr_inodes: int = 64, size: str = "256k") -> Path:
        """Fresh dir on a NEW tiny tmpfs (for fill_inodes / fill_space).

        Lives until ``release()`` or ``close()``.  The root directory and the
        returned directory each use one of *nr_inodes*.
        """
        if nr_inodes < 3 or not re.fullmatch(r"\d+[kmg]?", size):
            raise ValueError("need nr_inodes >= 3 and size like '256k'")
        return self._fresh_dir(
            self._own_mount(
                "tiny_tmpfs",
                "tmpfs",
                lambda m: self._mount_tmpfs(m, "linkprobe-tiny-tmpfs", size, nr_inodes),
            )
        )

    def small_ext4(self, size_mb: int = 16) -> Path:
        """Fresh dir on a NEW small ext4 (to fill it, or hit per-file link limits)."""
        if size_mb < 2:
            raise ValueError("size_mb must be >= 2")
        return self._fresh_dir(self._own_mount("small_ext4", "ext4", lambda m: self._build_ext4(m, size_mb=size_mb)))

    def quota_btrfs(self, limit: str = "2m") -> Path:
        """Fresh dir in a subvolume with a btrfs qgroup limit of *limit*, on a NEW btrfs.

        For EDQUOT ("disk quota exceeded"): fill it with fill_space().  btrfs qgroups
        limit every user, root included.  (User quotas on ext4 would need a kernel
        with CONFIG_QFMT_V2, which this machine's 6.18 kernel lacks, and root
        ignores them anyway.)  Lives until ``release()`` or ``close()``.
        """
        if not re.fullmatch(r"\d+[kmg]", limit):
            raise ValueError("limit must look like '2m'")
        top = self._own_mount("quota_btrfs", "btrfs", self._build_btrfs)
        with self._lock:
            run(["btrfs", "quota", "enable", top])
            run(["btrfs", "subvolume", "create", top / "limited"])
            run(["btrfs", "qgroup", "limit", limit, top / "limited"])
            return self._fresh_dir(top / "limited")

    def bind(self, source_dir: Path) -> Path:
        """Bind-mount *source_dir* at a new mount point and return that mount point."""
        source = Path(source_dir).resolve(strict=True)
        mountpoint = self._own_mount("bind", "mount", lambda m: self._build_bind(m, source))
        return mountpoint

    def ro_bind(self, source_dir: Path) -> Path:
        """Like bind(), but the new mount is read-only (writes raise EROFS)."""
        source = Path(source_dir).resolve(strict=True)
        return self._own_mount("ro_bind", "mount", lambda m: self._build_bind(m, source, ro=True))

    # -- bookkeeping -------------------------------------------------------

    def roots(self) -> list[Path]:
        """Every mount point this instance currently has mounted, oldest first."""
        with self._lock:
            mounted = {entry.mountpoint for entry in read_mountinfo()}
            return [m.mountpoint for m in self._mounts if str(m.mountpoint) in mounted]

    def release(self, path: Path) -> list[str]:
        """Tear down early the per-call mount (tiny_tmpfs, small_ext4, bind,
        ro_bind) that contains *path*.  Returns teardown errors."""
        real = Path(path).resolve()
        with self._lock:
            for m in reversed(self._mounts):
                if not m.shared and _is_under(str(real), str(m.mountpoint)):
                    self._mounts.remove(m)
                    errors: list[str] = []
                    self._teardown(m, errors)
                    return errors
        raise ValueError(f"{path} is not inside a per-call scratch mount")

    def close(self) -> list[str]:
        """Tear everything down in reverse creation order; never raises.

        Returns the problems seen (empty list if all went well).  Calling it
        again is harmless and returns an empty list.
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            errors = self._errors
            self._errors = []
            while self._mounts:
                mount = self._mounts.pop()
                try:
                    self._teardown(mount, errors)
                except Exception as exc:  # keep going: the rest must still go
                    errors.append(f"tearing down {mount.label}: {exc!r}")
            self._shared.clear()
            try:
                if self.remove_base:
                    # Per-mount teardown already waited for loop devices.
                    _clean_base(self.base, errors, loop_wait=0)
                else:
                    for sub in (self._mnt, self._images, self.base / "overlay"):
                        _safe_rmtree(sub, errors)
            except Exception as exc:
                errors.append(f"removing {self.base}: {exc!r}")
            atexit.unregister(self._atexit)
            return errors

    def _atexit(self) -> None:
        # A forked child inherits atexit handlers; it must not unmount the
        # parent's filesystems when it exits.
        if os.getpid() != self._owner_pid:
            return
        for problem in self.close():
            print(f"linkprobe scratch cleanup: {problem}", file=sys.stderr)

    # -- internals ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ScratchMounts is closed")

    def _new_record(self, label: str, shared: bool) -> _Mount:
        name = label if shared else f"{label}-{next(self._names)}"
        mountpoint = self._mnt / name
        mountpoint.mkdir(parents=True, mode=0o755)
        record = _Mount(label=name, mountpoint=mountpoint, shared=shared)
        self._mounts.append(record)
        return record

    def _build(self, record: _Mount, build: Callable[[_Mount], None]) -> None:
        started = time.monotonic()
        try:
            build(record)
        except BaseException:
            # Undo the partial build right away so a retry starts clean.
            self._mounts.remove(record)
            self._teardown(record, self._errors)
            raise
        self.timings[record.label] = time.monotonic() - started

    def _shared_mount(self, label: str, kind: str, build: Callable[[_Mount], None]) -> Path:
        self._require(kind)
        with self._lock:
            self._check_open()
            record = self._shared.get(label)
            if record is None:
                record = self._new_record(label, shared=True)
                self._build(record, build)
                self._shared[label] = record
            return record.mountpoint

    def _own_mount(self, label: str, kind: str, build: Callable[[_Mount], None]) -> Path:
        self._require(kind)
        with self._lock:
            self._check_open()
            record = self._new_record(label, shared=False)
            self._build(record, build)
            return record.mountpoint

    def _fresh_dir(self, parent: Path) -> Path:
        with self._lock:
            path = parent / f"d-{next(self._names):04d}"
            path.mkdir(mode=0o755)
            return path

    def _new_image(self, record: _Mount, size_mb: int) -> Path:
        self._images.mkdir(exist_ok=True)
        image = self._images / f"{record.label}.img"
        record.image = image  # recorded first: close() deletes it whatever happens
        with open(image, "xb") as f:
            f.truncate(size_mb * MIB)  # sparse: costs no disk until written
        return image

    def _build_ext4(self, record: _Mount, size_mb: int = EXT4_MIB) -> None:
        image = self._new_image(record, size_mb)
        run(["mkfs.ext4", "-q", "-F", image])
        # mount -o loop sets the loop device to autoclear on umount; close()
        # still checks losetup -j in case it did not.
        run(["mount", "-t", "ext4", "-o", "loop", image, record.mountpoint])

    def _build_btrfs(self, record: _Mount) -> None:
        image = self._new_image(record, BTRFS_MIB)
        run(["mkfs.btrfs", "-q", "-f", image])
        run(["mount", "-t", "btrfs", "-o", "loop", image, record.mountpoint])

    def _build_xfs(self, record: _Mount, *, reflink: bool) -> None:
        image = self._new_image(record, XFS_MIB)
        run(["mkfs.xfs", "-q", "-f", "-m", f"reflink={int(reflink)}", image])
        run(["mount", "-t", "xfs", "-o", "loop", image, record.mountpoint])

    def _build_exfat(self, record: _Mount) -> None:
        image = self._new_image(record, EXFAT_MIB)
        run(["mkfs.exfat", image])
        # mount.exfat-fuse opens the block device itself (the kernel mounts
        # it as "fuseblk", which needs a real block device), and mount's
        # "-o loop" only sets up loop devices for in-kernel filesystems.  So
        # attach the loop device ourselves; it has no autoclear, and close()
        # detaches it via losetup -j on the image.
        device = run(["losetup", "-f", "--show", image]).stdout.strip()
        # The helper daemonizes (stdio -> /dev/null, cwd -> /), so run()
        # returns as soon as the mount is up.
        run(["mount.exfat-fuse", device, record.mountpoint])

    def _mount_tmpfs(self, record: _Mount, source: str, size: str, nr_inodes: int = 0) -> None:
        options = f"size={size},mode=0755"
        if nr_inodes:
            options += f",nr_inodes={nr_inodes}"
        # A recognisable source name makes our tmpfs easy to spot in mountinfo.
        run(["mount", "-t", "tmpfs", "-o", options, source, record.mountpoint])

    def _build_tmpfs(self, record: _Mount) -> None:
        self._mount_tmpfs(record, "linkprobe-tmpfs", SESSION_TMPFS_SIZE)

    def _build_overlay(self, record: _Mount) -> None:
        # On this machine (kernel 6.18, root on ext4) overlay happily uses
        # upper/work dirs on the root ext4 under the base dir.  Some hosts
        # refuse that (e.g. when the base dir is itself on overlayfs, as in
        # Docker), so fall back to putting them on a private tmpfs.
        backing = self.base / "overlay"
        record.extra_dirs.append(backing)  # deleted after the overlay is unmounted
        try:
            self._mount_overlay(record, backing)
        except CommandError:
            holder = self._new_record("overlay-backing", shared=True)
            # Keep the tmpfs before the overlay so reverse teardown is right.
            self._mounts.remove(holder)
            self._mounts.insert(self._mounts.index(record), holder)
            self._mount_tmpfs(holder, "linkprobe-overlay-backing", "64m")
            self._mount_overlay(record, holder.mountpoint)

    def _mount_overlay(self, record: _Mount, backing: Path) -> None:
        dirs = {name: backing / name for name in ("lower", "upper", "work")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        options = ",".join(f"{name}dir={path}" for name, path in dirs.items())
        run(["mount", "-t", "overlay", "-o", options, "linkprobe-overlay", record.mountpoint])

    def _build_bind(self, record: _Mount, source: Path, *, ro: bool = False) -> None:
        run(["mount", "--bind", source, record.mountpoint])
        if ro:
            # The kernel ignores "ro" when creating a bind mount (legacy mount
            # API); only a remount of the bind makes it read-only.
            run(["mount", "-o", "remount,bind,ro", record.mountpoint])
        if os.stat(source).st_dev != os.stat(record.mountpoint).st_dev:
            raise RuntimeError(f"bind mount of {source} has a different st_dev")

    def _teardown(self, record: _Mount, errors: list[str]) -> None:
        clean = _unmount_tree(record.mountpoint, errors)
        if record.image is not None:
            # Detach before deleting: losetup -j cannot find a deleted image.
            image = record.image
            wait = _LOOP_WAIT_SECONDS if clean else 0
            _wait_for_no_loops(lambda: loop_devices_for(image), str(image), errors, wait)
            try:
                image.unlink(missing_ok=True)
            except OSError as exc:
                errors.append(f"could not delete {image}: {exc}")
        for path in [record.mountpoint, *record.extra_dirs]:
            _safe_rmtree(path, errors)
