"""Real installers (uv, pnpm) for the integration tests, prepared once and then used offline.

The network is needed once, to fetch pinned wheels and pnpm with a primed store. CI does that in
``.ci/run`` by running this file as a script and exports where it put things::

    python tests/_clients.py WHEELHOUSE_DIR PNPM_KIT_DIR

The tests read ``LINKPROBE_WHEELHOUSE`` / ``LINKPROBE_PNPM``; when those are unset (a local
``pytest`` run) the session fixtures call the same functions into a temporary directory. After
that, every uv and pnpm run in the tests is offline.

The other half of this module proves what an installer did, without asking linkprobe: the
installed file has the cache file's inode (hardlink), its own inode mapping the cache file's
blocks (clone, via FIEMAP), or its own inode and its own blocks (copy).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from _extents import extents, fiemap_supported, overlaps_any_block, shares_extents
from _fs_build import ScratchMounts

#: Small pure wheels with several files each; the uv tests install exactly these.
WHEELS = ("packaging==26.4", "idna==3.20", "six==1.17.0")
WHEEL_NAMES = tuple(spec.partition("==")[0] for spec in WHEELS)
#: pnpm 11 and later read settings from ``pnpm_config_*`` variables and ignore ``npm_config_*``
#: ones (measured: see test_clients_pnpm.py).
PNPM_VERSION = "12.21.0"
#: semver has ~50 files and no dependencies; three of them are big enough for the FIEMAP check.
NPM_DEPENDENCIES = {"semver": "7.7.3"}
PNPM_IMPORT_METHOD_ENV = "pnpm_config_package_import_method"

#: Files below this size may be stored inline in btrfs metadata (max_inline defaults to 2048
#: bytes) and then have no extent that could be shared; only bigger files prove a clone.
CLONE_PROOF_MIN_BYTES = 8192
_REQUIRE_ENV = "LINKPROBE_REQUIRE_REAL_FS"


class ClientUnavailableError(RuntimeError):
    """A real client (uv, pnpm) or its offline data cannot be prepared here."""


# -- preparation (network, once) ----------------------------------------------------------------


def prepare_wheelhouse(dest: Path) -> None:
    """Download the pinned wheels (binary only: uv must not build anything offline)."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps"]
    _check([*pip, "--dest", str(dest), *WHEELS], "pip download")


def prepare_pnpm_kit(dest: Path) -> None:
    """pnpm itself, a project with its lockfile, and the store plus metadata cache it needs.

    pnpm 12 verifies the lockfile against its metadata cache before installing, so an offline
    install needs both the store (package files) and the cache (package metadata).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise ClientUnavailableError("npm not found (install Node.js)")
    _check([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(dest), f"pnpm@{PNPM_VERSION}"])
    project = dest / "project"
    project.mkdir(parents=True, exist_ok=True)
    dependencies = ", ".join(f'"{name}": "{version}"' for name, version in NPM_DEPENDENCIES.items())
    (project / "package.json").write_text(
        f'{{"name": "linkprobe-pnpm-demo", "version": "1.0.0", "private": true, "dependencies": {{{dependencies}}}}}\n'
    )
    _check(
        [str(pnpm_bin(dest)), "install", *pnpm_dirs(dest / "store", dest / "cache")],
        "pnpm install (priming the store)",
        cwd=project,
        env=client_env({"HOME": str(dest / "home")}),
    )
    # Only package.json and the lockfile are reused; node_modules links into this very store.
    shutil.rmtree(project / "node_modules")


def _check(
    argv: Sequence[str], what: str = "", *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClientUnavailableError(f"{what or argv[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


# -- where things are -------------------------------------------------------------------------


def uv_bin() -> Path:
    """The uv pinned in the test dependencies (the ``uv`` wheel ships its binary)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise ClientUnavailableError("uv is not installed (pip install -e '.[test]')") from None
    return Path(find_uv_bin())


def pnpm_bin(kit: Path) -> Path:
    return kit / "node_modules" / ".bin" / "pnpm"


def pnpm_dirs(store: Path, cache: Path) -> list[str]:
    return ["--store-dir", str(store), "--cache-dir", str(cache), "--reporter", "append-only"]


def check_wheelhouse(path: Path) -> Path:
    uv_bin()  # the wheels are for uv: without it, the same skip (or CI failure)
    for name in WHEEL_NAMES:
        if not list(path.glob(f"{name}-*.whl")):
            raise ClientUnavailableError(f"no {name} wheel in {path}")
    return path


