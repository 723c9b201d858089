"""Every console and Python example in README.md and docs/*.md, run for real and compared.

The pages say their examples are real runs "on a Linux machine where ``/`` is ext4 and
``/dev/shm`` is tmpfs". This test builds that machine in miniature and runs each example on it:

- **The doc machine.** A fresh loop-mounted ext4 stands for ``/``, with a tmpfs mounted at its
  ``dev/shm``, and the directories the examples name (``/root``, ``/tmp``, ``/etc/passwd``, the bind
  mount ``/tmp/lpd/b1`` of ``/tmp/lpd/b2``, the symlink loop ``/tmp/loopA``, the ``nobody`` cases under
  ``/tmp/lpd``, small package trees under ``/root/.cache/pkgs``). It does not depend on what the real
  ``/`` is (ext4 here, often overlayfs in CI), and every example block gets a fresh one.
- **Paths.** In commands and Python code, an absolute path under ``/root``, ``/tmp``, ``/dev/shm``,
  ``/srv``, ``/etc`` or ``/mnt`` is moved into the doc machine; in what comes back, the doc machine's
  root is moved back to ``/``. ``HOME`` is the doc machine's ``/root``, and so is the working directory.
- **Numbers that differ from machine to machine** are replaced on both sides before comparing:
  ``st_dev``, mount ids, mount devices, byte counts, durations (see ``_VOLATILE``).

What runs:

- A ```` ```console ```` block: each ``$ `` line is a shell command (bash; ``linkprobe`` and
  ``python`` are on ``PATH``, so ``$ linkprobe ...``, ``$ python -m linkprobe ...``,
  ``$ VAR=value linkprobe ...``, ``$ echo $?`` and ``; echo "exit $?"`` all work). The lines up to
  the next ``$ `` are what it printed, stdout and stderr in the order they were written, as a
  terminal shows them. All commands of a block run in one shell, one after the other. A command whose
  output holds a ``linkprobe: error:`` line must exit non-zero, and any other must exit 0 (unless the
  line shows a status itself, with ``$?``).
- A ```` ```python ```` block that starts with ``import`` is a program: it must run without an
  exception and without printing to stderr. A block of ``>>>`` lines is a session: each expression's
  ``repr`` (or, for an exception, ``ExceptionName: message``) must be the line below it.
  ``linkprobe`` is imported for it. Other Python blocks (signatures, fragments) are not run.

Markers, as HTML comments on the lines right above a block's opening fence:

- ``<!-- not run: REASON -->``: the block is reported as skipped, with REASON. Use it sparingly.
- ``<!-- run as: nobody -->``: the commands run as ``nobody:nogroup``, with no supplementary groups.
- ``<!-- setup: NAME -->``: before the block runs, ``SETUPS[NAME]`` adds to the doc machine (and may
  undo things afterwards). ``stopped-fuse`` is an exFAT mount at ``/mnt/stopped-fuse`` whose FUSE
  daemon is stopped with SIGSTOP.

A mismatch fails the block's test with the page and line of each command and a unified diff
(``-`` the page, ``+`` the real run, both normalised), so updating a page is copying the ``+`` lines.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _commands import run
from _fs_build import ScratchMounts, fuse_daemon_pid
from _fs_nobody import run_as_nobody
from _litter import find_litter
from _mountinfo import find_mount

import linkprobe

_ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", *sorted(f"docs/{page.name}" for page in (_ROOT / "docs").glob("*.md")))
#: Top-level directories of the doc machine: absolute paths under these are moved into it.
_WORLD_TOPS = ("root", "tmp", "dev/shm", "srv", "etc", "mnt")
_MARKERS = ("not run", "run as", "setup")
_COMMAND_TIMEOUT = 120

# -- reading the pages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line of the "$ " line in the page
    text: str  # the command, without "$ "
    expected: str  # what the page shows it printed, one string with a final newline (or "")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    body: str
    markers: dict[str, str] = field(default_factory=dict)
    other_comments: tuple[str, ...] = ()  # comments right above it that are not markers

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[Command]:
        commands: list[Command] = []
        text: str | None = None
        start = 0
        output: list[str] = []
        for offset, line in enumerate(self.body.splitlines()):
            if line.startswith("$ "):
                if text is not None:
                    commands.append(Command(start, text, "".join(f"{out}\n" for out in output)))
                text, start, output = line[2:], self.line + 1 + offset, []
            elif text is None:
                raise AssertionError(f"{self.name}: output before the first '$ ' command: {line!r}")
            else:
                output.append(line)
        if text is not None:
            commands.append(Command(start, text, "".join(f"{out}\n" for out in output)))
        return commands


_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*([a-z ]+):\s*(.*?)\s*-->")


def read_blocks(page: str, text: str) -> list[Block]:
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        markers: dict[str, str] = {}
        others: list[str] = []
        above = text[: match.start()].splitlines()
        while above and above[-1].strip().startswith("<!--"):
            comment = above.pop().strip()
            marker = _MARKER.fullmatch(comment)
            if marker and marker[1] in _MARKERS:
                markers[marker[1]] = marker[2]
            else:
                others.append(comment)
        blocks.append(Block(page, line, match[1], match[2], markers, tuple(others)))
    return blocks


def page_blocks(language: str) -> list[Block]:
    return [
        block
        for page in PAGES
        for block in read_blocks(page, (_ROOT / page).read_text(encoding="utf-8"))
        if block.language == language
    ]


def is_program(block: Block) -> bool:
    return block.body.startswith(("import ", "from ")) and not block.body.startswith(">>>")


def is_session(block: Block) -> bool:
    return block.body.startswith(">>> ")


# -- normalising -------------------------------------------------------------------------------

#: (pattern, replacement) for values that differ between machines and runs; applied to both sides.
_VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bst_dev \d+"), "st_dev <n>"),
    (re.compile(r'"(st_dev|mount_id)": \d+'), r'"\1": <n>'),
    (re.compile(r'"mount_device": "[^"]*"'), '"mount_device": "<device>"'),
    (re.compile(r"\b\d[\d,]*(\.\d+)? ?(bytes|B|KiB|MiB|GiB|kB|MB|GB)\b"), "<size>"),
    (re.compile(r"\b\d+(\.\d+)? ?(ns|µs|us|ms|s)\b"), "<duration>"),
)


def normalise(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


class DocMachine:
    """The doc machine's root (``root``) and the mapping of the pages' paths onto it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tops = "|".join(re.escape(top) for top in _WORLD_TOPS)
        # An absolute path under one of the tops, not inside another path or a URL.
        self._doc_path = re.compile(rf"(?<![\w./:-])/(?=(?:{tops})(?:/|\b))")

    def into(self, text: str) -> str:
        """The pages' paths in a command or program, moved into the doc machine."""
        return self._doc_path.sub(f"{self.root}/", text)

    def back(self, text: str) -> str:
        """What a run printed, with the doc machine's root moved back to ``/``."""
        return re.sub(rf"{re.escape(str(self.root))}(/|\b)", "/", text)

    def path(self, doc_path: str) -> Path:
        return self.root / doc_path.lstrip("/")


