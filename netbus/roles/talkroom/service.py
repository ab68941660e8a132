"""Talkroom wire handlers (docs/protocol.md §6.1), on the public service SDK only.

Each command is declared where it is handled, with its BUF layouts and its in-kind error
reply: the original clients expect INVALID_OPT for anything they send wrong, so a malformed
body or a failing handler is answered that way rather than with REQUEST_FAILED.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from netbus.protocol.codec import STR
from netbus.protocol.registry import LayoutSpec
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import (
    SEND_MSG_REPLY,
    STATUS,
    USER,
    USER_MSG,
    TalkroomCmd,
    TalkroomStatus,
)
from netbus.roles.talkroom.room import Member, Room, validate_enter, validate_msg
from netbus.service import Service, User, command

__all__ = ["DEFAULT_MAX_MSG", "TalkroomService"]

log = logging.getLogger("netbus.talkroom")

DEFAULT_MAX_MSG = 1024
INVALID_OPT = TalkroomStatus.INVALID_OPT


class TalkroomService(Service):
    """One chat room: Enter, Exit, SendMsg; pushes UserArrived, UserExit, UserMsg."""

    stype = Stype.TalkRoom
    name = "talkroom"
    pushes: ClassVar[Mapping[int, LayoutSpec]] = {
        TalkroomCmd.UserArrived: USER,
        TalkroomCmd.UserExit: USER,
        TalkroomCmd.UserMsg: USER_MSG,
    }

    def __init__(self, *, max_msg_len: int = DEFAULT_MAX_MSG) -> None:
        self.room = Room()
        self.max_msg_len = max_msg_len

    # ------------------------------------------------------------------------ commands
    @command(TalkroomCmd.Enter, buf=USER, reply_buf=STATUS, error_reply=INVALID_OPT)
    def enter(self, user: User, body: Any) -> TalkroomStatus:
        """Reply OK (or IN_ROOM), then UserArrived(newcomer) to every other member and one
        UserArrived per member already in to the newcomer (replies go first)."""
        parsed = validate_enter(body)
        if parsed is None:
            return INVALID_OPT
        if user in self.room:
            return TalkroomStatus.IN_ROOM
        newcomer = Member(user, parsed[0], parsed[1])
        others = self.room.others(user)
        self.room.enter(newcomer)
        self.broadcast([m.key for m in others], TalkroomCmd.UserArrived, newcomer.as_body())
        for existing in others:
            user.push(TalkroomCmd.UserArrived, existing.as_body())
        return TalkroomStatus.OK

    @command(TalkroomCmd.Exit, buf=[], reply_buf=STATUS, error_reply=INVALID_OPT)
    def exit(self, user: User, body: Any) -> TalkroomStatus:
        if body is not None:
            return INVALID_OPT
        member = self.room.get(user)
        if member is None:
            return TalkroomStatus.NOT_IN_ROOM
        self._leave(member)
        return TalkroomStatus.OK

    @command(TalkroomCmd.SendMsg, buf=STR, reply_buf=SEND_MSG_REPLY, error_reply={"0": INVALID_OPT})
    def send_msg(self, user: User, body: Any) -> dict[str, Any]:
        msg = validate_msg(body, self.max_msg_len)
        member = self.room.get(user)
        if msg is None or member is None:
            return {"0": INVALID_OPT}
        self.broadcast(
            [m.key for m in self.room.others(user)],
            TalkroomCmd.UserMsg,
            {"0": member.uname, "1": member.usex, "2": msg},
        )
        return {"0": TalkroomStatus.OK, "1": member.uname, "2": member.usex, "3": msg}

    # ----------------------------------------------------------------------- departures
    def on_user_left(self, user: User) -> None:
        member = self.room.get(user)
        if member is not None:
            self._leave(member)

    def on_gateway_lost(self, users: list[User]) -> None:
        gone = [m for m in map(self.room.leave, users) if m is not None]
        for member in gone:
            self.broadcast(
                [m.key for m in self.room.members.values()],
                TalkroomCmd.UserExit,
                member.as_body(),
            )
        if gone:
            log.info("talkroom: %d members left with a lost gateway link", len(gone))

    def _leave(self, member: Member) -> None:
        self.room.leave(member.key)
        self.broadcast(
            [m.key for m in self.room.members.values()],
            TalkroomCmd.UserExit,
            member.as_body(),
        )
