"""Username rules and normalisation (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.storage.errors import AuthRefused, Refusal
from netbus.storage.usernames import (
    USERNAME_KEY_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
    Username,
    normalize_username,
)


@pytest.mark.parametrize(
    ("raw", "display", "key"),
    [
        ("player_1", "player_1", "player_1"),
        ("Player.One", "Player.One", "player.one"),
        ("ＰＬＡＹＥＲ", "PLAYER", "player"),  # full-width folds to ASCII (NFKC)
        ("Straße", "Straße", "strasse"),  # case folding, not lower()
        ("STRASSE", "STRASSE", "strasse"),
        ("ǅemal", "Džemal", "džemal"),  # compatibility digraph splits
        ("游客abc", "游客abc", "游客abc"),
        ("Ⅻabc", "XIIabc", "xiiabc"),  # Roman numeral twelve: NFKC spells it out
        ("e\u0301clair", "\u00e9clair", "\u00e9clair"),  # decomposed accent composes
        ("αβγ-δ", "αβγ-δ", "αβγ-δ"),
        ("ﬁrst", "first", "first"),  # ligature
        ("007", "007", "007"),
        ("a" * USERNAME_MAX_LENGTH, "a" * USERNAME_MAX_LENGTH, "a" * USERNAME_MAX_LENGTH),
    ],
)
def test_valid_names(raw: str, display: str, key: str) -> None:
    assert normalize_username(raw) == Username(display, key)


def test_names_people_read_as_one_share_a_key() -> None:
    forms = ["Straße", "STRASSE", "strasse", "Ｓｔｒａｓｓｅ", "STRAẞE"]
    assert len({normalize_username(f).key for f in forms}) == 1
    assert normalize_username("a.b").key != normalize_username("a-b").key
    assert normalize_username("cafe").key != normalize_username("café").key


BAD = [
    "",
    "ab",  # too short
    "a" * (USERNAME_MAX_LENGTH + 1),
    "has space",
    "tab\there",
    "new\nline",
    "nul\x00x",
    "zero\u200bwidth",  # ZERO WIDTH SPACE (Cf)
    "join\u200dme",  # ZERO WIDTH JOINER (Cf)
    "rtl\u202eevil",  # RIGHT-TO-LEFT OVERRIDE (Cf)
    "soft\u00adhyphen",  # SOFT HYPHEN (Cf)
    "bom\ufeffx",
    "private\ue000",  # private use (Co)
    "surrogate\ud800",
    "unassigned\U000e0fff",
    "_leading",
    ".leading",
    "trailing-",
    "trailing.",
    "emoji😀",
    "dollar$",
    "at@sign",
    "slash/x",
    "quote'x",
    "\u0301accent-first",
    "\u3000ideographic",
    None,
    42,
    b"bytes",
    ["list"],
    "x" * 10_000,
]


@pytest.mark.parametrize("raw", BAD, ids=repr)
def test_invalid_names(raw: object) -> None:
    with pytest.raises(AuthRefused) as info:
        normalize_username(raw)
    assert info.value.reason is Refusal.INVALID_USERNAME
    assert str(info.value) == "invalid_username"  # the message never quotes the input


@given(st.text(max_size=40))
def test_normalize_username_never_crashes(raw: str) -> None:
    try:
        name = normalize_username(raw)
    except AuthRefused as err:
        assert err.reason is Refusal.INVALID_USERNAME
        return
    assert 3 <= len(name.display) <= USERNAME_MAX_LENGTH
    assert len(name.key) <= USERNAME_KEY_MAX_LENGTH
    assert normalize_username(name.display) == name  # idempotent
    assert normalize_username(name.key).key == name.key