# -- the doc machine ---------------------------------------------------------------------------

_NOBODY_UID = 65534


def _mount(*argv: str | os.PathLike[str]) -> None:
    run(["mount", *argv])


def _package(where: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(content)


def build_machine(root: Path) -> None:
    """The machine the pages describe, under ``root`` (the mount point of a fresh ext4).

    Mounts made here sit below ``root``; ScratchMounts unmounts everything below a mount point
    (deepest first) when that mount is released, so they go with it.
    """
    for path in root.iterdir():
        if path.name != "lost+found":
            shutil.rmtree(path)
    for directory, mode in (("root", 0o700), ("tmp", 0o1777), ("etc", 0o755), ("srv", 0o755), ("mnt", 0o755)):
        (root / directory).mkdir()
        (root / directory).chmod(mode)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "dev" / "shm").mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=16m,mode=1777", "tmpfs", root / "dev" / "shm")
    lpd = root / "tmp" / "lpd"
    for name in ("b1", "b2", "locked/inner", "ro"):
        (lpd / name).mkdir(parents=True)
    (lpd / "locked").chmod(0o700)
    (lpd / "ro").chmod(0o555)
    _mount("--bind", lpd / "b2", lpd / "b1")
    os.symlink("loopB", root / "tmp" / "loopA")  # relative: the loop stays inside the machine
    os.symlink("loopA", root / "tmp" / "loopB")
    nobodyt = root / "tmp" / "nobodyt"
    nobodyt.mkdir()
    os.chown(nobodyt, _NOBODY_UID, -1)
    _package(root / "tmp" / "cache", {"wheel.py": "x = 1\n"})
    pkgs = root / "root" / ".cache" / "pkgs"
    _package(pkgs / "six-1.17.0", {"six.py": "# six\n", "six-1.17.0.dist-info/RECORD": "six.py,,\n"})
    _package(pkgs / "requests-2.32", {"requests/__init__.py": "# requests\n", "requests/api.py": "# api\n"})
    _package(pkgs, {"a.py": "a = 1\n"})


