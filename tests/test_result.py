"""Unit tests for the frozen probe results and the rules that read them (``linkprobe.result``)."""

from __future__ import annotations

import errno
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkprobe import (
    LinkMode,
    LinkprobeError,
    NoUsableModeError,
    Probe,
    SideFacts,
    Status,
    UnsupportedModeError,
    Verdict,
)
from linkprobe.result import best_mode

SOURCE = SideFacts(
    given="~/.cache/pkgs",
    probed="/home/u/.cache/pkgs",
    st_dev=2049,
    mount_point="/home",
    fstype="ext4",
    mount_device="/dev/sda2",
    mount_id=31,
)
TARGET = SideFacts(
    given="./venv",
    probed="/srv/proj",
    st_dev=2050,
    mount_point="/srv",
    fstype="xfs",
    mount_device="/dev/sdb1",
    mount_id=32,
    read_only=False,
)

OK = Status.SUPPORTED
NO = Status.UNSUPPORTED
NP = Status.NOT_PROBED


def verdict(mode: LinkMode, status: Status, code: int | None = None) -> Verdict:
    if status is OK:
        return Verdict(mode, status, f"{mode.value} works")
    return Verdict(mode, status, f"{mode.value} failed for reason {code}", code if code is not None else errno.EXDEV)


def make_probe(
    clone: Status = NO,
    hardlink: Status = NO,
    symlink: Status = NO,
    copy: Status = NO,
    *,
    source: SideFacts = SOURCE,
    target: SideFacts = TARGET,
) -> Probe:
    verdicts = (
        verdict(LinkMode.CLONE, clone, errno.EOPNOTSUPP),
        verdict(LinkMode.HARDLINK, hardlink, errno.EXDEV),
        verdict(LinkMode.SYMLINK, symlink, errno.EPERM),
        verdict(LinkMode.COPY, copy, errno.ENOSPC),
    )
    return Probe(source, target, verdicts, None, False)


# -------------------------------------------------------------------------- best_mode


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        ({LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.SYMLINK, LinkMode.COPY}, LinkMode.CLONE),
        ({LinkMode.HARDLINK, LinkMode.SYMLINK, LinkMode.COPY}, LinkMode.HARDLINK),
        ({LinkMode.CLONE, LinkMode.COPY}, LinkMode.CLONE),
        ({LinkMode.SYMLINK, LinkMode.COPY}, LinkMode.COPY),
        ({LinkMode.COPY}, LinkMode.COPY),
        ({LinkMode.SYMLINK}, None),
        (set(), None),
    ],
)
def test_best_mode_order(supported: set[LinkMode], expected: LinkMode | None) -> None:
    verdicts = tuple(verdict(mode, OK if mode in supported else NO) for mode in LinkMode)
    assert best_mode(verdicts) is expected
    # The order of the verdicts does not matter.
    assert best_mode(tuple(reversed(verdicts))) is expected


def test_best_mode_of_nothing_is_none() -> None:
    assert best_mode(()) is None


def test_not_probed_is_not_supported() -> None:
    verdicts = (verdict(LinkMode.CLONE, NP), verdict(LinkMode.HARDLINK, NP), verdict(LinkMode.COPY, OK))
    assert best_mode(verdicts) is LinkMode.COPY


def reference_best(verdicts: tuple[Verdict, ...]) -> LinkMode | None:
    for mode in (LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY):
        if any(v.mode is mode and v.status is Status.SUPPORTED for v in verdicts):
            return mode
    # probe(timeout=): a copy that got no answer is still the safe answer in auto.
    if any(v.mode is LinkMode.COPY and v.status is Status.TIMED_OUT for v in verdicts):
        return LinkMode.COPY
    return None


VERDICTS = st.lists(
    st.builds(
        verdict,
        st.sampled_from(list(LinkMode)),
        st.sampled_from(list(Status)),
        st.sampled_from([None, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP]),
    ),
    max_size=8,
).map(tuple)


@given(VERDICTS)
def test_best_mode_matches_reference(verdicts: tuple[Verdict, ...]) -> None:
    best = best_mode(verdicts)
    assert best is reference_best(verdicts)
    assert best is not LinkMode.SYMLINK


# ----------------------------------------------------------------------- Probe.require


