"""Table tests of the pure rules the Linker decides by (``linkprobe.reasons``): no I/O."""

from __future__ import annotations

import errno
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkprobe import LinkFailedError, LinkMode, UnsupportedModeError
from linkprobe.fallback import (
    FailureAction,
    error_class,
    fallback_advice,
    next_mode,
    on_symlink_failure,
)
from linkprobe.modes import AUTO_ORDER
from linkprobe.reasons import MODE_UNSUPPORTED_ERRNOS, explain_name_too_long, source_problem, target_inside_source

C, H, S, P = LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.SYMLINK, LinkMode.COPY


@pytest.mark.parametrize(
    ("prefer", "failed", "supported", "expected"),
    [
        (AUTO_ORDER, C, {H, P}, H),  # the next working mode
        (AUTO_ORDER, C, {P}, P),  # hardlink did not work in the probe: skipped
        (AUTO_ORDER, C, set(), P),  # copy even unproven: it needs only room
        (AUTO_ORDER, H, {C, H, P}, P),  # never back up to an earlier mode
        (AUTO_ORDER, P, {C, H, S, P}, None),  # copy failing leaves nothing
        ((C, H), H, {C, H, P}, None),  # copy not listed: never used
        ((C, H), C, set(), None),  # hardlink unproven and not copy: no
        ((C, P), C, {H, P}, P),  # pnpm's clone-or-copy: never hardlink
        ((H, S, P), H, {S, P}, S),  # symlink only when the caller lists it
        (AUTO_ORDER, S, {P}, None),  # a mode not in prefer (explicit): no fall back
    ],
)
def test_next_mode(
    prefer: tuple[LinkMode, ...], failed: LinkMode, supported: set[LinkMode], expected: LinkMode | None
) -> None:
    assert next_mode(prefer, failed, supported) is expected


@given(
    prefer=st.lists(st.sampled_from(list(LinkMode)), min_size=1, unique=True),
    failed=st.sampled_from(list(LinkMode)),
    supported=st.sets(st.sampled_from(list(LinkMode))),
)
def test_next_mode_only_steps_down_within_prefer(
    prefer: list[LinkMode], failed: LinkMode, supported: set[LinkMode]
) -> None:
    chosen = next_mode(prefer, failed, supported)
    if chosen is None:
        return
    assert failed in prefer
    assert chosen in prefer
    assert prefer.index(chosen) > prefer.index(failed)
    assert chosen in supported or chosen is LinkMode.COPY


@pytest.mark.parametrize(
    ("code", "explicit", "expected"),
    [
        (errno.EXDEV, True, UnsupportedModeError),
        (errno.EOPNOTSUPP, True, UnsupportedModeError),
        (errno.EPERM, True, UnsupportedModeError),
        (errno.ENOSYS, True, UnsupportedModeError),
        (errno.EMLINK, True, LinkFailedError),  # one file at its limit: not the mode
        (errno.ENOSPC, True, LinkFailedError),
        (errno.ENOENT, True, LinkFailedError),
        (errno.EXDEV, False, LinkFailedError),  # auto with no mode left
        (errno.ENOSPC, False, LinkFailedError),
    ],
)
def test_error_class(code: int, explicit: bool, expected: type[Exception]) -> None:
    assert error_class(code, explicit=explicit) is expected


@given(st.integers(min_value=1, max_value=200), st.booleans())
def test_error_class_is_unsupported_only_for_explicit_mode_errnos(code: int, explicit: bool) -> None:
    unsupported = error_class(code, explicit=explicit) is UnsupportedModeError
    assert unsupported == (explicit and code in MODE_UNSUPPORTED_ERRNOS)


