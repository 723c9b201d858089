"""Link modes and the pure rules for reading them from users (no I/O here)."""

from __future__ import annotations

import enum
import os

from linkprobe.errors import InvalidModeError

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

    CLONE = "clone"
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    COPY = "copy"

    def __str__(self) -> str:
        return self.value


#: The order auto mode prefers. Symlink is never chosen automatically: a symlink into a
#: cache breaks the day the cache is pruned, so only a caller may ask for it.
AUTO_ORDER: Final[tuple[LinkMode, ...]] = (LinkMode.CLONE, LinkMode.HARDLINK, LinkMode.COPY)

#: Spellings other tools use (uv: ``reflink``; pnpm: ``clone``; cp: ``--reflink``;
#: conda: ``softlink``). Every key is already lower case and stripped.
_ALIASES: Final[dict[str, LinkMode]] = {
    "clone": LinkMode.CLONE,
    "reflink": LinkMode.CLONE,
    "cow": LinkMode.CLONE,
    "hardlink": LinkMode.HARDLINK,
    "symlink": LinkMode.SYMLINK,
    "softlink": LinkMode.SYMLINK,
    "copy": LinkMode.COPY,
}

#: Values that mean "nothing chosen": decide by probing.
_AUTO_WORDS: Final[frozenset[str]] = frozenset({"", "auto"})

#: Words that name an order of modes instead of one mode: pnpm's package-import-method
#: ``clone-or-copy``. The first mode of the order that works is used. Stepping down within
#: the order is the user's own rule, so it is not a fallback that linkprobe makes.
ORDER_WORDS: Final[dict[str, tuple[LinkMode, ...]]] = {
    "clone-or-copy": (LinkMode.CLONE, LinkMode.COPY),
}

#: What error messages list as valid, in a stable order.
VALID_WORDS: Final[tuple[str, ...]] = ("auto", *(mode.value for mode in LinkMode))


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
    word = value.strip().lower()
    if word in _AUTO_WORDS:
        return None
    try:
        return _ALIASES[word]
    except KeyError:
        raise InvalidModeError(value, source=source, valid=VALID_WORDS) from None


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


def requested_word(
    mode: str | LinkMode | None, env: str | None, environ: Mapping[str, str], *, mode_source: str = "mode"
) -> tuple[str | LinkMode | None, str]:
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
