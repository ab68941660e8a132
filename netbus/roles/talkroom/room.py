"""The talkroom's state and rules, free of wire details: who is in, and what each action means.

`Room` holds members keyed by the SDK's `User` reference and answers with statuses; the
service layer (service.py) turns them into replies and pushes.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from netbus.roles.talkroom.protocol import TalkroomStatus

__all__ = ["CONTROL_CHARS", "Member", "Room", "validate_enter", "validate_msg"]

MAX_UNAME = 32

#: C0 controls, DEL and C1 controls (Unicode category Cc): ESC starts terminal escape
#: sequences (titles, screen clears, OSC 52 clipboard writes), NUL truncates C strings, CR/LF
#: forge extra chat lines, and U+009B is a one-character CSI. docs/protocol.md §6.1.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(slots=True)
class Member:
    key: Any  #: how the service addresses this user (its `netbus.service.User`)
    uname: str
    usex: int

    def as_body(self) -> dict[str, Any]:
        return {"uname": self.uname, "usex": self.usex}


def validate_enter(body: Any) -> tuple[str, int] | None:
    """``(uname, usex)`` if the Enter body is valid (docs/protocol.md §6.1), else None.

    A valid uname is 1-32 characters with no control character (`CONTROL_CHARS`): names are
    shown to every other member, in terminals as well as in pages.
    """
    if type(body) is not dict:
        return None
    uname, usex = body.get("uname"), body.get("usex")
    if type(uname) is not str or not 1 <= len(uname) <= MAX_UNAME:
        return None
    if _has_control(uname):
        return None
    if type(usex) is not int or usex not in (0, 1):
        return None
    return uname, usex


def validate_msg(body: Any, max_len: int) -> str | None:
    """The message if it is a string of at most ``max_len`` characters with no control
    character (`CONTROL_CHARS`; tab and newline included), else None."""
    if type(body) is not str or len(body) > max_len:
        return None
    if _has_control(body):
        return None
    return body


def _has_control(text: str) -> bool:
    # isprintable() is false for every control character (and for some harmless ones, such
    # as NBSP or the emoji joiner ZWJ): a C-speed answer for most text, the regex otherwise.
    return not text.isprintable() and CONTROL_CHARS.search(text) is not None


class Room:
    """Members keyed by user; insertion order is arrival order."""

    def __init__(self) -> None:
        self.members: dict[Hashable, Member] = {}

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.members

    def get(self, key: Hashable) -> Member | None:
        return self.members.get(key)

    def enter(self, member: Member) -> TalkroomStatus:
        if member.key in self.members:
            return TalkroomStatus.IN_ROOM
        self.members[member.key] = member
        return TalkroomStatus.OK

    def leave(self, key: Hashable) -> Member | None:
        return self.members.pop(key, None)

    def others(self, key: Hashable) -> list[Member]:
        """Every member but ``key``'s, in arrival order (identity compares: no __eq__ calls)."""
        member = self.members.get(key)
        return [m for m in self.members.values() if m is not member]
