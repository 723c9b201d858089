"""Mode and status words, and the pure rules written in them (no I/O here).

The probe and the command line's one-word formats work in these plain strings;
:class:`~linkprobe.LinkMode` and :class:`~linkprobe.Status` are ``str`` enums of the same
values, built from them. ``LinkMode.CLONE == "clone"`` and both hash alike, so every rule
here takes either, and what a rule returns is the caller's own value: a LinkMode for a
LinkMode order, a word for a word order. Importing ``enum`` costs more than the rest of
the command line's start-up (docs/benchmarks.md), so the start-up path never does.
"""

from __future__ import annotations

from linkprobe.errors import InvalidModeError, NoUsableModeError, UnsupportedModeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Final, TypeVar

    #: A mode word or a LinkMode: whatever the caller's order holds.
    ModeT = TypeVar("ModeT", bound=str)

    #: A verdict as the probe makes it, and as :class:`~linkprobe.Verdict` is laid out:
    #: mode, status, reason, errno.
    VerdictLike = tuple[str, str, str, int | None]
    #: A probe's verdict or a Verdict: whatever the caller's verdicts are.
    VerdictT = TypeVar("VerdictT", bound=VerdictLike)

    from linkprobe.modes import LinkMode

__all__ = [
    "AUTO_ORDER_WORDS",
    "CLONE",
    "COPY",
    "HARDLINK",
    "MODE_WORDS",
    "NOT_PROBED",
    "ORDER_WORDS",
    "SUPPORTED",
    "SYMLINK",
    "TIMED_OUT",
    "UNSUPPORTED",
    "VALID_WORDS",
    "best_of",
    "choice_words",
    "link_mode",
    "mode_word",
    "order_words",
    "requested_word",
    "required",
    "supported",
    "verdict_of",
]

CLONE: Final = "clone"
HARDLINK: Final = "hardlink"
SYMLINK: Final = "symlink"
COPY: Final = "copy"
#: Every mode, in LinkMode's order.
MODE_WORDS: Final[tuple[str, ...]] = (CLONE, HARDLINK, SYMLINK, COPY)
#: The order auto mode prefers. Symlink is never chosen automatically: a symlink into a
#: cache breaks the day the cache is pruned, so only a caller may ask for it.
AUTO_ORDER_WORDS: Final[tuple[str, ...]] = (CLONE, HARDLINK, COPY)

SUPPORTED: Final = "supported"
UNSUPPORTED: Final = "unsupported"
#: Not attempted: e.g. no file to link from on a read-only source.
NOT_PROBED: Final = "not-probed"
#: No answer from the filesystem before the probe's timeout ran out.
TIMED_OUT: Final = "timed-out"

#: Spellings other tools use (uv: ``reflink``; pnpm: ``clone``; cp: ``--reflink``;
#: conda: ``softlink``). Every key is already lower case and stripped.
_ALIASES: Final[dict[str, str]] = {
    "clone": CLONE,
    "reflink": CLONE,
    "cow": CLONE,
    "hardlink": HARDLINK,
    "symlink": SYMLINK,
    "softlink": SYMLINK,
    "copy": COPY,
}

#: Values that mean "nothing chosen": decide by probing.
_AUTO_WORDS: Final[frozenset[str]] = frozenset({"", "auto"})

#: Words that name an order of modes instead of one mode: pnpm's package-import-method
#: ``clone-or-copy``. The first mode of the order that works is used. Stepping down within
#: the order is the user's own rule, so it is not a fallback that linkprobe makes.
ORDER_WORDS: Final[dict[str, tuple[str, ...]]] = {"clone-or-copy": (CLONE, COPY)}

#: What error messages list as valid, in a stable order.
VALID_WORDS: Final[tuple[str, ...]] = ("auto", *MODE_WORDS)