def check_pnpm_kit(path: Path) -> Path:
    for needed in (pnpm_bin(path), path / "project" / "pnpm-lock.yaml", path / "store", path / "cache"):
        if not needed.exists():
            raise ClientUnavailableError(f"{needed} missing: run python tests/_clients.py WHEELHOUSE PNPM_KIT")
    return path


def unavailable(reason: str) -> NoReturn:
    """Skip the test locally; fail it in CI, where every real-client test must run."""
    import pytest  # lazy: this file also runs as a script, without pytest

    if os.environ.get(_REQUIRE_ENV) == "1":
        pytest.fail(f"{_REQUIRE_ENV}=1 but a real client is unavailable: {reason}", pytrace=False)
    pytest.skip(f"real client unavailable: {reason}")


def from_env_or_prepare(
    env_name: str, scratch: Path, prepare: Callable[[Path], None], check: Callable[[Path], Path]
) -> Path:
    """The directory named by ``env_name`` (prepared by .ci/run), else one prepared now in ``scratch``."""
    given = os.environ.get(env_name)
    try:
        if given:
            return check(Path(given))
        prepare(scratch)
        return check(scratch)
    except (ClientUnavailableError, OSError) as exc:
        unavailable(str(exc))


# -- running things ---------------------------------------------------------------------------

#: Variables of the developer's shell that would change what uv or pnpm do.
_CLIENT_PREFIXES = ("UV_", "npm_config_", "NPM_CONFIG_", "pnpm_config_", "PNPM_CONFIG_")


def client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without uv/pnpm settings, so only what a test sets reaches the installer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_PREFIXES) and k != "VIRTUAL_ENV"}
    # Our interpreter and the pinned uv first: recipes call plain `python` and `uv`.
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.update(extra or {})
    return env


