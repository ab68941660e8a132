"""Sessions: one per connection, with the uid it logged in as and its routing facts.

A `Session` wraps a `Link` with what the application needs: a process-unique ``sid``, the
``uid`` (0 until login), the proto_type it last used per service, and ``send_cmd``. Whether
outgoing utags are cleared depends on who is on the other end: a player (``is_client``) never
sees utags; a gateway or a service link carries them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from netbus.protocol.control import CONTROL_CODECS
from netbus.protocol.header import UTAG_OFFSET, ProtoType, write_utag
from netbus.protocol.registry import CodecRegistry, Direction
from netbus.transport.link import Link, LinkStats
from netbus.transport.reasons import CloseReason

__all__ = ["Session", "SessionTable"]

_ZERO_UTAG = b"\0\0\0\0"


class Session:
    """One connected peer as the application sees it.

    Args:
        is_client: the peer is a player (utags are zeroed on the way out).
        out_direction: which BUF layouts this session's outgoing bodies use.
    """

    __slots__ = (
        "codecs",
        "data",
        "is_client",
        "key",
        "link",
        "out_direction",
        "protos",
        "sid",
        "uid",
    )

    def __init__(
        self,
        sid: int,
        link: Link,
        *,
        is_client: bool,
        out_direction: Direction = Direction.TO_CLIENT,
        codecs: CodecRegistry = CONTROL_CODECS,
    ) -> None:
        self.sid = sid
        self.link = link
        self.is_client = is_client
        self.out_direction = out_direction
        self.codecs = codecs
        self.uid = 0
        #: a gateway's pre-login utag for this connection (docs/protocol.md §8); 0 elsewhere
        self.key = 0
        self.protos: dict[int, int] = {}  #: stype -> proto_type last used by this peer
        self.data: dict[str, Any] = {}  #: free slot for services and roles

    @property
    def peer(self) -> Any:
        return self.link.peer

    @property
    def stats(self) -> LinkStats:
        return self.link.stats

    @property
    def closed(self) -> bool:
        return self.link.closed

    def send_raw(self, cmd_buf: bytes | bytearray) -> bool:
        """Send an encoded cmd_buf as is; towards a player the utag is cleared first."""
        if self.is_client and cmd_buf[UTAG_OFFSET : UTAG_OFFSET + 4] != _ZERO_UTAG:
            cmd_buf = bytearray(cmd_buf)
            cmd_buf[UTAG_OFFSET : UTAG_OFFSET + 4] = _ZERO_UTAG
        return self.link.send_raw(cmd_buf)

    def send_template(self, template: bytes, utag: int) -> bool:
        """Send a cmd_buf encoded once for many recipients (its utag is 0), tagged for ``utag``.

        Fan-out builds the body once and only the 4-byte utag differs per recipient.
        """
        if self.is_client or utag == 0:
            return self.link.send_raw(template)
        buf = bytearray(template)
        write_utag(buf, utag)
        return self.link.send_raw(buf)

    def send_cmd(
        self,
        stype: int,
        ctype: int,
        body: Any,
        *,
        utag: int = 0,
        proto_type: int = ProtoType.JSON,
    ) -> bool:
        """Encode and send one command. Returns False if the link is already closed."""
        cmd_buf = self.codecs.encode(
            stype,
            ctype,
            body,
            utag=0 if self.is_client else utag,
            proto_type=proto_type,
            direction=self.out_direction,
        )
        return self.link.send_raw(cmd_buf)

    def close(self, reason: CloseReason = CloseReason.NORMAL) -> None:
        self.link.close(reason)

    def __repr__(self) -> str:
        return f"<Session {self.sid} uid={self.uid} {self.link.kind} {self.peer}>"


class SessionTable:
    """Sessions by sid and by uid. Binding a uid returns the session it displaced."""

    def __init__(self) -> None:
        self._by_sid: dict[int, Session] = {}
        self._by_uid: dict[int, Session] = {}
        self._sids = itertools.count(1)

    def add(self, link: Link, **kwargs: Any) -> Session:
        session = Session(next(self._sids), link, **kwargs)
        link.owner = session
        self._by_sid[session.sid] = session
        return session

    def remove(self, session: Session) -> None:
        self._by_sid.pop(session.sid, None)
        self.unbind_uid(session)

    def get(self, sid: int) -> Session | None:
        return self._by_sid.get(sid)

    def by_uid(self, uid: int) -> Session | None:
        return self._by_uid.get(uid)

    def bind_uid(self, session: Session, uid: int) -> Session | None:
        """Map ``uid`` to ``session``; return the other session that held it, if any."""
        if session.uid and session.uid != uid:
            self.unbind_uid(session)
        previous = self._by_uid.get(uid)
        self._by_uid[uid] = session
        session.uid = uid
        return previous if previous is not session else None

    def unbind_uid(self, session: Session) -> None:
        """Remove the uid entry only if it still points at ``session``."""
        if session.uid and self._by_uid.get(session.uid) is session:
            del self._by_uid[session.uid]

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_sid.values()))

    @property
    def logged_in(self) -> int:
        return len(self._by_uid)