def test_require_explicit_unsupported_raises_with_everything() -> None:
    result = make_probe(clone=OK, hardlink=NO, copy=OK)
    with pytest.raises(UnsupportedModeError) as info:
        result.require(LinkMode.HARDLINK)
    exc = info.value
    assert isinstance(exc, OSError)
    assert isinstance(exc, LinkprobeError)
    assert exc.mode is LinkMode.HARDLINK
    assert exc.source == SOURCE.given
    assert exc.target == TARGET.given
    assert exc.filename == SOURCE.given
    assert exc.filename2 == TARGET.given
    assert exc.errno == errno.EXDEV
    assert exc.reason == "hardlink failed for reason 18"
    assert str(exc) == "hardlink does not work from ~/.cache/pkgs to ./venv: hardlink failed for reason 18"


def test_require_explicit_not_probed_raises() -> None:
    result = make_probe(clone=NP, hardlink=NP, copy=OK)
    with pytest.raises(UnsupportedModeError) as info:
        result.require(LinkMode.CLONE)
    assert info.value.mode is LinkMode.CLONE
    assert info.value.errno == errno.EOPNOTSUPP


def test_require_explicit_supported_returns_it_even_if_better_exists() -> None:
    result = make_probe(clone=OK, hardlink=OK, symlink=OK, copy=OK)
    assert result.require(LinkMode.COPY) is LinkMode.COPY
    assert result.require(LinkMode.HARDLINK) is LinkMode.HARDLINK
    assert result.require(LinkMode.SYMLINK) is LinkMode.SYMLINK


def test_require_auto_takes_best() -> None:
    assert make_probe(hardlink=OK, symlink=OK, copy=OK).require(None) is LinkMode.HARDLINK
    assert make_probe(symlink=OK, copy=OK).require(None) is LinkMode.COPY


def test_require_auto_none_lists_every_reason() -> None:
    # Symlink works but is never chosen automatically.
    result = make_probe(clone=NO, hardlink=NP, symlink=OK, copy=NO)
    with pytest.raises(NoUsableModeError) as info:
        result.require(None)
    exc = info.value
    assert isinstance(exc, OSError)
    assert isinstance(exc, LinkprobeError)
    assert set(exc.reasons) == {LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY}
    for mode in (LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY):
        assert exc.reasons[mode] == result.verdict(mode).reason
        assert f"{mode.value}: {result.verdict(mode).reason}" in str(exc)
    assert str(exc).startswith("no mode works from ~/.cache/pkgs to ./venv: ")
    assert exc.source == SOURCE.given
    assert exc.target == TARGET.given
    # The errno of the last failed attempt in auto order: copy's.
    assert exc.errno == errno.ENOSPC


@given(st.lists(st.sampled_from([OK, NO, NP]), min_size=4, max_size=4), st.sampled_from(list(LinkMode)))
def test_require_explicit_never_returns_another_mode(statuses: list[Status], mode: LinkMode) -> None:
    result = make_probe(*statuses)
    if result.supports(mode):
        assert result.require(mode) is mode
    else:
        with pytest.raises(UnsupportedModeError) as info:
            result.require(mode)
        assert info.value.mode is mode
        assert info.value.errno == result.verdict(mode).errno


# ------------------------------------------------------------------- facts and to_dict


def test_same_device_and_mount() -> None:
    result = make_probe()
    assert result.same_device is False
    assert result.same_mount is False
    same = make_probe(target=SOURCE)
    assert same.same_device is True
    assert same.same_mount is True


def test_same_mount_prefers_mount_ids_over_mount_points() -> None:
    bind = SideFacts("b", "/mnt/bind", 2049, "/home", "ext4", mount_id=99)
    assert make_probe(target=bind).same_mount is False
    # Without IDs, mount points decide.
    no_id = SideFacts("a", "/home/x", 2049, "/home", "ext4")
    no_id_too = SideFacts("b", "/home/y", 2049, "/home", "ext4")
    assert make_probe(source=no_id, target=no_id_too).same_mount is True
    unknown = SideFacts("c", "/x", 1, None, None)
    assert make_probe(source=unknown, target=unknown).same_mount is False


TOP_KEYS = {
    "best",
    "modes",
    "source",
    "target",
    "same_device",
    "same_mount",
    "timed_out",
    "linked_from",
    "linked_from_existing",
    "existing_file",
}
SIDE_KEYS = {"given", "probed", "st_dev", "mount_point", "fstype", "mount_device", "mount_id", "read_only", "exists"}
VERDICT_KEYS = {"status", "supported", "errno", "reason"}