@contextlib.contextmanager
def _stopped_fuse(mounts: ScratchMounts, machine: DocMachine) -> Iterator[None]:
    """An exFAT (FUSE) mount at /mnt/stopped-fuse whose daemon is stopped with SIGSTOP."""
    exfat_dir = mounts.own_exfat()
    where = machine.path("/mnt/stopped-fuse")
    where.mkdir(parents=True)
    _mount("--bind", exfat_dir, where)
    pid = fuse_daemon_pid(exfat_dir.parent)
    os.kill(pid, signal.SIGSTOP)
    try:
        # FUSE caches attributes and names for about 1 s (libfuse's default timeouts): wait them
        # out, so that even the first stat() has to ask the stopped daemon.
        time.sleep(1.5)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)  # always: a stopped daemon would hang the unmount too
        run(["umount", where])
        mounts.release(exfat_dir)


def make_audit_cache(top: Path) -> None:
    """The cache of the user guide's audit examples (``top/cache``)."""
    (top / "cache" / "pkg").mkdir(parents=True)
    (top / "cache" / "pkg" / "core.py").write_bytes(b"#" * 52_000)
    (top / "cache" / "pkg" / "util.py").write_bytes(b"u" * 9_000)
    (top / "cache" / "pkg" / "py.typed").write_bytes(b"partial\n")
    (top / "cache" / "pkg" / "__init__.py").write_bytes(b"")


@contextlib.contextmanager
def _audit_cache(mounts: ScratchMounts, machine: DocMachine) -> Iterator[None]:
    """/root/cache: the audit examples' cache, on the doc machine's ext4."""
    make_audit_cache(machine.path("/root"))
    yield


@contextlib.contextmanager
def _audit_cache_btrfs(mounts: ScratchMounts, machine: DocMachine) -> Iterator[None]:
    """/mnt/btrfs: a directory of a btrfs (bind-mounted) holding the audit examples' cache."""
    btrfs_dir = mounts.btrfs("a")
    make_audit_cache(btrfs_dir)
    where = machine.path("/mnt/btrfs")
    where.mkdir(parents=True)
    _mount("--bind", btrfs_dir, where)
    try:
        yield
    finally:
        run(["umount", where])


#: Extra pieces of the doc machine, named by ``<!-- setup: NAME -->``.
SETUPS: dict[str, Callable[[ScratchMounts, DocMachine], contextlib.AbstractContextManager[None]]] = {
    "stopped-fuse": _stopped_fuse,
    "audit-cache": _audit_cache,
    "audit-cache-btrfs": _audit_cache_btrfs,
}


