"""`Room` and the talkroom validators: plain logic, no sockets (PROTOCOL.md §4.1 rules)."""

from __future__ import annotations

from typing import Any

import pytest

from netbus.roles.talkroom.protocol import TalkroomStatus
from netbus.roles.talkroom.room import MAX_UNAME, Member, Room, validate_enter, validate_msg


@pytest.mark.parametrize(
    "body",
    [
        {"uname": "a", "usex": 0},
        {"uname": "b", "usex": 1},
        {"uname": "x" * MAX_UNAME, "usex": 0},
        {"uname": "🎮" * MAX_UNAME, "usex": 1},  # characters, not bytes
        {"uname": "a", "usex": 0, "extra": "ignored"},
        {"uname": "\xa0nbsp\u200dzwj\ufeff", "usex": 0},  # not control characters
    ],
)
def test_valid_enter(body: dict[str, Any]) -> None:
    assert validate_enter(body) == (body["uname"], body["usex"])


@pytest.mark.parametrize(
    "body",
    [
        {"uname": "", "usex": 0},
        {"uname": "x" * (MAX_UNAME + 1), "usex": 0},
        {"uname": "a", "usex": 2},
        {"uname": "a", "usex": -1},
        {"uname": "a", "usex": True},
        {"uname": "a", "usex": 1.0},
        {"uname": "a", "usex": "1"},
        {"uname": b"a", "usex": 0},
        {"uname": "a"},
        {"usex": 0},
        # control characters (docs/protocol.md §6.1): C0, DEL, C1
        {"uname": "\x1b]0;owned\x07", "usex": 0},
        {"uname": "nul\x00", "usex": 0},
        {"uname": "\x7f", "usex": 0},
        {"uname": "csi\x9b2J", "usex": 0},
        {"uname": "line\nbreak", "usex": 0},
        None,
        "a",
        ["a", 0],
    ],
)
def test_invalid_enter(body: Any) -> None:
    assert validate_enter(body) is None


def test_validate_msg() -> None:
    assert validate_msg("", 4) == ""
    assert validate_msg("🎮🎮🎮🎮", 4) == "🎮🎮🎮🎮"
    assert validate_msg("12345", 4) is None
    for body in (None, 1, ["x"], {"0": "x"}, b"x"):
        assert validate_msg(body, 4) is None
    assert validate_msg("nbsp\u00a0ok", 20) == "nbsp\u00a0ok"
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        assert validate_msg(f"a{chr(code)}b", 4) is None, hex(code)
    assert validate_msg("\x1b]52;c;aGk=\x07", 100) is None  # OSC 52 clipboard write


def test_room_membership_in_arrival_order() -> None:
    room = Room()
    a, b, c = (Member(key, key, 0) for key in "abc")
    for member in (a, b, c):
        assert room.enter(member) is TalkroomStatus.OK
    assert room.enter(Member("a", "again", 1)) is TalkroomStatus.IN_ROOM
    assert room.get("a") is a and room.get("a").uname == "a"  # type: ignore[union-attr]
    assert len(room) == 3 and "b" in room
    assert [m.key for m in room.others("b")] == ["a", "c"]
    assert room.leave("b") is b
    assert room.leave("b") is None
    assert [m.key for m in room.others("zzz")] == ["a", "c"]
    assert a.as_body() == {"uname": "a", "usex": 0}