def test_to_dict_keys_and_json() -> None:
    result = Probe(
        SOURCE,
        TARGET,
        make_probe(hardlink=OK, symlink=OK, copy=OK).verdicts,
        "/home/u/.cache/pkgs/a.whl",
        True,
    )
    document = result.to_dict()
    assert json.loads(json.dumps(document)) == document
    assert set(document) == TOP_KEYS
    assert document["best"] == "hardlink"
    assert set(document["modes"]) == {"clone", "hardlink", "symlink", "copy"}
    for entry in document["modes"].values():
        assert set(entry) == VERDICT_KEYS
    assert document["modes"]["clone"] == {
        "status": "unsupported",
        "supported": False,
        "errno": "EOPNOTSUPP",
        "reason": "clone failed for reason 95",
    }
    assert document["modes"]["hardlink"] == {
        "status": "supported",
        "supported": True,
        "errno": None,
        "reason": "hardlink works",
    }
    assert set(document["source"]) == SIDE_KEYS
    assert set(document["target"]) == SIDE_KEYS
    assert document["source"]["given"] == "~/.cache/pkgs"
    assert document["target"]["mount_id"] == 32
    assert document["same_device"] is False
    assert document["same_mount"] is False
    assert document["linked_from"] == "/home/u/.cache/pkgs/a.whl"
    assert document["linked_from_existing"] is True


def test_to_dict_best_none_and_not_probed() -> None:
    document = make_probe(clone=NP, hardlink=NP).to_dict()
    assert document["best"] is None
    assert document["modes"]["clone"]["status"] == "not-probed"
    assert document["modes"]["copy"]["errno"] == "ENOSPC"
    json.dumps(document)


@pytest.mark.parametrize(
    ("code", "name"),
    [(95, "EOPNOTSUPP"), (errno.EOPNOTSUPP, "EOPNOTSUPP"), (18, "EXDEV"), (1, "EPERM"), (None, None), (4242, "4242")],
)
def test_errno_name(code: int | None, name: str | None) -> None:
    assert Verdict(LinkMode.CLONE, NO, "r", code).errno_name == name


def test_status_and_mode_strings() -> None:
    assert str(Status.NOT_PROBED) == "not-probed"
    assert str(LinkMode.HARDLINK) == "hardlink"
    assert Verdict(LinkMode.COPY, OK, "r").supported is True
    assert Verdict(LinkMode.COPY, NP, "r").supported is False


def test_require_with_an_order_takes_its_first_working_mode() -> None:
    # pnpm's clone-or-copy on one ext4: hardlink works but is not in the order.
    result = make_probe(hardlink=OK, copy=OK)
    assert result.require(None) is LinkMode.HARDLINK
    assert result.require(None, order=(LinkMode.CLONE, LinkMode.COPY)) is LinkMode.COPY


def test_require_with_an_order_and_nothing_working_names_its_modes() -> None:
    with pytest.raises(NoUsableModeError) as raised:
        make_probe(hardlink=OK).require(None, order=(LinkMode.CLONE, LinkMode.COPY))
    assert set(raised.value.reasons) == {LinkMode.CLONE, LinkMode.COPY}


# ------------------------------------------------------------ what named tuples trade


def test_results_are_named_tuples_not_dataclasses() -> None:
    """docs/api.md, "Values": they unpack, compare equal to tuples, are replaced with
    ``_replace``, cannot be assigned to, and are not dataclasses."""
    import dataclasses

    from linkprobe.mounts import Mount
    from linkprobe.reasons import ReasonContext

    verdict = Verdict(LinkMode.COPY, Status.SUPPORTED, "works")
    assert verdict._replace(reason="other").reason == "other"
    assert verdict._asdict()["errno"] is None
    assert repr(verdict).startswith("Verdict(mode=")
    mode, status, reason, code = verdict
    assert (mode, status, reason, code) == (LinkMode.COPY, Status.SUPPORTED, "works", None)
    plain: tuple[object, ...] = (LinkMode.COPY, Status.SUPPORTED, "works", None)
    assert verdict == plain
    assert SOURCE._replace(exists=False).exists is False
    context = ReasonContext(SOURCE, TARGET)
    assert context._replace(other_owner=True).other_owner is True
    values: list[object] = [verdict, SOURCE, Mount("/", "ext4", "/dev/sda1"), context]
    for value in values:
        assert isinstance(value, tuple)
        assert not dataclasses.is_dataclass(value)
        with pytest.raises(AttributeError):
            setattr(value, "extra", 1)  # noqa: B010  (the attribute is not declared)
        with pytest.raises(AttributeError):
            setattr(value, type(value)._fields[0], None)  # type: ignore[attr-defined]
