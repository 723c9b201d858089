"""Tearing scratch filesystems down: unmount deepest first, detach loop devices, delete files.

Every function here appends what went wrong to an ``errors`` list and carries on, so that
one stuck mount does not leave the rest behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from _commands import CommandError, run
from _mountinfo import is_under, mounts_under

__all__ = [
    "LOOP_WAIT_SECONDS",
    "clean_base",
    "loop_devices_for",
    "loop_devices_under",
    "safe_rmtree",
    "unmount_tree",
    "wait_for_no_loops",
]

LOOP_WAIT_SECONDS = 5.0
_UMOUNT_ATTEMPTS = 5


def loop_devices_for(image: Path) -> list[str]:
    """Loop devices backed by *image* (``losetup -j``; needs the file to exist)."""
    if not image.exists():
        return []
    out = run(["losetup", "-n", "-O", "NAME", "-j", image]).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def loop_devices_under(top: Path) -> list[str]:
    """Loop devices whose backing file is below *top*, even if it was deleted."""
    out = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"]).stdout
    if not out.strip():
        return []
    devices = []
    for dev in json.loads(out).get("loopdevices", []):
        back = str(dev.get("back-file") or "").removesuffix(" (deleted)")
        if back and is_under(back, str(top)):
            devices.append(str(dev["name"]))
    return devices


def unmount_tree(top: Path, errors: list[str]) -> bool:
    """Unmount everything at or below *top*, deepest first; lazily if stuck.

    Returns True if everything went away without a lazy unmount.
    """
    for attempt in range(_UMOUNT_ATTEMPTS):
        entries = mounts_under(top)
        if not entries:
            return True
        for entry in entries:
            # Busy or already gone: either way, look again after a pause.
            with contextlib.suppress(CommandError):
                run(["umount", entry.mountpoint])
        if mounts_under(top):
            time.sleep(0.05 * (attempt + 1))
    for entry in mounts_under(top):
        # Last resort: detach from the namespace now, finish when idle.
        try:
            run(["umount", "-l", entry.mountpoint])
            errors.append(f"had to lazily unmount busy {entry.mountpoint}")
        except CommandError as exc:
            errors.append(str(exc))
    for entry in mounts_under(top):
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


def wait_for_no_loops(
    lister: Callable[[], list[str]], what: str, errors: list[str], wait: float = LOOP_WAIT_SECONDS
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


def safe_rmtree(path: Path, errors: list[str]) -> None:
    """rmtree that refuses to cross into anything still mounted.

    shutil.rmtree does not stop at mount points, so deleting a directory that
    still has a bind mount below it would delete the bind source's files.
    """
    if not path.exists() and not path.is_symlink():
        return
    still = mounts_under(path)
    if still:
        errors.append(f"not removing {path}: {still[0].mountpoint} is still mounted")
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"could not remove {path}: {exc}")


def clean_base(base: Path, errors: list[str], loop_wait: float = LOOP_WAIT_SECONDS) -> None:
    """Unmount, detach and delete everything below *base*, then *base* itself."""
    clean = unmount_tree(base, errors)
    try:
        wait_for_no_loops(lambda: loop_devices_under(base), str(base), errors, loop_wait if clean else 0)
    except CommandError as exc:  # losetup missing entirely
        errors.append(str(exc))
    safe_rmtree(base, errors)
