"""bun for the integration tests: the binary from the npm registry and a primed cache, used offline.

The npm package ``@oven/bun-linux-x64`` ships the bun binary itself (the ``bun`` package only
downloads it in a postinstall script). CI prepares it once in ``.ci/run``::

    python tests/_bunkit.py BUN_KIT_DIR

and exports ``LINKPROBE_BUN``; without it a session fixture prepares the kit into a temporary
directory (network needed once). After that every bun run in the tests is ``--offline``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from _clients import NPM_DEPENDENCIES, ClientUnavailableError, client_env

BUN_VERSION = "1.4.4"
BUN_PACKAGE = "@oven/bun-linux-x64"


def bun_bin(kit: Path) -> Path:
    return kit / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"


def prepare_bun_kit(dest: Path) -> None:
    """bun itself, a project with its bun.lock, and the package cache an offline install needs."""
    npm = shutil.which("npm")
    if npm is None:
        raise ClientUnavailableError("npm not found (install Node.js)")
    _check(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(dest), f"{BUN_PACKAGE}@{BUN_VERSION}"]
    )
    project = dest / "project"
    project.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "linkprobe-bun-demo", "version": "1.0.0", "private": True, "dependencies": NPM_DEPENDENCIES}
    (project / "package.json").write_text(json.dumps(manifest) + "\n")
    env = client_env({"HOME": str(dest / "home"), "BUN_INSTALL_CACHE_DIR": str(dest / "cache")})
    _check([str(bun_bin(dest)), "install"], cwd=project, env=env)
    shutil.rmtree(project / "node_modules")


def check_bun_kit(path: Path) -> Path:
    for needed in (bun_bin(path), path / "project" / "bun.lock", path / "cache"):
        if not needed.exists():
            raise ClientUnavailableError(f"{needed} missing: run python tests/_bunkit.py BUN_KIT")
    return path


def _check(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClientUnavailableError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def kit_from_env_or(scratch: Path) -> Path:
    """LINKPROBE_BUN's kit, else one prepared now in ``scratch`` (skip or, in CI, fail if impossible)."""
    from _clients import from_env_or_prepare

    return from_env_or_prepare("LINKPROBE_BUN", scratch, prepare_bun_kit, check_bun_kit)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/_bunkit.py BUN_KIT_DIR", file=sys.stderr)
        return 2
    kit = Path(argv[0]).resolve()
    shutil.rmtree(kit, ignore_errors=True)
    prepare_bun_kit(kit)
    print(f"bun {BUN_VERSION} and its offline cache in {check_bun_kit(kit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