@contextlib.contextmanager
def doc_machine(mounts: ScratchMounts, block: Block) -> Iterator[DocMachine]:
    fresh = mounts.small_ext4(size_mb=16)
    root = Path(find_mount(fresh).mountpoint)
    try:
        build_machine(root)
        machine = DocMachine(root)
        with contextlib.ExitStack() as stack:
            if "setup" in block.markers:
                name = block.markers["setup"]
                assert name in SETUPS, f"{block.name}: unknown <!-- setup: {name} -->; known: {sorted(SETUPS)}"
                stack.enter_context(SETUPS[name](mounts, machine))
            yield machine
        # The global litter check only sees the session's mounts; this machine is gone before it runs.
        litter = find_litter([root, machine.path("/dev/shm")])
        assert not litter, f"{block.name} left scratch files in the doc machine: {litter}"
    finally:
        problems = mounts.release(root)
        assert not problems, problems


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    """Where ``linkprobe`` and ``python`` come from, for root or for nobody."""

    bin_dir: Path
    env: dict[str, str]
    as_nobody: bool

    def run(self, script: str, cwd: Path) -> str:
        argv = ["bash", "--norc", "--noprofile", "-c", script]
        env = {**self.env, "HOME": str(cwd)}
        if self.as_nobody:
            done = run_as_nobody(
                argv,
                env=env,
                cwd=cwd,
                capture_output=False,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=_COMMAND_TIMEOUT,
            )
        else:
            done = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        return done.stdout


def _base_env(bin_dir: Path) -> dict[str, str]:
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "COLUMNS": "80",  # the width argparse wraps usage and help to; cli.md says "80 columns here"
        # Written in program order, as on a terminal, where stdout is line-buffered.
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _write_bin(bin_dir: Path, python: str) -> None:
    bin_dir.mkdir(mode=0o755)
    for name, body in (("linkprobe", f'exec {python} -m linkprobe "$@"'), ("python", f'exec {python} "$@"')):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)


@pytest.fixture(scope="module")
def runners() -> Iterator[dict[bool, Runner]]:
    """A runner for root (this checkout's code) and one for nobody (a copy it can read: /root is 0700)."""
    scratch = Path(tempfile.mkdtemp(prefix="linkprobe-docs-", dir="/var/tmp"))
    try:
        scratch.chmod(0o755)
        _write_bin(scratch / "bin-root", sys.executable)
        root_env = {**_base_env(scratch / "bin-root"), "PYTHONPATH": str(Path(linkprobe.__file__).parents[1])}
        code = scratch / "code"
        package = Path(linkprobe.__file__).parent
        shutil.copytree(package, code / "linkprobe", ignore=shutil.ignore_patterns("__pycache__"))
        for path in [code, *code.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        nobody_python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
        _write_bin(scratch / "bin-nobody", nobody_python)
        nobody_env = {**_base_env(scratch / "bin-nobody"), "PYTHONPATH": str(code)}
        yield {
            False: Runner(scratch / "bin-root", root_env, as_nobody=False),
            True: Runner(scratch / "bin-nobody", nobody_env, as_nobody=True),
        }
    finally:
        shutil.rmtree(scratch)


_STATUS = "\0"


def run_commands(runner: Runner, machine: DocMachine, commands: list[Command]) -> list[tuple[str, int]]:
    """Run the commands in one shell; (what each printed, its exit status), paths moved back."""
    lines = []
    for command in commands:
        lines.append(machine.into(command.text))
        # The status is printed after each command, and set again for a following `echo $?`.
        lines.append('__status=$?; printf \'\\0%d\\0\' "$__status"; (exit "$__status")')
    printed = runner.run("\n".join(lines) + "\n", cwd=machine.path("/root"))
    parts = printed.split(_STATUS)
    assert len(parts) == 2 * len(commands) + 1, f"the shell stopped early:\n{printed}"
    return [(machine.back(parts[2 * i]), int(parts[2 * i + 1])) for i in range(len(commands))]


def mismatch(where: str, page: str, expected: str, actual: str) -> str:
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), f"{page} (the page)", "real run", lineterm=""
    )
    return f"{where}\n" + "\n".join(diff)