def mode_word(value: str, *, source: str = "mode") -> str | None:
    """The mode a user's word names, as its word; None means auto.

    Case-insensitive, surrounding white space ignored, aliases accepted. An empty string
    and ``"auto"`` mean auto. ``source`` names where the value came from (``"--mode"``,
    ``"environment variable UV_LINK_MODE"``) so the error can say so.

    :raises InvalidModeError: for any other value; the message names the bad value and
        lists the valid ones.
    """
    word = value.strip().lower()
    if word in _AUTO_WORDS:
        return None
    try:
        return _ALIASES[word]
    except KeyError:
        raise InvalidModeError(value, source=source, valid=VALID_WORDS) from None


def order_words(value: str) -> tuple[str, ...] | None:
    """The modes an order word names (``"clone-or-copy"``), or None for any other value."""
    return ORDER_WORDS.get(value.strip().lower())


def choice_words(value: str | None, *, source: str = "mode") -> str | tuple[str, ...] | None:
    """One mode word (explicit), the modes of an order word (pnpm's ``clone-or-copy``: the
    user's own order, not a fallback), or None (auto), as
    :func:`linkprobe.modes.parse_choice` reads them.

    :raises InvalidModeError: as :func:`mode_word`.
    """
    if value is None:
        return None
    return order_words(value) or mode_word(value, source=source)


def requested_word(
    mode: str | None, env: str | None, environ: Mapping[str, str], *, mode_source: str = "mode"
) -> tuple[str | None, str]:
    """The word that was asked for and where it came from.

    ``mode`` (an argument, named ``mode_source``) wins; else the environment variable
    ``env`` in ``environ``; ``env`` None or empty reads no variable. The place is
    ``mode_source`` or ``"environment variable NAME"``, for error messages and reports.
    """
    if mode is not None:
        return mode, mode_source
    if not env:
        return None, mode_source
    return environ.get(env), f"environment variable {env}"


def verdict_of(verdicts: Iterable[VerdictT], mode: str) -> VerdictT:
    """The verdict on ``mode`` (a LinkMode or its word) of a probe's verdicts."""
    return next(verdict for verdict in verdicts if verdict[0] == mode)


def link_mode(word: str) -> LinkMode:
    """The LinkMode of a mode word, for a public value made from the words (the enum module
    is imported here, on first use)."""
    from linkprobe.modes import LinkMode

    return LinkMode(word)


def supported(verdicts: Iterable[VerdictLike], mode: str) -> bool:
    """Whether the probe made ``mode`` work."""
    return verdict_of(verdicts, mode)[1] == SUPPORTED


def best_of(verdicts: Iterable[VerdictLike], order: Sequence[ModeT]) -> ModeT | None:
    """The first mode of ``order`` whose verdict is supported; None when none is.

    A copy that timed out still counts: copy asks nothing of the pair but that files can
    be created, so when the filesystem is only slow or hung, copy is the safe answer
    (and the verdicts say that it was not verified).
    """
    verdicts = tuple(verdicts)
    working = {mode for mode, status, _, _ in verdicts if status == SUPPORTED}
    best = next((mode for mode in order if mode in working), None)
    if best is None and any(mode == COPY and status == TIMED_OUT for mode, status, _, _ in verdicts):
        return next((mode for mode in order if mode == COPY), None)
    return best


def required(
    verdicts: Sequence[VerdictLike], wanted: ModeT | None, order: Sequence[ModeT], source: str, target: str
) -> ModeT:
    """The two rules: ``wanted`` (explicit) is verified and never replaced; auto
    (``wanted`` None) takes the best working mode of ``order``. ``source`` and ``target``
    are the paths as given, for the error.

    :raises UnsupportedModeError: ``wanted`` does not work here.
    :raises NoUsableModeError: auto, and no mode of ``order`` works.
    """
    if wanted is not None:
        _, status, reason, code = verdict_of(verdicts, wanted)
        if status != SUPPORTED:
            raise UnsupportedModeError(wanted, source, target, code, reason)
        return wanted
    best = best_of(verdicts, order)
    if best is None:
        failed = [verdict for verdict in verdicts if verdict[0] in order]
        reasons: dict[str, str] = {mode: reason for mode, _, reason, _ in failed}
        raise NoUsableModeError(
            source, target, reasons, next((code for _, _, _, code in reversed(failed) if code), None)
        )
    return best
