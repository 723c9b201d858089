"""linkprobe benchmarks: every figure is a ratio against a baseline measured in the same run.

    python benchmarks/bench.py [--files 5000] [--rounds 7] [--dir DIR]

- probe(): one uncached probe vs the bare syscalls it makes (same files, no logic);
- CLI: ``python -m linkprobe A B`` vs ``python -c pass``;
- link_tree(): hardlink vs ``cp -al``, copy vs ``cp -r``, on a site-packages-like tree.

Runs are interleaved (A B A B ...) and the minimum of each is compared: on a shared,
noisy machine the minimum is the figure least disturbed by others. Not a test: nothing
here asserts; it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from linkprobe import Linker, LinkMode, probe
from linkprobe.linux import FICLONE


def make_tree(root: Path, files: int) -> None:
    """A site-packages-like tree: ~17 small files per directory, sizes 100 B - 8 KiB."""
    rng = __import__("random").Random(7)
    for index in range(files):
        package, module = divmod(index, 17)
        path = root / f"pkg{package // 6}" / f"sub{package % 6}" / f"mod{module}.py"
        if index % 17 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(100, 8000)))


def best_of(
    rounds: int, runs: dict[str, Callable[[], object]], before: Callable[[], None] | None = None
) -> dict[str, float]:
    """Minimum wall time of each callable, interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if before:
                before()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def bare_syscalls(source: str, target: str) -> None:
    """What a probe does at the OS, without any of linkprobe's logic."""
    import fcntl

    src = os.path.join(source, ".bare-src")
    fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"linkprobe\n")
    os.close(fd)
    names = [os.path.join(target, f".bare-{kind}") for kind in ("copy", "clone", "link", "sym")]
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(names[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with contextlib.suppress(OSError):
        os.copy_file_range(sfd, dfd, 1 << 20)
    os.close(dfd)
    dfd = os.open(names[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with contextlib.suppress(OSError):
        fcntl.ioctl(dfd, FICLONE, sfd)
    os.close(dfd)
    os.close(sfd)
    try:
        os.link(src, names[2])
    except OSError:
        names[2] = ""
    os.symlink(src, names[3])
    for name in [*names, src]:
        if name:
            os.lstat(name)
            os.unlink(name)


def repeat(call: Callable[[], object], times: int) -> Callable[[], None]:
    def repeated() -> None:
        for _ in range(times):
            call()

    return repeated


def link_tree(mode: LinkMode, source: Path, tree: Path) -> None:
    Linker(mode, env=None).link_tree(source, tree)


def command(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], object]:
    return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)


def installed_env() -> dict[str, str]:
    """The environment of an installed package: bytecode caches allowed.

    With PYTHONDONTWRITEBYTECODE set (as in some CI images), an editable install compiles
    every linkprobe module from source at every start; a pip-installed one never does.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="linkprobe-bench-", dir=args.dir))
    try:
        run(base, args.files, args.rounds)
    finally:
        shutil.rmtree(base)


def run(base: Path, files: int, rounds: int) -> None:
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.platform()} Python {platform.python_version()}")
    print(f"# cpus={os.cpu_count()} files={files} rounds={rounds} dir={base}")
    source, target = base / "src", base / "dst"
    source.mkdir()
    make_tree(source, files)
    target.mkdir()

    calls = 300
    timings = best_of(
        rounds,
        {
            "bare syscalls": repeat(lambda: bare_syscalls(str(source), str(target)), calls),
            "probe(cache=False)": repeat(lambda: probe(source, target, cache=False), calls),
        },
    )
    per_call = {name: value / calls * 1e6 for name, value in timings.items()}
    print(f"probe: {per_call['probe(cache=False)']:.0f} us/call; bare syscalls {per_call['bare syscalls']:.0f} us")
    print(f"  ratio probe / bare syscalls = {timings['probe(cache=False)'] / timings['bare syscalls']:.2f}")

    python = sys.executable
    env = installed_env()
    cli = command([python, "-m", "linkprobe", str(source), str(target / "venv")], env)
    cli()  # writes the bytecode caches of an editable install once
    timings = best_of(
        rounds,
        {"python -c pass": command([python, "-c", "pass"], env), "python -m linkprobe": cli},
    )
    print(
        f"CLI: {timings['python -m linkprobe'] * 1e3:.1f} ms; python -c pass {timings['python -c pass'] * 1e3:.1f} ms"
    )
    print(f"  ratio CLI / python -c pass = {timings['python -m linkprobe'] / timings['python -c pass']:.2f}")

    tree = target / "tree"

    def clear() -> None:
        shutil.rmtree(tree, ignore_errors=True)
        # Flush the last round's dirty pages so that writeback does not land on the next.
        os.sync()

    for mode, baseline in ((LinkMode.HARDLINK, ["cp", "-al"]), (LinkMode.COPY, ["cp", "-r"])):
        label = " ".join(baseline)
        timings = best_of(
            rounds,
            {
                label: command([*baseline, str(source), str(tree)]),
                f"link_tree {mode.value}": functools.partial(link_tree, mode, source, tree),
            },
            before=clear,
        )
        ours = timings[f"link_tree {mode.value}"]
        print(f"link_tree {mode.value}: {ours * 1e3:.0f} ms; {label} {timings[label] * 1e3:.0f} ms")
        print(f"  ratio link_tree {mode.value} / {label} = {ours / timings[label]:.2f}")
    clear()


if __name__ == "__main__":
    main()