def check_block(block: Block, results: list[tuple[str, int]]) -> list[str]:
    problems = []
    for command, (printed, status) in zip(block.commands(), results, strict=True):
        expected, actual = normalise(command.expected), normalise(printed)
        if expected != actual:
            problems.append(mismatch(f"{block.page}:{command.line}: $ {command.text}", block.page, expected, actual))
        if "$?" in command.text:
            continue  # the line prints the status itself, and its own status is echo's
        says_error = any(line.startswith("linkprobe: error:") for line in printed.splitlines())
        if says_error != (status != 0):
            where = f"{block.page}:{command.line}: $ {command.text}"
            problems.append(f"{where}\nexit status {status} with output:\n{printed}")
    return problems


# -- the tests ---------------------------------------------------------------------------------


def _params(blocks: list[Block]) -> list[object]:
    return [
        pytest.param(
            block,
            id=block.name,
            marks=[pytest.mark.skip(reason=block.markers["not run"])] if "not run" in block.markers else [],
        )
        for block in blocks
    ]


CONSOLE_BLOCKS = page_blocks("console")
PYTHON_BLOCKS = [block for block in page_blocks("python") if is_program(block) or is_session(block)]


@pytest.mark.realfs
@pytest.mark.parametrize("block", _params(CONSOLE_BLOCKS))
def test_console_example(block: Block, mounts: ScratchMounts, runners: dict[bool, Runner]) -> None:
    runner = runners[block.markers.get("run as") == "nobody"]
    assert block.markers.get("run as", "nobody") == "nobody", f"{block.name}: only 'run as: nobody' is known"
    commands = block.commands()
    with doc_machine(mounts, block) as machine:
        results = run_commands(runner, machine, commands)
    problems = check_block(block, results)
    assert not problems, "the page and the real run differ:\n\n" + "\n\n".join(problems)


_SESSION = textwrap.dedent(
    """
    import sys, linkprobe
    for source in sys.argv[1:]:
        try:
            code, is_expression = compile(source, "<page>", "eval"), True
        except SyntaxError:
            code, is_expression = compile(source, "<page>", "exec"), False
        try:
            value = eval(code)
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}")
        else:
            if is_expression and value is not None:
                print(repr(value))
        print("\\0", end="")
    """
)


