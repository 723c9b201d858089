r"""Unit tests for the mount table: parsing /proc/self/mountinfo and finding a path's mount.

Nothing here mounts anything; the only system reads are ``mount_table()`` of this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _marks import NEEDS_PROC_MOUNTINFO
from hypothesis import given
from hypothesis import strategies as st

from linkprobe.mounts import (
    Mount,
    find_mount,
    fuseblk_subtype,
    mount_finder,
    mount_table,
    parse_mountinfo,
    unescape_mount_field,
    with_fuse_subtype,
)

#: What the kernel escapes in mountinfo fields (fs/proc_namespace.c: mangle(), " \t\n\\").
KERNEL_ESCAPED = " \t\n\\"


def kernel_escape(text: str) -> str:
    return "".join(f"\\{ord(ch):03o}" if ch in KERNEL_ESCAPED else ch for ch in text)


SAMPLE = "\n".join(
    [
        "22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
        r"30 27 0:27 / /mnt/my\040disk rw,nosuid,nodev shared:5 master:2 - fuseblk /dev/sdb1 rw,user_id=0",
        r"31 27 0:28 /@cache /srv/back\134slash ro,relatime master:7 - btrfs /dev/sdc ro,subvol=/@cache",
        r"32 27 0:29 / /mnt/tab\011and\012newline rw - tmpfs my\040tmpfs rw,size=4k",
        "33 27 0:30 / /mnt/opt rw,relatime shared:1 master:2 propagate_from:3 unbindable - xfs /dev/sdd rw",
        "garbage that is not a mount line",
        "",
        "40 27 0:31 / /no/separator rw,relatime shared:1",
        "41 27 0:32 / /no/device rw - ext4",
        "abc 27 0:33 / /bad/id rw - ext4 /dev/sde rw",
        "42 27",
    ]
)


def by_point(mounts: list[Mount]) -> dict[str, Mount]:
    return {mount.mount_point: mount for mount in mounts}


# ----------------------------------------------------------------------- parse_mountinfo


def test_parse_realistic_lines_and_skip_malformed() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert [m.mount_point for m in mounts] == [
        "/proc",
        "/",
        "/mnt/my disk",
        "/srv/back\\slash",
        "/mnt/tab\tand\nnewline",
        "/mnt/opt",
    ]


def test_parse_fields() -> None:
    mounts = by_point(parse_mountinfo(SAMPLE))
    root = mounts["/"]
    assert root == Mount("/", "ext4", "/dev/vda", ("rw", "relatime"), 27)
    assert root.read_only is False


def test_optional_fields_do_not_shift_fstype_or_device() -> None:
    mounts = by_point(parse_mountinfo(SAMPLE))
    disk = mounts["/mnt/my disk"]
    assert (disk.fstype, disk.device, disk.mount_id) == ("fuseblk", "/dev/sdb1", 30)
    assert disk.options == ("rw", "nosuid", "nodev")
    opt = mounts["/mnt/opt"]
    assert (opt.fstype, opt.device, opt.mount_id) == ("xfs", "/dev/sdd", 33)


def test_read_only_comes_from_per_mount_options() -> None:
    mounts = by_point(parse_mountinfo(SAMPLE))
    assert mounts["/srv/back\\slash"].read_only is True
    assert mounts["/srv/back\\slash"].fstype == "btrfs"


def test_escaped_device() -> None:
    mounts = by_point(parse_mountinfo(SAMPLE))
    assert mounts["/mnt/tab\tand\nnewline"].device == "my tmpfs"


def test_read_only_is_an_exact_option() -> None:
    assert Mount("/", "ext4", "/dev/sda1", ("rw", "errors=remount-ro")).read_only is False
    assert Mount("/", "ext4", "/dev/sda1", ("ro", "relatime")).read_only is True


@pytest.mark.parametrize("text", ["", "\n\n", "garbage\n", "1 2 3 4 5 6 7 8 9"])
def test_nothing_parsable(text: str) -> None:
    assert parse_mountinfo(text) == []


def test_windows_line_endings() -> None:
    mounts = parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\r\n28 27 0:1 / /x rw - tmpfs t rw\r\n")
    assert [(m.mount_point, m.device) for m in mounts] == [("/", "/dev/vda"), ("/x", "t")]


# Regression: parse_mountinfo used str.splitlines(), which also breaks at \r \v \f \x1c-\x1e
# \x85 \u2028 \u2029. The kernel escapes only space, tab, newline and backslash, so such a
# mount point (a udisks mount named after a volume label) was dropped from the table.
@pytest.mark.parametrize("char", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_mount_point_with_unicode_line_break(char: str) -> None:
    point = f"/media/u/a{char}b"
    text = f"27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / {kernel_escape(point)} rw - vfat /dev/sdb1 rw\n"
    assert [m.mount_point for m in parse_mountinfo(text)] == ["/", point]


# ------------------------------------------------------------------ unescape_mount_field


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (r"/mnt/my\040disk", "/mnt/my disk"),
        (r"/a\134b", "/a\\b"),
        (r"/a\011b\012c", "/a\tb\nc"),
        (r"/a\134040", "/a\\040"),  # an escaped backslash followed by digits stays literal
        ("/plain", "/plain"),
        (r"/not\9escape", r"/not\9escape"),
        (r"/short\04", r"/short\04"),
    ],
)
def test_unescape(field: str, expected: str) -> None:
    assert unescape_mount_field(field) == expected


@given(st.text())
def test_unescape_round_trip(text: str) -> None:
    escaped = kernel_escape(text)
    assert not any(ch in escaped for ch in " \t\n")
    assert unescape_mount_field(escaped) == text


@given(st.text(min_size=1), st.text(min_size=1))
def test_parse_round_trip_of_escaped_fields(name: str, device: str) -> None:
    point = "/mnt/" + name
    line = f"77 27 0:99 / {kernel_escape(point)} rw,relatime shared:3 - fuse.x {kernel_escape(device)} rw"
    assert parse_mountinfo(line) == [Mount(point, "fuse.x", device, ("rw", "relatime"), 77)]


# ---------------------------------------------------------------------------- find_mount


def m(point: str, mount_id: int | None = None, fstype: str = "ext4") -> Mount:
    return Mount(point, fstype, "dev", ("rw",), mount_id)


POSIX = [m("/", 1), m("/mnt", 2), m("/mnt/a", 3), m("/home", 4)]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/mnt/a/b/c", "/mnt/a"),
        ("/mnt/a", "/mnt/a"),
        ("/mnt/ab", "/mnt"),  # /mnt/a is not a prefix of /mnt/ab
        ("/mnt/ab/x", "/mnt"),
        ("/mnt", "/mnt"),
        ("/mntx", "/"),
        ("/", "/"),
        ("/anything/deep/below", "/"),
        ("/home/u", "/home"),
    ],
)
def test_find_mount_longest_prefix(path: str, expected: str) -> None:
    found = find_mount(path, POSIX, sep="/")
    assert found is not None
    assert found.mount_point == expected


def test_find_mount_order_of_table_does_not_matter_for_nesting() -> None:
    found = find_mount("/mnt/a/x", list(reversed(POSIX)), sep="/")
    assert found is not None
    assert found.mount_id == 3


def test_find_mount_without_root() -> None:
    assert find_mount("/home/u", [m("/mnt/a")], sep="/") is None
    assert find_mount("/x", [], sep="/") is None


def test_overmount_last_wins() -> None:
    table = [m("/", 1), m("/dev/shm", 25, "tmpfs"), m("/dev/shm", 30, "tmpfs")]
    found = find_mount("/dev/shm/x", table, sep="/")
    assert found is not None
    assert found.mount_id == 30
    table = [m("/", 1), m("/dev/shm", 30, "tmpfs"), m("/dev/shm", 25, "tmpfs")]
    found = find_mount("/dev/shm", table, sep="/")
    assert found is not None
    assert found.mount_id == 25


def test_overmount_of_root() -> None:
    found = find_mount("/etc", [m("/", 1), m("/", 2, "overlay")], sep="/")
    assert found is not None
    assert found.mount_id == 2


WINDOWS = [
    Mount("C:\\", "NTFS", "C:\\", ("rw", "fixed")),
    Mount("D:\\", "ReFS", "D:\\", ("rw", "fixed")),
    Mount("C:\\Mounts\\Data", "ReFS", "\\\\?\\Volume{1}\\", ("rw", "fixed")),
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("C:\\Users\\u\\proj", "C:\\"),
        ("c:\\users\\u\\proj", "C:\\"),
        ("C:\\Mounts\\Data\\x", "C:\\Mounts\\Data"),
        ("c:\\MOUNTS\\data\\x", "C:\\Mounts\\Data"),
        ("C:\\Mounts\\Data", "C:\\Mounts\\Data"),
        ("C:\\Mounts\\DataX\\y", "C:\\"),
        ("d:\\cache", "D:\\"),
        ("C:\\", "C:\\"),
    ],
)
def test_find_mount_windows(path: str, expected: str) -> None:
    found = find_mount(path, WINDOWS, sep="\\")
    assert found is not None
    assert found.mount_point == expected  # the table's own spelling comes back


def test_find_mount_windows_other_drive() -> None:
    assert find_mount("E:\\x", WINDOWS, sep="\\") is None


def test_find_mount_posix_is_case_sensitive() -> None:
    found = find_mount("/MNT/a/x", POSIX, sep="/")
    assert found is not None
    assert found.mount_point == "/"


# Regression: psutil lists Windows volume mount folders with a trailing backslash (drive
# letter + FindFirstVolumeMountPoint name, e.g. "C:\\Mounts\\Data\\"); the folder itself, as
# realpath() spells it, must be on that mount too.
def test_find_mount_windows_mount_folder_with_trailing_separator() -> None:
    table = [Mount("C:\\Mounts\\Data\\", "ReFS", "C:\\", ()), Mount("C:\\", "NTFS", "C:\\", ())]
    for path in ("C:\\Mounts\\Data", "c:\\mounts\\data", "C:\\Mounts\\Data\\x"):
        found = find_mount(path, table, sep="\\")
        assert found is not None
        assert found.mount_point == "C:\\Mounts\\Data\\"
    found = find_mount("C:\\Mounts\\DataX", table, sep="\\")
    assert found is not None
    assert found.mount_point == "C:\\"


# Regression: lengths were compared casefolded against unfolded; "ß".casefold() is "ss", so a
# later, shallower mount could replace a deeper one.
def test_find_mount_windows_casefold_changes_length() -> None:
    deep = Mount("C:\\Straßenkarten\\ßß\\x", "ReFS", "V1", ())
    shallow = Mount("C:\\Straßenkarten\\ßß", "NTFS", "V2", ())
    found = find_mount("C:\\Straßenkarten\\ßß\\x\\file", [deep, shallow], sep="\\")
    assert found is deep
    found = find_mount("C:\\STRASSENKARTEN\\SSSS\\x\\file", [shallow, deep], sep="\\")
    assert found is deep
    found = find_mount("c:\\straßenkarten\\ßß\\y", [deep, shallow], sep="\\")
    assert found is shallow


# --------------------------------------------------------------------------- mount_table


@NEEDS_PROC_MOUNTINFO
def test_mount_table_of_this_machine_has_root() -> None:
    mounts = mount_table()
    assert "/" in {mount.mount_point for mount in mounts}
    # Read from mountinfo: every entry has its mount ID.
    assert all(mount.mount_id is not None for mount in mounts)


def test_mount_table_missing_file_falls_back_to_psutil() -> None:
    mounts = mount_table("/nonexistent/mountinfo")
    assert mounts
    points = {mount.mount_point for mount in mounts}
    assert ("/" in points) if os.sep == "/" else any(p.endswith(":\\") for p in points)
    # psutil has no mount IDs: proof that the fallback was taken.
    assert all(mount.mount_id is None for mount in mounts)


def test_mount_table_unparsable_file_falls_back_to_psutil(tmp_path: Path) -> None:
    bogus = tmp_path / "mountinfo"
    bogus.write_text("this is not\na mount table\n", encoding="utf-8")
    mounts = mount_table(str(bogus))
    assert mounts
    assert all(mount.mount_id is None for mount in mounts)


def test_mount_table_reads_the_given_file(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(SAMPLE + "\n", encoding="utf-8")
    assert mount_table(str(info)) == parse_mountinfo(SAMPLE)


def test_mount_table_tolerates_undecodable_bytes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_bytes(b"27 1 254:0 / / rw - ext4 /dev/vda rw\n28 27 0:1 / /caf\xe9 rw - tmpfs t rw\n")
    mounts = mount_table(str(info))
    assert [mount.mount_point for mount in mounts] == ["/", "/caf\udce9"]
    assert os.fsencode(mounts[1].mount_point) == b"/caf\xe9"


# ------------------------------------------------------------------ fuseblk subtypes


@pytest.mark.parametrize(
    ("oem", "expected"),
    [(b"EXFAT   ", "exfat"), (b"NTFS    ", "ntfs"), (b"mkfs.fat", None), (b"\0" * 8, None)],
)
def test_fuseblk_subtype_reads_the_boot_sector_oem_name(tmp_path: Path, oem: bytes, expected: str | None) -> None:
    device = tmp_path / "disk.img"
    device.write_bytes(b"\xeb\x76\x90" + oem + b"\0" * 501)
    assert fuseblk_subtype(str(device)) == expected


def test_fuseblk_subtype_of_unreadable_or_short_device(tmp_path: Path) -> None:
    assert fuseblk_subtype(str(tmp_path / "missing")) is None
    short = tmp_path / "short"
    short.write_bytes(b"\xeb\x76")
    assert fuseblk_subtype(str(short)) is None


@pytest.mark.parametrize(
    "mount",
    [
        Mount("/", "ext4", "/dev/vda"),
        Mount("/mnt/x", "fuseblk.exfat", "/dev/sdb1"),
        Mount("/mnt/y", "fuseblk", "not-a-device"),
        Mount("/mnt/z", "fuse.sshfs", "host:/"),
    ],
)
def test_with_fuse_subtype_leaves_other_mounts_alone(mount: Mount) -> None:
    assert with_fuse_subtype(mount) is mount


def reference_find_mount(path: str, mounts: list[Mount], sep: str) -> Mount | None:
    """The rule stated plainly, one pass over every mount: the longest containing mount
    point (a trailing separator is part of the point), the later of equal ones."""
    fold = sep == "\\"
    key = path.casefold() if fold else path
    best, best_length = None, -1
    for mount in mounts:
        point = mount.mount_point.casefold() if fold else mount.mount_point
        stem = point.removesuffix(sep)
        contains = key in (point, stem) or key.startswith(point if point.endswith(sep) else point + sep)
        if contains and len(point) >= best_length:
            best, best_length = mount, len(point)
    return best


_PARTS = st.sampled_from(["a", "b", "ab", "A", "\u00df", "ss", ""])


@given(
    st.sampled_from(["/", "\\"]),
    st.lists(st.tuples(st.lists(_PARTS, max_size=3), st.booleans(), st.booleans()), max_size=6),
    st.lists(_PARTS.filter(bool), max_size=4),
    st.booleans(),
)
def test_mount_finder_agrees_with_one_pass_over_every_mount(
    sep: str, points: list[tuple[list[str], bool, bool]], path_parts: list[str], drive: bool
) -> None:
    prefix = "C:" if sep == "\\" and drive else ""
    mounts = [
        Mount(f"{prefix if on_drive else ''}{sep}{sep.join(parts)}{sep if trailing else ''}", f"fs{index}", "dev")
        for index, (parts, trailing, on_drive) in enumerate(points)
    ]
    path = prefix + sep + sep.join(path_parts)
    expected = reference_find_mount(path, mounts, sep)
    assert find_mount(path, mounts, sep=sep) is expected
    assert mount_finder(mounts, sep=sep)(path) is expected
