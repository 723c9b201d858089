"""``--for uv`` in a real Docker engine: the GitLab Docker executor's layout, and a BuildKit cache mount.

The Docker executor runs each job in a container with the project bind-mounted at
``/builds/GROUP/PROJECT`` and the cache on a volume. This test starts its own ``dockerd`` (Debian's
docker.io; no registry is reachable, so the image is a debootstrap'ed Debian imported with
``docker import``), runs ``linkprobe --for uv`` and ``uv sync --locked`` in such a container, and
stops the engine afterwards.

- uv's cache on a named volume at /cache: two mounts, link(2) fails with EXDEV: ``copy``.
- uv's cache inside the project's mount (``$CI_PROJECT_DIR/.uv-cache``): ``hardlink``.
- ``RUN --mount=type=cache,target=/root/.cache/uv`` under ``DOCKER_BUILDKIT=1``: docker.io 20.10
  builds with the engine's own BuildKit, no buildx needed (a ``# syntax=`` line would pull a
  frontend image, so the Dockerfile has none): the cache mount is its own mount: ``copy``.

Offline: the pinned uv binary, linkprobe's source and the wheelhouse (at its host path, which
uv.lock records) are bind-mounted read-only; the container has no network.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _clients import (
    ClientUnavailableError,
    check_wheelhouse,
    fallback_lines,
    from_env_or_prepare,
    outcome,
    prepare_wheelhouse,
    run,
    unavailable,
    uv_bin,
    uv_env,
    uv_pairs,
)

pytestmark = pytest.mark.realfs

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "linkprobe-test/bookworm:minbase"
_SUITE = "bookworm"


def prepare_rootfs(dest: Path) -> None:
    """Debian minbase with python3 and python3-venv (what uv needs to make a venv)."""
    if shutil.which("debootstrap") is None:
        raise ClientUnavailableError("debootstrap not found (apt-get install debootstrap)")
    argv = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", _SUITE, str(dest)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1200)
    if done.returncode != 0:
        raise ClientUnavailableError(f"debootstrap failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")


def check_rootfs(path: Path) -> Path:
    if not (path / "usr" / "bin" / "python3").exists():
        raise ClientUnavailableError(f"{path} is not a Debian root with python3: run debootstrap (see .ci/run)")
    return path


def _version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.split(",")[0]  # "Docker version 20.10.24+dfsg1"


def _client_of(dockerd: str) -> str | None:
    """The docker client of the same release as ``dockerd``. Another client on PATH (a newer one
    in /usr/local/bin) may refuse DOCKER_BUILDKIT=1 builds without its buildx plugin, where the
    20.10 client hands them to the engine's own BuildKit."""
    candidates = [str(Path(dockerd).parent.parent / "bin" / "docker"), shutil.which("docker")]
    wanted = _version(dockerd)
    return next((c for c in candidates if c and os.access(c, os.X_OK) and _version(c) == wanted), None)