@pytest.mark.parametrize(
    ("code", "explicit", "expected"),
    [
        (errno.ENOSYS, False, FailureAction.FALL_BACK),  # exfat-fuse: no symlink()
        (errno.EPERM, False, FailureAction.FALL_BACK),  # FAT: no symlinks
        (errno.EOPNOTSUPP, False, FailureAction.FALL_BACK),
        (errno.ENOSYS, True, FailureAction.RAISE),  # the caller wants the tree as it is
        (errno.ENOSPC, False, FailureAction.RAISE),  # not about symlinks
        (errno.EACCES, False, FailureAction.RAISE),
        (errno.ENAMETOOLONG, False, FailureAction.RAISE),
    ],
)
def test_on_symlink_failure(code: int, explicit: bool, expected: FailureAction) -> None:
    assert on_symlink_failure(code, explicit=explicit) is expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("UV_LINK_MODE", "UV_LINK_MODE=copy"),
        ("pnpm_config_package_import_method", "pnpm_config_package_import_method=copy"),
        (None, "pass mode='copy' to the Linker"),
        ("", "pass mode='copy' to the Linker"),
    ],
)
def test_fallback_advice(env: str | None, expected: str) -> None:
    assert fallback_advice(LinkMode.COPY, env) == expected


@pytest.mark.parametrize(
    ("st_mode", "tree", "expected"),
    [
        (stat.S_IFREG | 0o644, False, None),
        (stat.S_IFDIR | 0o755, True, None),
        (None, False, (errno.ENOENT, "source does not exist")),
        (None, True, (errno.ENOENT, "source does not exist")),
        (stat.S_IFDIR | 0o755, False, (errno.EISDIR, "source is a directory (use link_tree for a directory)")),
        (stat.S_IFREG | 0o644, True, (errno.ENOTDIR, "source is not a directory")),
        (stat.S_IFIFO | 0o644, False, (errno.EINVAL, "not a regular file, directory or symlink; not copied")),
        (stat.S_IFCHR | 0o644, False, (errno.EINVAL, "not a regular file, directory or symlink; not copied")),
        (stat.S_IFSOCK | 0o644, False, (errno.EINVAL, "not a regular file, directory or symlink; not copied")),
        (stat.S_IFIFO | 0o644, True, (errno.ENOTDIR, "source is not a directory")),
    ],
)
def test_source_problem(st_mode: int | None, tree: bool, expected: tuple[int, str] | None) -> None:
    assert source_problem(st_mode, tree=tree) == expected


@pytest.mark.parametrize(
    ("source", "target", "inside"),
    [
        ("/cache", "/cache", "the target is the source itself"),
        ("/cache", "/cache/sub/inner", "the target resolves to /cache/sub/inner, inside the source /cache"),
        ("/cache/", "/cache/x", "the target resolves to /cache/x, inside the source /cache/"),
        ("/", "/home/u/venv", "the target resolves to /home/u/venv, inside the source /"),
        ("/cache", "/cache2", None),  # a prefix of the name is not a parent
        ("/cache", "/cac", None),  # a shorter name that starts the same
        ("/cache/sub", "/cache", None),  # the source inside the target: the walk never meets it
        ("/srv/cache", "/srv/project/.venv", None),
    ],
)
def test_target_inside_source(source: str, target: str, inside: str | None) -> None:
    assert target_inside_source(source, target, sep="/") == inside


def test_target_inside_source_on_windows_paths() -> None:
    assert target_inside_source("c:\\cache", "c:\\cache\\x", sep="\\") is not None
    assert target_inside_source("c:\\cache", "c:\\cache2\\x", sep="\\") is None


_DEEP = "/t" + "/" + "/".join(["d" * 200] * 20)  # 4,022 bytes, no name over 200


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (
            (_DEEP + "/" + "e" * 73,),
            f"path too long: {_DEEP}/{'e' * 73} is 4096 bytes (PATH_MAX 4096)",
        ),
        (
            ("/t/" + "n" * 256 + "/f", "/s/f"),
            f"file name too long: a 256-byte name ({'n' * 40}...) in /t/{'n' * 256}/f (NAME_MAX 255)",
        ),
        (
            ("/t/f", "/s/" + "é" * 128),  # 256 bytes in UTF-8: the source's name is the long one
            f"file name too long: a 256-byte name ({'é' * 40}...) in /s/{'é' * 128} (NAME_MAX 255)",
        ),
        (("/t/short", "/s/short"), "file name too long for this filesystem: /t/short"),
        ((_DEEP + "/" + "e" * 72,), f"file name too long for this filesystem: {_DEEP}/{'e' * 72}"),  # 4095: fits
    ],
)
def test_explain_name_too_long(paths: tuple[str, ...], expected: str) -> None:
    assert explain_name_too_long(paths, sep="/") == expected
