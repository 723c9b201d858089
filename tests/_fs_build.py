"""Scratch filesystems for tests, always torn down again.

``ScratchMounts`` builds real filesystems (loop-mounted ext4/btrfs/XFS images,
tmpfs, exFAT through FUSE, bind and overlay mounts) under one base directory.
Filesystems are built lazily on first request and reused for the whole
session; every request returns a NEW empty directory on that filesystem so
tests never collide.  ``close()`` unmounts everything, detaches loop devices
and deletes images; it is idempotent, never raises, and is also registered
with ``atexit``.  ``_fs_base.sweep_stale()`` cleans up after sessions that were
killed too hard for either (SIGKILL).

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
import itertools
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from _commands import CommandError, run
from _fs_capability import require_or_raise
from _fs_teardown import LOOP_WAIT_SECONDS, clean_base, loop_devices_for, safe_rmtree, unmount_tree, wait_for_no_loops
from _mountinfo import is_under, read_mountinfo

__all__ = ["ScratchMounts", "fuse_daemon_pid"]

MIB = 1024 * 1024
EXT4_MIB = 512  # sparse; room for the real installs (uv, pnpm, bun) that share it in one session
BTRFS_MIB = 256  # mkfs.btrfs wants >= ~114 MiB; sparse, so size is free.
XFS_MIB = 320  # mkfs.xfs refuses filesystems smaller than 300 MiB.
EXFAT_MIB = 64
SESSION_TMPFS_SIZE = "256m"


def fuse_daemon_pid(mountpoint: Path) -> int:
    """The pid of the FUSE daemon serving *mountpoint* (found by its command line)."""
    wanted = os.fsencode(Path(mountpoint).resolve())
    # A with-block: returning from inside a bare scandir loop leaves the iterator open.
    with os.scandir("/proc") as entries:
        for entry in entries:
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
        """Fresh dir on the session's loop-mounted ext4 (EXT4_MIB)."""
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
                if not m.shared and is_under(str(real), str(m.mountpoint)):
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
                    clean_base(self.base, errors, loop_wait=0)
                else:
                    for sub in (self._mnt, self._images, self.base / "overlay"):
                        safe_rmtree(sub, errors)
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
        clean = unmount_tree(record.mountpoint, errors)
        if record.image is not None:
            # Detach before deleting: losetup -j cannot find a deleted image.
            image = record.image
            wait = LOOP_WAIT_SECONDS if clean else 0
            wait_for_no_loops(lambda: loop_devices_for(image), str(image), errors, wait)
            try:
                image.unlink(missing_ok=True)
            except OSError as exc:
                errors.append(f"could not delete {image}: {exc}")
        for path in [record.mountpoint, *record.extra_dirs]:
            safe_rmtree(path, errors)
