"""pytest glue for the scratch filesystems of ``_fs_build.py``.

* ``mounts``: one session-wide ScratchMounts.  Its builders call ``need(kind)``
  first, so ``mounts.btrfs("a")`` skips the test when btrfs cannot be built
  here -- or fails it when LINKPROBE_REQUIRE_REAL_FS=1 (CI sets that, so the
  real-filesystem tests can never be skipped silently there).
* ``realfs`` marker: tests that need root and mounts.  They are skipped (or
  failed, as above) up front when this machine cannot mount at all.
* ``no_scratch_litter``: after every test, fail if a ``.linkprobe-*`` scratch
  file was left on the scratch mounts or in the test's tmp_path.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import settings

# Test machines are shared and their speed varies: a pure function that takes longer than
# hypothesis's 200 ms per example there is noise, not a finding (and a flaky CI). Speed is
# measured in benchmarks/, never here. Everything else stays as hypothesis's defaults.
settings.register_profile("linkprobe", deadline=None)
settings.load_profile("linkprobe")

# tests/ has no __init__.py, so the default "prepend" import mode puts this
# directory on sys.path; with --import-mode=importlib it does not, and
# ``import _fs_build`` and friends would fail.  Make it work either way.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from _fs_base import make_base_dir, sweep_stale  # noqa: E402
from _fs_build import ScratchMounts  # noqa: E402
from _fs_capability import need  # noqa: E402
from _litter import SCRATCH_PREFIX, find_litter  # noqa: E402

# The session's ScratchMounts, present only once some test asked for it.
_MOUNTS_KEY = pytest.StashKey[ScratchMounts]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realfs: needs root and real mounts (loop devices, tmpfs, FUSE)")
    config.addinivalue_line(
        "markers",
        f"allow_scratch_litter: do not fail the test for leftover {SCRATCH_PREFIX}* files",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("realfs") is not None:
        need("mount")


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


@pytest.fixture(scope="session")
def mounts(request: pytest.FixtureRequest) -> Iterator[ScratchMounts]:
    """Session-wide scratch filesystems, torn down at session end."""
    # Leftovers of sessions that were SIGKILLed (nothing else can clean those).
    for problem in sweep_stale():
        print(f"linkprobe: stale scratch cleanup: {problem}", file=sys.stderr)
    scratch = ScratchMounts(make_base_dir(), remove_base=True, require=need)
    request.config.stash[_MOUNTS_KEY] = scratch
    # pytest runs fixture teardown on KeyboardInterrupt but SIGTERM (CI job
    # cancellation, timeout) would kill us without any cleanup; turn it into a
    # KeyboardInterrupt while we own mounts.  atexit in ScratchMounts covers
    # the remaining "Python exits without teardown" cases.
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield scratch
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        del request.config.stash[_MOUNTS_KEY]
        problems = scratch.close()
        if problems:
            pytest.fail("scratch filesystem teardown problems:\n" + "\n".join(problems))


@pytest.fixture(autouse=True)
def no_scratch_litter(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves ``.linkprobe-*`` files behind.

    Scans the scratch mounts (only if some test already built them -- this
    never builds filesystems itself) and the test's tmp_path if the test uses
    it.  tmp_path is fetched here, during setup, so that it is torn down after
    this check runs.  (A tmp_path first requested at run time through
    request.getfixturevalue is not seen.)  Found litter is removed after
    reporting so later tests are not blamed for it.  The failure shows up as
    an error in the test's teardown.
    """
    tmp_path: Path | None = None
    if "tmp_path" in request.fixturenames:
        tmp_path = request.getfixturevalue("tmp_path")
    yield
    if request.node.get_closest_marker("allow_scratch_litter") is not None:
        return
    roots: list[Path] = []
    scratch = request.config.stash.get(_MOUNTS_KEY, None)
    if scratch is not None:
        roots.extend(scratch.roots())
    if tmp_path is not None:
        roots.append(tmp_path)
    litter = find_litter(roots)
    if litter:
        for path in litter:
            _remove_quietly(path)
        listing = "\n".join(f"  {path}" for path in litter)
        pytest.fail(f"test left {SCRATCH_PREFIX}* scratch files behind:\n{listing}", pytrace=False)


def _remove_quietly(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass
