"""Talkroom wire handlers (PROTOCOL.md §4.1): decode, validate, apply `Room`, send.

Pushes are encoded once per proto_type and only the utag differs per recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from netbus.protocol.commands import CODECS, Direction, Stype, TalkroomCmd, TalkroomStatus
from netbus.roles.talkroom.room import Member, Room, validate_enter, validate_msg
from netbus.service import Request, Service, UserRef
from netbus.session import Session

__all__ = ["TalkroomService"]

log = logging.getLogger("netbus.talkroom")

DEFAULT_MAX_MSG = 1024


class TalkroomService(Service):
    stype = Stype.TalkRoom
    name = "talkroom"

    def __init__(self, *, max_msg_len: int = DEFAULT_MAX_MSG) -> None:
        self.room = Room()
        self.max_msg_len = max_msg_len
        self._handlers = {
            TalkroomCmd.Enter: self._enter,
            TalkroomCmd.Exit: self._exit,
            TalkroomCmd.SendMsg: self._send_msg,
        }

    # ------------------------------------------------------------------------ commands
    def on_player_recv_cmd(self, req: Request) -> None:
        handler = self._handlers.get(req.ctype)  # type: ignore[call-overload]
        if handler is None:
            log.debug("talkroom: unknown ctype %s dropped", req.ctype)
            return
        member = self.room.get(req.user)
        if member is not None:
            member.proto_type = req.proto_type
        handler(req, member)

    def _enter(self, req: Request, member: Member | None) -> None:
        parsed = validate_enter(req.body)
        if parsed is None:
            req.reply(TalkroomStatus.INVALID_OPT)
            return
        if member is not None:
            req.reply(TalkroomStatus.IN_ROOM)
            return
        newcomer = Member(req.user, parsed[0], parsed[1], req.proto_type)
        others = self.room.others(req.user)
        self.room.enter(newcomer)
        req.reply(TalkroomStatus.OK)
        self._push(others, TalkroomCmd.UserArrived, newcomer.as_body())
        for existing in others:
            self._push((newcomer,), TalkroomCmd.UserArrived, existing.as_body())

    def _exit(self, req: Request, member: Member | None) -> None:
        if req.body is not None:
            req.reply(TalkroomStatus.INVALID_OPT)
            return
        if member is None:
            req.reply(TalkroomStatus.NOT_IN_ROOM)
            return
        self._leave(member)
        req.reply(TalkroomStatus.OK)

    def _send_msg(self, req: Request, member: Member | None) -> None:
        msg = validate_msg(req.body, self.max_msg_len)
        if msg is None or member is None:
            req.reply({"0": TalkroomStatus.INVALID_OPT})
            return
        req.reply({"0": TalkroomStatus.OK, "1": member.uname, "2": member.usex, "3": msg})
        self._push(
            self.room.others(member.key),
            TalkroomCmd.UserMsg,
            {"0": member.uname, "1": member.usex, "2": msg},
        )

    # ----------------------------------------------------------------------- departures
    def on_player_disconnect(self, session: Session, utag: int) -> None:
        member = self.room.get(UserRef(session, utag))
        if member is not None:
            self._leave(member)

    def on_link_lost(self, session: Session) -> None:
        gone = [m for m in self.room.members.values() if m.key.session is session]  # type: ignore[attr-defined]
        for member in gone:
            self.room.leave(member.key)
        for member in gone:
            self._push(self.room.others(member.key), TalkroomCmd.UserExit, member.as_body())
        if gone:
            log.info("talkroom: %d members left with a lost gateway link", len(gone))

    def _leave(self, member: Member) -> None:
        self.room.leave(member.key)
        self._push(self.room.others(member.key), TalkroomCmd.UserExit, member.as_body())

    # -------------------------------------------------------------------------- fan-out
    def _push(self, recipients: Iterable[Member], ctype: int, body: Any) -> None:
        templates: dict[int, bytes] = {}
        for member in recipients:
            template = templates.get(member.proto_type)
            if template is None:
                template = CODECS.encode(
                    self.stype,
                    ctype,
                    body,
                    proto_type=member.proto_type,
                    direction=Direction.TO_CLIENT,
                )
                templates[member.proto_type] = template
            user: UserRef = member.key  # type: ignore[assignment]
            user.session.send_template(template, user.utag)