def session_steps(block: Block) -> list[tuple[str, str]]:
    """(source, expected output) of each ``>>>`` statement."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith(">>> "):
            steps.append((line[4:], []))
        elif line.startswith("... ") and steps:
            steps[-1] = (steps[-1][0] + "\n" + line[4:], steps[-1][1])
        elif steps:
            steps[-1][1].append(line)
    return [(source, "".join(f"{out}\n" for out in output)) for source, output in steps]


@pytest.mark.realfs
@pytest.mark.parametrize("block", _params(PYTHON_BLOCKS))
def test_python_example(block: Block, mounts: ScratchMounts, runners: dict[bool, Runner]) -> None:
    env = {key: value for key, value in runners[False].env.items() if key != "PYTHONUNBUFFERED"}
    with doc_machine(mounts, block) as machine:
        home = machine.path("/root")
        if is_session(block):
            steps = session_steps(block)
            argv = [sys.executable, "-c", _SESSION, *(machine.into(source) for source, _ in steps)]
        else:
            argv = [sys.executable, "-c", machine.into(block.body)]
        done = subprocess.run(
            argv, env={**env, "HOME": str(home)}, cwd=home, capture_output=True, text=True, timeout=60, check=False
        )
    assert (done.returncode, done.stderr) == (0, ""), f"{block.name}:\n{done.stderr}"
    if is_session(block):
        printed = machine.back(done.stdout).split("\0")
        problems = [
            mismatch(f"{block.name}: >>> {source}", block.page, normalise(expected), normalise(actual))
            for (source, expected), actual in zip(steps, printed, strict=False)
            if normalise(expected) != normalise(actual)
        ]
        assert not problems, "the page and the real run differ:\n\n" + "\n\n".join(problems)


# -- the harness itself ------------------------------------------------------------------------


def test_every_page_with_examples_is_read() -> None:
    assert {block.page for block in CONSOLE_BLOCKS} >= {"README.md", "docs/cli.md", "docs/user-guide.md"}
    assert {block.page for block in PYTHON_BLOCKS} >= {"README.md", "docs/api.md", "docs/user-guide.md"}
    for block in CONSOLE_BLOCKS:
        assert block.commands(), f"{block.name}: a console block without a '$ ' command"
    for block in CONSOLE_BLOCKS + page_blocks("python"):
        # A misspelt marker would be ignored silently: only ci.md's recipe markers may stand there.
        unknown = [comment for comment in block.other_comments if not comment.startswith("<!-- recipe: ")]
        assert not unknown, f"{block.name}: not a marker ({', '.join(_MARKERS)}): {unknown}"


def test_blocks_markers_and_commands_are_read() -> None:
    page = textwrap.dedent(
        """\
        Text.

        <!-- not run: needs macOS -->
        ```console
        $ linkprobe /a /b
        copy
        $ echo $?
        0
        ```

        <!-- recipe: x -->
        <!-- run as: nobody -->
        ```console
        $ linkprobe --mode hardlink /tmp /srv
        ```
        """
    )
    first, second = read_blocks("page.md", page)
    assert (first.line, first.markers) == (4, {"not run": "needs macOS"})
    assert first.commands() == [Command(5, "linkprobe /a /b", "copy\n"), Command(7, "echo $?", "0\n")]
    assert (second.markers, second.other_comments) == ({"run as": "nobody"}, ("<!-- recipe: x -->",))
    assert second.commands() == [Command(14, "linkprobe --mode hardlink /tmp /srv", "")]


def test_paths_move_into_the_doc_machine_and_back() -> None:
    machine = DocMachine(Path("/var/tmp/m/small_ext4-1"))
    moved = machine.into('linkprobe "/tmp/x" /dev/shm /root/.venv 2>/dev/null # /tmp/a -> /srv https://x/tmp')
    assert moved == (
        'linkprobe "/var/tmp/m/small_ext4-1/tmp/x" /var/tmp/m/small_ext4-1/dev/shm /var/tmp/m/small_ext4-1/root/.venv'
        " 2>/dev/null # /var/tmp/m/small_ext4-1/tmp/a -> /var/tmp/m/small_ext4-1/srv https://x/tmp"
    )
    assert machine.back("(/var/tmp/m/small_ext4-1/tmp on /var/tmp/m/small_ext4-1)") == "(/tmp on /)"


def test_a_difference_is_reported_with_page_line_and_diff() -> None:
    page = "```console\n$ linkprobe --format text /a /b\nmode: copy (auto)\n  st_dev 27\n```\n"
    (block,) = read_blocks("docs/x.md", page)
    assert check_block(block, [("mode: copy (auto)\n  st_dev 65024\n", 0)]) == []  # st_dev is volatile
    (problem,) = check_block(block, [("mode: hardlink (auto)\n  st_dev 65024\n", 0)])
    assert problem.startswith("docs/x.md:2: $ linkprobe --format text /a /b\n")
    assert "\n-mode: copy (auto)\n+mode: hardlink (auto)" in problem
    (problem,) = check_block(block, [("mode: copy (auto)\n  st_dev 1\n", 1)])
    assert "exit status 1" in problem  # failed without saying so
