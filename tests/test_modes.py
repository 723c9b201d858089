"""Unit tests for reading mode words: ``modes.parse_mode``, ``modes.requested_mode`` and ``modes.requested_choice``."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkprobe import InvalidModeError, LinkMode, LinkprobeError, parse_mode
from linkprobe.modes import AUTO_ORDER, VALID_WORDS, parse_order, requested_choice, requested_mode

#: Every word parse_mode accepts, and what it means (written out here, not imported,
#: so that a change to the aliases in src has to be a deliberate change here too).
WORDS: dict[str, LinkMode] = {
    "clone": LinkMode.CLONE,
    "reflink": LinkMode.CLONE,
    "cow": LinkMode.CLONE,
    "hardlink": LinkMode.HARDLINK,
    "symlink": LinkMode.SYMLINK,
    "softlink": LinkMode.SYMLINK,
    "copy": LinkMode.COPY,
}
AUTO_WORDS = ("", "auto")

#: White space that str.strip() removes, ASCII and not.
WHITESPACE = " \t\n\r\x0b\x0c\xa0\u2003\u3000"


def reference_parse(text: str) -> LinkMode | None:
    """The documented rule, independently: strip, lower, auto words, aliases."""
    word = text.strip().lower()
    if word in AUTO_WORDS:
        return None
    if word in WORDS:
        return WORDS[word]
    raise LookupError(word)


@st.composite
def spelled(draw: st.DrawFn, words: tuple[str, ...]) -> tuple[str, str]:
    """(word, the word in random case with random white space around it)."""
    word = draw(st.sampled_from(words))
    upper = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    cased = "".join(ch.upper() if up else ch for ch, up in zip(word, upper, strict=True))
    before = draw(st.text(alphabet=WHITESPACE, max_size=4))
    after = draw(st.text(alphabet=WHITESPACE, max_size=4))
    return word, before + cased + after


# --------------------------------------------------------------------------- parse_mode


@pytest.mark.parametrize(("word", "expected"), sorted(WORDS.items()))
def test_every_word_and_alias(word: str, expected: LinkMode) -> None:
    assert parse_mode(word) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CLONE", LinkMode.CLONE),
        ("ReFlInK", LinkMode.CLONE),
        ("COW", LinkMode.CLONE),
        ("HardLink", LinkMode.HARDLINK),
        ("SoftLink", LinkMode.SYMLINK),
        ("Copy", LinkMode.COPY),
    ],
)
def test_case_insensitive(text: str, expected: LinkMode) -> None:
    assert parse_mode(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  copy  ", LinkMode.COPY),
        ("\tsymlink\n", LinkMode.SYMLINK),
        (" reflink\r\n", LinkMode.CLONE),
        ("\u3000hardlink\xa0", LinkMode.HARDLINK),
    ],
)
def test_surrounding_whitespace_is_ignored(text: str, expected: LinkMode) -> None:
    assert parse_mode(text) is expected


@pytest.mark.parametrize("text", [None, "", "auto", "AUTO", "  Auto ", "   ", "\t\n"])
def test_auto_spellings_mean_none(text: str | None) -> None:
    assert parse_mode(text) is None


@pytest.mark.parametrize("mode", list(LinkMode))
def test_linkmode_passes_through(mode: LinkMode) -> None:
    assert parse_mode(mode) is mode


@pytest.mark.parametrize(
    "bad",
    [
        "bogus",
        "hardlinks",  # the UV_LINK_MODE typo the error class is named after
        "hard link",  # inner white space is not stripped
        "clone,copy",
        "auto-copy",
        "link",
        "1",
        "\uff43\uff4f\uff50\uff59",  # full-width "copy" is not "copy"
        "none",
    ],
)
def test_bad_value_raises_invalid_mode_error(bad: str) -> None:
    with pytest.raises(InvalidModeError) as info:
        parse_mode(bad)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert isinstance(exc, LinkprobeError)
    assert exc.value == bad
    assert exc.valid == VALID_WORDS
    message = str(exc)
    assert repr(bad) in message
    for word in ("auto", "clone", "hardlink", "symlink", "copy"):
        assert word in message
    assert "\n" not in message


def test_error_names_where_the_value_came_from() -> None:
    with pytest.raises(InvalidModeError) as info:
        parse_mode("nope", source="--mode")
    assert info.value.source == "--mode"
    assert str(info.value).startswith("invalid --mode 'nope': expected one of ")


def test_valid_words_list_auto_and_every_mode_once() -> None:
    assert VALID_WORDS[0] == "auto"
    assert sorted(VALID_WORDS[1:]) == sorted(mode.value for mode in LinkMode)


def test_auto_order_never_contains_symlink() -> None:
    assert AUTO_ORDER == (LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY)


@given(st.text())
def test_any_text_parses_or_raises_invalid_mode_error(text: str) -> None:
    try:
        expected = reference_parse(text)
    except LookupError:
        with pytest.raises(InvalidModeError) as info:
            parse_mode(text)
        assert info.value.value == text
        assert repr(text) in str(info.value)
    else:
        # Nothing else may come out: no other exception type, no other value.
        result = parse_mode(text)
        assert result is None or isinstance(result, LinkMode)
        assert result is expected


@given(spelled(tuple(WORDS)))
def test_any_valid_word_in_any_case_and_padding(pair: tuple[str, str]) -> None:
    word, text = pair
    assert parse_mode(text) is WORDS[word]


@given(spelled(AUTO_WORDS[1:]))
def test_auto_in_any_case_and_padding(pair: tuple[str, str]) -> None:
    _, text = pair
    assert parse_mode(text) is None


# ----------------------------------------------------------------------- requested_mode


def test_requested_mode_prefers_the_explicit_mode() -> None:
    environ = {"UV_LINK_MODE": "clone"}
    assert requested_mode("copy", "UV_LINK_MODE", environ) is LinkMode.COPY
    assert requested_mode(LinkMode.SYMLINK, "UV_LINK_MODE", environ) is LinkMode.SYMLINK


def test_requested_mode_does_not_even_read_a_garbage_env_when_mode_given() -> None:
    assert requested_mode("hardlink", "UV_LINK_MODE", {"UV_LINK_MODE": "garbage"}) is LinkMode.HARDLINK


def test_explicit_auto_beats_env() -> None:
    # "--mode auto" overrides an environment variable, as uv's --link-mode does.
    assert requested_mode("auto", "UV_LINK_MODE", {"UV_LINK_MODE": "hardlink"}) is None


@pytest.mark.parametrize("environ", [{}, {"OTHER": "copy"}, {"X": ""}, {"X": "auto"}, {"X": "  AUTO "}])
def test_requested_mode_env_unset_empty_or_auto_is_none(environ: dict[str, str]) -> None:
    assert requested_mode(None, "X", environ) is None


@pytest.mark.parametrize("env", [None, ""])
def test_requested_mode_without_env_name_ignores_environment(env: str | None) -> None:
    assert requested_mode(None, env, {"": "copy", "LINKPROBE_MODE": "copy"}) is None


def test_requested_mode_reads_env() -> None:
    assert requested_mode(None, "UV_LINK_MODE", {"UV_LINK_MODE": " Reflink "}) is LinkMode.CLONE


def test_requested_mode_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKPROBE_TEST_MODE_VAR", "softlink")
    assert requested_mode(None, "LINKPROBE_TEST_MODE_VAR") is LinkMode.SYMLINK
    monkeypatch.delenv("LINKPROBE_TEST_MODE_VAR")
    assert requested_mode(None, "LINKPROBE_TEST_MODE_VAR") is None


def test_requested_mode_garbage_env_names_the_variable() -> None:
    with pytest.raises(InvalidModeError) as info:
        requested_mode(None, "UV_LINK_MODE", {"UV_LINK_MODE": "hardlinks"})
    message = str(info.value)
    assert "environment variable UV_LINK_MODE" in message
    assert "'hardlinks'" in message


def test_requested_mode_garbage_mode_says_mode() -> None:
    with pytest.raises(InvalidModeError) as info:
        requested_mode("hardlinks", "UV_LINK_MODE", {})
    assert str(info.value).startswith("invalid mode 'hardlinks'")
    assert "UV_LINK_MODE" not in str(info.value)


@given(st.text())
def test_requested_mode_env_value_behaves_like_parse_mode(value: str) -> None:
    environ = {"SOME_VAR": value}
    try:
        expected = reference_parse(value)
    except LookupError:
        with pytest.raises(InvalidModeError) as info:
            requested_mode(None, "SOME_VAR", environ)
        assert "environment variable SOME_VAR" in str(info.value)
        assert repr(value) in str(info.value)
    else:
        assert requested_mode(None, "SOME_VAR", environ) is expected
        # An explicit mode always wins, whatever the variable says.
        assert requested_mode("copy", "SOME_VAR", environ) is LinkMode.COPY


@pytest.mark.parametrize("word", ["clone-or-copy", " CLONE-OR-COPY ", "Clone-Or-Copy\n"])
def test_parse_order_reads_pnpms_clone_or_copy(word: str) -> None:
    assert parse_order(word) == (LinkMode.CLONE, LinkMode.COPY)


@given(st.text(max_size=30))
def test_parse_order_is_none_for_everything_else(text: str) -> None:
    if text.strip().lower() != "clone-or-copy":
        assert parse_order(text) is None


def test_an_order_word_is_not_a_mode() -> None:
    # A library caller asking for one mode gets a clear error, not a silent order.
    with pytest.raises(InvalidModeError):
        parse_mode("clone-or-copy")
    assert parse_order(None) is None
    assert parse_order(LinkMode.CLONE) is None


@pytest.mark.parametrize(
    ("mode", "environ", "expected"),
    [
        (None, {}, None),
        (None, {"X": "clone-or-copy"}, (LinkMode.CLONE, LinkMode.COPY)),
        (None, {"X": " Reflink "}, LinkMode.CLONE),
        ("clone-or-copy", {"X": "copy"}, (LinkMode.CLONE, LinkMode.COPY)),
        ("hardlink", {"X": "clone-or-copy"}, LinkMode.HARDLINK),
        (LinkMode.COPY, {"X": "garbage"}, LinkMode.COPY),
        ("auto", {"X": "copy"}, None),
    ],
)
def test_requested_choice_table(
    mode: str | LinkMode | None, environ: dict[str, str], expected: LinkMode | tuple[LinkMode, ...] | None
) -> None:
    assert requested_choice(mode, "X", environ) == expected


def test_requested_choice_garbage_env_names_the_variable() -> None:
    with pytest.raises(InvalidModeError, match="environment variable X"):
        requested_choice(None, "X", {"X": "clone-or-link"})


def test_the_probe_module_still_offers_the_mode_readers() -> None:
    # The linker and older callers import them from linkprobe.probe.
    probe_module = importlib.import_module("linkprobe.probe")
    assert probe_module.requested_choice is requested_choice
    assert probe_module.requested_mode is requested_mode


@given(st.one_of(st.sampled_from(["", " auto ", "Reflink", "COW", "softlink", "clone-or-copy", " Copy\n"]), st.text()))
def test_choice_words_reads_what_parse_choice_reads(value: str) -> None:
    """The words the probe and the linker work in name what parse_choice's LinkModes name."""
    from linkprobe._words import choice_words
    from linkprobe.modes import parse_choice

    try:
        expected = parse_choice(value, source="X")
    except InvalidModeError as exc:
        message = str(exc)
    else:
        chosen = choice_words(value, source="X")
        assert chosen == expected
        assert chosen is None or type(chosen) is str or all(type(mode) is str for mode in chosen)
        return
    with pytest.raises(InvalidModeError) as raised:
        choice_words(value, source="X")
    assert str(raised.value) == message


def test_choice_words_of_nothing_is_auto() -> None:
    from linkprobe._words import choice_words

    assert choice_words(None) is None