class Engine:
    """A dockerd of our own: its own data root, exec root and socket, no bridge network."""

    def __init__(self, base: Path, data: Path) -> None:
        self.base = base
        self.host = f"unix://{base / 'docker.sock'}"
        dockerd = shutil.which("dockerd")
        self.docker = _client_of(dockerd) if dockerd else None
        if dockerd is None or self.docker is None:
            unavailable("dockerd and its docker client not found (apt-get install docker.io)")
        self.log = (base / "dockerd.log").open("w")
        self.process = subprocess.Popen(
            [
                dockerd,
                "--data-root", str(data),
                "--exec-root", str(base / "exec"),
                "--pidfile", str(base / "dockerd.pid"),
                "--host", self.host,
                "--bridge", "none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self("info", check=False).returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        unavailable(f"dockerd did not start: {(self.base / 'dockerd.log').read_text()[-3000:]}")

    def __call__(self, *argv: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        assert self.docker is not None
        done = subprocess.run(
            [self.docker, "--host", self.host, *argv],
            input=stdin.decode("latin-1") if stdin is not None else None,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(argv)} failed: {done.stdout}{done.stderr}")
        return done

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # dockerd stops its containerd and unmounts layers
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.geteuid() != 0:
        unavailable("dockerd needs root")
    rootfs = from_env_or_prepare(
        "LINKPROBE_ROOTFS", tmp_path_factory.mktemp("rootfs") / _SUITE, prepare_rootfs, check_rootfs
    )
    base = Path(f"/run/linkprobe-docker-{os.getpid()}")  # a short path: the socket name has a limit
    base.mkdir()
    # Images and named volumes on the disk that holds the test's projects (/run is a tmpfs): a
    # volume and a bind mount of one filesystem are still two mounts, as on a CI host.
    data = Path(tempfile.mkdtemp(prefix="linkprobe-docker-data-", dir="/var/tmp"))
    started = Engine(base, data)
    try:
        started.wait_ready()
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
        assert started.docker is not None
        subprocess.run(
            [started.docker, "--host", started.host, "import", "-", IMAGE],
            input=tar.stdout,
            check=True,
            capture_output=True,
        )
        yield started
    finally:
        started.stop()
        leftover = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False)
        for path in (base, data):
            for target in reversed([t for t in leftover.stdout.splitlines() if t.startswith(str(path))]):
                subprocess.run(["umount", "-l", target], check=False)
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return from_env_or_prepare(
        "LINKPROBE_WHEELHOUSE", tmp_path_factory.mktemp("wh"), prepare_wheelhouse, check_wheelhouse
    )


def locked_project(parent: Path, wheelhouse: Path) -> Path:
    project = parent / "group" / "project"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "docker-demo"\nversion = "0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["packaging", "idna", "six"]\n\n[tool.uv]\npackage = false\n'
    )
    locked = run(["uv", "lock"], env=uv_env(wheelhouse, {"UV_CACHE_DIR": str(parent / "lock-cache")}), cwd=project)
    assert locked.returncode == 0, locked.stderr
    (project / "sub").mkdir()
    return project


#: The job's script, as the Docker executor runs it in the build directory.
_JOB = "\n".join(
    [
        "set -e",
        "link_mode=$(python3 -m linkprobe --for uv --format env)",
        'export "$link_mode"',
        'echo "$link_mode"',
        "uv sync --locked",
    ]
)


def run_job(engine: Engine, project: Path, wheelhouse: Path, cache_dir: str, volume: str | None) -> tuple[int, str]:
    mounts = [
        "-v", f"{project}:/builds/group/project",
        "-v", f"{uv_bin()}:/usr/local/bin/uv:ro",
        "-v", f"{ROOT / 'src'}:/opt/linkprobe:ro",
        "-v", f"{wheelhouse}:{wheelhouse}:ro",
    ]  # fmt: skip
    if volume is not None:
        mounts += ["-v", f"{volume}:/cache"]
    env = {
        "PYTHONPATH": "/opt/linkprobe",
        "UV_CACHE_DIR": cache_dir,
        "UV_OFFLINE": "1",
        "UV_FIND_LINKS": str(wheelhouse),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON": "/usr/bin/python3",
        "UV_PYTHON_DOWNLOADS": "never",
        "CI_PROJECT_DIR": "/builds/group/project",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    done = engine(
        "run", "--rm", "--network", "none", *mounts, *env_args,
        "-w", "/builds/group/project/sub", IMAGE, "sh", "-c", _JOB,
        check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_cache_on_a_named_volume_gets_copy(engine: Engine, wheelhouse: Path, tmp_path: Path) -> None:
    project = locked_project(tmp_path, wheelhouse)
    volume = f"linkprobe-uv-cache-{os.getpid()}"
    engine("volume", "create", volume)
    try:
        code, printed = run_job(engine, project, wheelhouse, "/cache/uv", volume)
        assert code == 0, printed
        assert printed.splitlines()[0] == "UV_LINK_MODE=copy"
        assert fallback_lines(printed) == [], printed
        cache_host = Path(engine("volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip()) / "uv"
        done = outcome(uv_pairs(cache_host, project / ".venv"))
        assert done.mode == "copy", done.summary()
        print(f"\ndocker | uv cache on a named volume, project bind-mounted | UV_LINK_MODE=copy | uv: {done.summary()}")
    finally:
        engine("volume", "rm", "-f", volume, check=False)


def test_cache_inside_the_projects_mount_gets_hardlink(engine: Engine, wheelhouse: Path, tmp_path: Path) -> None:
    project = locked_project(tmp_path, wheelhouse)
    code, printed = run_job(engine, project, wheelhouse, "/builds/group/project/.uv-cache", None)
    assert code == 0, printed
    assert printed.splitlines()[0] == "UV_LINK_MODE=hardlink"
    assert fallback_lines(printed) == [], printed
    done = outcome(uv_pairs(project / ".uv-cache", project / ".venv"))
    assert done.mode == "hardlink", done.summary()
    print(f"\ndocker | uv cache inside the project's bind mount | UV_LINK_MODE=hardlink | uv: {done.summary()}")


def test_without_linkprobe_uv_warns_and_copies_from_the_volume(
    engine: Engine, wheelhouse: Path, tmp_path: Path
) -> None:
    """The problem in this layout: uv's default hardlink falls back, with its warning."""
    project = locked_project(tmp_path, wheelhouse)
    volume = f"linkprobe-uv-cache-plain-{os.getpid()}"
    engine("volume", "create", volume)
    try:
        env_args = ["-e", "UV_CACHE_DIR=/cache/uv", "-e", "UV_OFFLINE=1", "-e", f"UV_FIND_LINKS={wheelhouse}"]
        env_args += ["-e", "UV_NO_CONFIG=1", "-e", "UV_PYTHON=/usr/bin/python3", "-e", "UV_PYTHON_DOWNLOADS=never"]
        done = engine(
            "run", "--rm", "--network", "none",
            "-v", f"{project}:/builds/group/project", "-v", f"{uv_bin()}:/usr/local/bin/uv:ro",
            "-v", f"{wheelhouse}:{wheelhouse}:ro", "-v", f"{volume}:/cache", *env_args,
            "-w", "/builds/group/project", IMAGE, "uv", "sync", "--locked",
            check=False,
        )  # fmt: skip
        printed = done.stdout + done.stderr
        assert done.returncode == 0, printed
        assert any("Failed to hardlink files; falling back to full copy" in line for line in fallback_lines(printed))
    finally:
        engine("volume", "rm", "-f", volume, check=False)


def test_the_image_is_debians_own(engine: Engine) -> None:
    done = engine("run", "--rm", "--network", "none", IMAGE, "sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME")
    assert done.stdout.strip() == _SUITE


_DOCKERFILE = """\
FROM {image}
COPY uv /usr/local/bin/uv
COPY linkprobe /opt/linkprobe
COPY wheels {wheelhouse}
ENV PYTHONPATH=/opt/linkprobe UV_OFFLINE=1 UV_FIND_LINKS={wheelhouse} UV_NO_CONFIG=1 \\
    UV_PYTHON=/usr/bin/python3 UV_PYTHON_DOWNLOADS=never
{exported}WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \\
    link_mode=$(python3 -m linkprobe --for uv --format env) \\
    && export "$link_mode" && echo "probed: $link_mode" \\
    && uv sync --locked \\
    && echo "installed files with st_nlink > 1: $(find .venv/lib -type f -links +1 | wc -l)" \\
    && echo "installed files: $(find .venv/lib -type f | wc -l)"
"""


@pytest.mark.parametrize("exported", [None, "hardlink"])
def test_buildkit_cache_mount(exported: str | None, engine: Engine, wheelhouse: Path, tmp_path: Path) -> None:
    context = tmp_path / "context"
    project = locked_project(tmp_path, wheelhouse)
    context.mkdir()
    shutil.copy2(uv_bin(), context / "uv")
    shutil.copytree(ROOT / "src", context / "linkprobe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(wheelhouse, context / "wheels")
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(project / name, context / name)
    (context / "Dockerfile").write_text(
        _DOCKERFILE.format(
            image=IMAGE, wheelhouse=wheelhouse, exported=f"ENV UV_LINK_MODE={exported}\n" if exported else ""
        )
    )
    assert engine.docker is not None
    done = subprocess.run(
        [engine.docker, "--host", engine.host, "build", "--network", "none", "--progress", "plain", str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    printed = done.stdout + done.stderr
    if exported == "hardlink":
        assert done.returncode != 0, printed  # the build stops at the RUN line, before uv
        assert "linkprobe: error: hardlink does not work from /root/.cache/uv to /app/.venv" in printed
        assert not re.search(r"installed files: \d", printed)
        return
    assert done.returncode == 0, printed
    assert "probed: UV_LINK_MODE=copy" in printed
    assert fallback_lines(printed) == [], printed
    assert re.search(r"installed files with st_nlink > 1: 0$", printed, re.MULTILINE), printed
    (count,) = re.findall(r"installed files: (\d+)$", printed, re.MULTILINE)
    assert int(count) > 30
    print(
        f"\ndocker build (BuildKit) | cache mount /root/.cache/uv | UV_LINK_MODE=copy | {count} files, none hardlinked"
    )
