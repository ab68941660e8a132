"""Username rules: what a username may contain, and the key that makes it unique.

Why normalise: "Ｐｌａｙｅｒ", "player" and "PLAYER" look like one name to people, so they must
be one name to the database. A username is NFKC-normalised (compatibility forms such as
full-width letters fold to their plain form) and kept as typed otherwise (``display``). Its
``key`` is ``NFKC(casefold(NFKC(name)))``, the case-insensitive form Unicode recommends for
identifiers; ``uinfo.uname_key`` holds it under a UNIQUE index with a binary collation, so
"Straße" and "STRASSE" collide and nothing else the database's collation might fold does.

The rules, checked on the NFKC form (docs/security.md "Usernames"):

* 3 to 32 code points;
* letters (Unicode category L*), decimal digits (Nd), combining marks (Mn, Mc) and ``_ - .``;
* starts with a letter or digit; does not end with ``_ - .``.

Everything else is refused, in particular control characters (Cc), format characters (Cf:
zero-width joiners, bidirectional overrides that make a name render as another), spaces,
private-use, unassigned and surrogate code points. Confusable letters from different scripts
(Latin "a" and Cyrillic "а") are not detected: that needs the Unicode confusables table.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from netbus.storage.errors import AuthRefused, Refusal

__all__ = [
    "USERNAME_KEY_MAX_LENGTH",
    "USERNAME_MAX_LENGTH",
    "USERNAME_MIN_LENGTH",
    "Username",
    "normalize_username",
]

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32
#: Room for the key: case folding can expand a code point to three (e.g. U+0390).
USERNAME_KEY_MAX_LENGTH = 128

_PUNCTUATION = frozenset("_-.")
_ALLOWED_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Mn", "Mc"})
#: Longest input looked at: NFKC of a huge string is wasted work on hostile input.
_MAX_INPUT = 4 * USERNAME_MAX_LENGTH


class Username(NamedTuple):
    """A valid username: ``display`` (NFKC, case kept) and ``key`` (unique, case-folded)."""

    display: str
    key: str


def normalize_username(value: object) -> Username:
    """Check ``value`` against the username rules and return its display form and key.

    Raises:
        AuthRefused: ``INVALID_USERNAME`` (not a string, wrong length, a forbidden character).
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_INPUT:
        raise AuthRefused(Refusal.INVALID_USERNAME)
    display = unicodedata.normalize("NFKC", value)
    if not USERNAME_MIN_LENGTH <= len(display) <= USERNAME_MAX_LENGTH:
        raise AuthRefused(Refusal.INVALID_USERNAME)
    for char in display:
        if char not in _PUNCTUATION and unicodedata.category(char) not in _ALLOWED_CATEGORIES:
            raise AuthRefused(Refusal.INVALID_USERNAME)
    if display[-1] in _PUNCTUATION or unicodedata.category(display[0])[0] not in "LN":
        raise AuthRefused(Refusal.INVALID_USERNAME)
    key = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", display).casefold())
    if len(key) > USERNAME_KEY_MAX_LENGTH:  # pragma: no cover - 32 code points fold to <= 96
        raise AuthRefused(Refusal.INVALID_USERNAME)
    return Username(display, key)
