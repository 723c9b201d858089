"""Link modes and the pure rules for reading them from users (no I/O here)."""

from __future__ import annotations

import enum
import os

from linkprobe import _words
from linkprobe._words import requested_word

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

__all__ = [
    "AUTO_ORDER",
    "ORDER_WORDS",
    "LinkMode",
    "parse_choice",
    "parse_mode",
    "parse_order",
    "requested_choice",
    "requested_mode",
    "requested_word",
]


class LinkMode(str, enum.Enum):
    """A way of materialising a file from a source directory in a target directory."""

    CLONE = _words.CLONE
    HARDLINK = _words.HARDLINK
    SYMLINK = _words.SYMLINK
    COPY = _words.COPY

    def __str__(self) -> str:
        return self.value


#: The order auto mode prefers. Symlink is never chosen automatically: a symlink into a
#: cache breaks the day the cache is pruned, so only a caller may ask for it.
AUTO_ORDER: Final[tuple[LinkMode, ...]] = tuple(LinkMode(word) for word in _words.AUTO_ORDER_WORDS)

#: Words that name an order of modes instead of one mode: pnpm's package-import-method
#: ``clone-or-copy``. The first mode of the order that works is used. Stepping down within
#: the order is the user's own rule, so it is not a fallback that linkprobe makes.
ORDER_WORDS: Final[dict[str, tuple[LinkMode, ...]]] = {
    word: tuple(LinkMode(mode) for mode in modes) for word, modes in _words.ORDER_WORDS.items()
}

#: What error messages list as valid, in a stable order.
VALID_WORDS: Final[tuple[str, ...]] = _words.VALID_WORDS


def parse_mode(value: str | LinkMode | None, *, source: str = "mode") -> LinkMode | None:
    """Read a user's mode word; ``None`` means auto.

    Case-insensitive, surrounding white space ignored, aliases accepted. ``None``, an
    empty string and ``"auto"`` all mean auto. ``source`` names where the value came from
    (``"--mode"``, ``"environment variable UV_LINK_MODE"``) so the error can say so.

    :raises InvalidModeError: for any other value; the message names the bad value and
        lists the valid ones.
    """
    if value is None or isinstance(value, LinkMode):
        return value
    word = _words.mode_word(value, source=source)
    return None if word is None else LinkMode(word)


def parse_order(value: str | LinkMode | None) -> tuple[LinkMode, ...] | None:
    """The modes an order word names (``"clone-or-copy"``), or None for any other value.

    Same spelling rules as :func:`parse_mode`: case and surrounding white space ignored.
    """
    if value is None or isinstance(value, LinkMode):
        return None
    return ORDER_WORDS.get(value.strip().lower())


def parse_choice(value: str | LinkMode | None, *, source: str = "mode") -> LinkMode | tuple[LinkMode, ...] | None:
    """One mode (explicit), an order of modes (:func:`parse_order`), or None (auto).

    :raises InvalidModeError: as :func:`parse_mode`.
    """
    return parse_order(value) or parse_mode(value, source=source)


def requested_mode(
    mode: LinkMode | str | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    mode_source: str = "mode",
) -> LinkMode | None:
    """The explicit mode: ``mode`` itself, or else the environment variable ``env`` in
    ``environ`` (default: ``os.environ``, read, never changed); None means auto.

    :raises InvalidModeError: as :func:`parse_mode`.
    """
    word, source = requested_word(mode, env, os.environ if environ is None else environ, mode_source=mode_source)
    return parse_mode(word, source=source)


def requested_choice(
    mode: LinkMode | str | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    mode_source: str = "mode",
) -> LinkMode | tuple[LinkMode, ...] | None:
    """What was asked for: one mode (explicit), an order of modes (pnpm's
    ``clone-or-copy``, see :func:`parse_order`), or None (auto).

    ``mode`` wins over the environment variable ``env``, as in :func:`requested_mode`.

    :raises InvalidModeError: as :func:`parse_mode`.
    """
    word, source = requested_word(mode, env, os.environ if environ is None else environ, mode_source=mode_source)
    return parse_choice(word, source=source)
