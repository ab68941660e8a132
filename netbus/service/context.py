"""`Request`: what a handler gets for one command. No sockets; replies go back the way it came."""

from __future__ import annotations

from typing import Any, NamedTuple

from netbus.session import Session

__all__ = ["Request", "UserRef"]


class UserRef(NamedTuple):
    """A user as a service sees one: the link it came through and its utag on that link.

    Behind a gateway the utag is the uid (or a pre-login key); on a standalone server it is
    the session id. Hashable, so services key their state by it.
    """

    session: Session
    utag: int

    def send(self, stype: int, ctype: int, body: Any, proto_type: int) -> bool:
        return self.session.send_cmd(stype, ctype, body, utag=self.utag, proto_type=proto_type)


class Request:
    """One decoded command (``body`` is None for transfer services, which get ``cmd_buf``)."""

    __slots__ = ("body", "cmd_buf", "ctype", "proto_type", "session", "stype", "utag")

    def __init__(
        self,
        session: Session,
        stype: int,
        ctype: int,
        utag: int,
        proto_type: int,
        body: Any,
        cmd_buf: bytearray,
    ) -> None:
        self.session = session
        self.stype = stype
        self.ctype = ctype
        self.utag = utag
        self.proto_type = proto_type
        self.body = body
        self.cmd_buf = cmd_buf

    @property
    def user(self) -> UserRef:
        return UserRef(self.session, self.utag)

    def reply(self, body: Any, *, ctype: int | None = None) -> bool:
        """Answer on the same route, in the proto_type of the request (PROTOCOL.md §4)."""
        return self.session.send_cmd(
            self.stype,
            self.ctype if ctype is None else ctype,
            body,
            utag=self.utag,
            proto_type=self.proto_type,
        )

    def __repr__(self) -> str:
        return (
            f"<Request stype={self.stype} ctype={self.ctype} utag={self.utag} "
            f"proto={self.proto_type} from {self.session!r}>"
        )