def uv_env(wheelhouse: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Offline uv that ignores user config, never downloads a Python, and uses our interpreter."""
    env = client_env(
        {
            "UV_NO_CONFIG": "1",
            "UV_OFFLINE": "1",
            "UV_FIND_LINKS": str(wheelhouse),
            "UV_PYTHON": sys.executable,
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )
    env["PATH"] = os.pathsep.join([str(uv_bin().parent), env["PATH"]])
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(a) for a in argv], env=dict(env), cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def linkprobe_env(source: Path, target: Path, name: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``linkprobe --format env --env NAME SOURCE TARGET``, as the recipes run it."""
    return run([sys.executable, "-m", "linkprobe", "--format", "env", "--env", name, source, target], env=env)


def parse_env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines, as GITHUB_ENV files and GitLab dotenv reports hold them."""
    env = {}
    for line in filter(None, text.splitlines()):
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line!r}"
        assert key, f"no name before = in {line!r}"
        env[key] = value
    return env


_FALLBACK = re.compile(r"failed to|falling back", re.IGNORECASE)


def fallback_lines(output: str) -> list[str]:
    """uv's warnings when a link mode fails: "Failed to hardlink files; falling back to full copy." """
    return [line for line in output.splitlines() if _FALLBACK.search(line)]


# -- what did the installer do? -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How each installed file relates to its cache file."""

    kinds: Counter[str]
    nlinks: tuple[int, ...]

    @property
    def mode(self) -> str:
        """The one mode that explains every file, or ``mixed``."""
        kinds = set(self.kinds)
        if kinds == {"hardlink"}:
            return "hardlink"
        if "clone" in kinds and kinds <= {"clone", "own-inode-small"}:
            return "clone"
        if "copy" in kinds and kinds <= {"copy", "own-inode-small"}:
            return "copy"
        return "mixed"

    def summary(self) -> str:
        counts = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        return f"{sum(self.kinds.values())} files: {counts}; st_nlink {min(self.nlinks)}..{max(self.nlinks)}"


def classify(origin: Path, installed: Path) -> str:
    """hardlink, clone, copy, or own-inode-small (a small file: clone and copy look alike)."""
    assert installed.read_bytes() == origin.read_bytes(), f"{installed} differs from {origin}"
    a, b = origin.stat(), installed.stat()
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return "hardlink"
    if not (fiemap_supported(origin) and fiemap_supported(installed)):
        # tmpfs has no FIEMAP and no reflink: an own inode there can only be a copy.
        return "copy"
    if b.st_size < CLONE_PROOF_MIN_BYTES:
        return "own-inode-small"
    if shares_extents(origin, installed):
        return "clone"
    if any(extent.shared for extent in extents(installed)):
        return "mixed"  # shares blocks, but not (only) the cache file's
    # Block numbers only compare within one filesystem (a bind mount keeps st_dev).
    if a.st_dev == b.st_dev and overlaps_any_block(origin, installed):
        return "mixed"
    return "copy"


def outcome(pairs: Iterable[tuple[Path, Path]]) -> Outcome:
    kinds: Counter[str] = Counter()
    nlinks = []
    for origin, installed in pairs:
        kinds[classify(origin, installed)] += 1
        nlinks.append(installed.stat().st_nlink)
    assert kinds, "no installed files to check"
    return Outcome(kinds, tuple(nlinks))


@dataclass(frozen=True)
class Pair:
    name: str
    build: Callable[[ScratchMounts], tuple[Path, Path]]  # (where the cache goes, the project)
    expected: str


def bind_pair(mounts: ScratchMounts) -> tuple[Path, Path]:
    # A CI build directory bind-mounted from the same ext4 that holds the cache.
    cache = mounts.ext4()
    (cache / "project").mkdir()
    return cache, mounts.bind(cache / "project")


#: Cache/project pairs with the mode the kernel's rules give: link(2) never crosses mounts (EXDEV,
#: even between bind mounts or btrfs subvolumes of one filesystem); FICLONE needs one
#: filesystem that has reflink (btrfs, XFS reflink=1; not ext4, not tmpfs).
PAIRS = [
    Pair("same ext4", lambda m: (m.ext4(), m.ext4()), "hardlink"),  # ext4 has no reflink
    Pair("bind mount of one ext4", bind_pair, "copy"),  # link() gives EXDEV across mounts
    Pair("btrfs subvolumes a -> b", lambda m: (m.btrfs("a"), m.btrfs("b")), "clone"),  # EXDEV for link()
    Pair("xfs reflink=1", lambda m: (m.xfs(reflink=True), m.xfs(reflink=True)), "clone"),
    Pair("ext4 cache -> tmpfs project", lambda m: (m.ext4(), m.tmpfs()), "copy"),
]


def uv_pairs(cache: Path, venv: Path) -> list[tuple[Path, Path]]:
    """(file in uv's unpacked-wheel cache, the same file in site-packages) for our wheels."""
    site = next(venv.glob("lib/python3*/site-packages"))
    pairs = []
    for installed in sorted(site.rglob("*")):
        relative = installed.relative_to(site)
        if not installed.is_file() or relative.parts[0].endswith(".dist-info") or "__pycache__" in relative.parts:
            continue  # uv writes RECORD/INSTALLER itself; only package files come from the cache
        origins = list(cache.glob(f"archive-v*/*/{relative}"))
        assert len(origins) == 1, f"{relative}: cache holds {origins}"
        pairs.append((origins[0], installed))
    big = [p for p in pairs if p[1].stat().st_size >= CLONE_PROOF_MIN_BYTES]
    assert len(big) >= 5, f"too few big files to prove a clone: {big}"
    return pairs


def pnpm_pairs(store: Path, project: Path) -> list[tuple[Path, Path]]:
    """(content-addressed store file, the same file in node_modules/.pnpm) for every package file."""
    pairs = []
    virtual_store = project / "node_modules" / ".pnpm"
    for installed in sorted(virtual_store.glob("*/node_modules/*/**/*")):
        if installed.is_symlink() or not installed.is_file():
            continue  # links between packages, not imported files
        if installed.relative_to(virtual_store).parts.count("node_modules") > 1:
            continue  # pnpm writes a package's own node_modules/.bin shims; they are not in the store
        digest = hashlib.sha512(installed.read_bytes()).hexdigest()
        # The store names each file by the SHA-512 of its content (executables get "-exec").
        origins = [p for p in store.glob(f"v*/files/{digest[:2]}/{digest[2:]}*") if p.is_file()]
        assert len(origins) == 1, f"{installed}: store holds {origins}"
        pairs.append((origins[0], installed))
    big = [p for p in pairs if p[1].stat().st_size >= CLONE_PROOF_MIN_BYTES]
    assert len(big) >= 3, f"too few big files to prove a clone: {big}"
    return pairs


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/_clients.py WHEELHOUSE_DIR PNPM_KIT_DIR", file=sys.stderr)
        return 2
    wheelhouse, kit = (Path(arg).resolve() for arg in argv)
    # Start clean: no wheels of older pins, no half-prepared kit from an interrupted run.
    shutil.rmtree(wheelhouse, ignore_errors=True)
    shutil.rmtree(kit, ignore_errors=True)
    prepare_wheelhouse(wheelhouse)
    prepare_pnpm_kit(kit)
    print(f"wheels in {check_wheelhouse(wheelhouse)}; pnpm {PNPM_VERSION} and its store in {check_pnpm_kit(kit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
