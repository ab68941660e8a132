"""`User`: a player as a service sees one, and the `Outbox` that encodes what it is sent.

A service never sees a `Link` or a `Session`: it gets `User` references. Identity
(docs/protocol.md §8, docs/services.md "Users"):

- a logged-in user behind a gateway is its **uid**: one `User` per uid per service, whatever
  gateway link its packets come through (its *route*, which resume will later move);
- a pre-login connection on an auth or public route is ``(gateway link, connection key)``;
  such users get no departure notice, so the SDK keeps no table of them;
- a player connected straight to the server (standalone mode) is its connection.

`User` objects are hashable and compare by that identity, so services key their state by
them. ``user.push(ctype, body)`` encodes in the proto_type the user last used with this
service (PROTOCOL.md §4).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from netbus.errors import LocalProtocolError
from netbus.protocol.codec import BodyCodec, encode_json_body
from netbus.protocol.header import HEADER, MAX_CMD_BUF, UTAG_OFFSET, ProtoType
from netbus.transport.link import Link

__all__ = ["TASK_BATCH", "Batch", "Deferral", "Outbox", "Route", "User"]

_UTAG = struct.Struct("<I")


class Route:
    """One link as the SDK sees it: a gateway trunk (many users) or one direct player."""

    __slots__ = ("direct", "link")

    def __init__(self, link: Link, *, direct: bool) -> None:
        self.link = link
        self.direct = direct

    def __repr__(self) -> str:
        return f"<Route {'direct' if self.direct else 'gateway'} {self.link.peer}>"


class Batch:
    """Pushes held back while a handler runs, sent right after its reply ("replies first")."""

    __slots__ = ("items", "open")

    def __init__(self) -> None:
        self.items: list[tuple[Link, bytes | bytearray]] = []
        self.open = True


#: the batch of the async handler running in this task (each task has its own context)
TASK_BATCH: ContextVar[Batch | None] = ContextVar("netbus_task_batch", default=None)


class Deferral:
    """Shared by a dispatcher's outboxes: the batch of the sync handler running right now."""

    __slots__ = ("batch",)

    def __init__(self) -> None:
        self.batch: Batch | None = None


class User:
    """A user of one service (see the module docstring for what identifies it).

    Attributes:
        uid: the account id, or 0 before login and for direct players.
        proto_type: the proto_type this user last used with this service; pushes use it.
    """

    __slots__ = ("_hash", "_ident", "_out", "_utag", "proto_type", "route", "uid")

    def __init__(
        self, out: Outbox, route: Route, utag: int, *, uid: int, proto_type: int, ident: Any
    ) -> None:
        self._out = out
        self.route = route
        self._utag = utag  #: written into what this user is sent (0 for direct players)
        self.uid = uid
        self.proto_type = proto_type
        self._ident = ident
        self._hash = hash(ident)

    @property
    def logged_in(self) -> bool:
        return self.uid != 0

    @property
    def connected(self) -> bool:
        """False once the link this user came through has closed (pushes are then dropped)."""
        return not self.route.link.closed

    def push(self, ctype: int, body: Any) -> bool:
        """Send push ``ctype`` (declared in the service's ``pushes``) to this user.

        Returns False if the user's link is closed (the push is dropped).

        Raises:
            LocalProtocolError: ``ctype`` is not a declared push, or ``body`` does not fit
                its layout (a bug in the service).
        """
        out = self._out
        data = out.template(ctype, self.proto_type, body, self._utag)
        return out.send(self.route.link, data)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, User):
            return NotImplemented
        return self._hash == other._hash and self._ident == other._ident

    def __repr__(self) -> str:
        who = f"uid={self.uid}" if self.uid else f"utag={self._utag:#x}" if self._utag else "direct"
        return f"<User {who} stype={self._out.stype} via {self.route!r}>"


class Outbox:
    """Encodes one service's pushes and sends them, honouring "replies first".

    Args:
        stype: the service's stype (the header of everything it sends).
        pushes: ctype -> BUF layout (None: JSON only) of every declared push.
        deferral: shared with the dispatcher, which sets a batch while a handler runs.
    """

    __slots__ = ("_deferral", "pushes", "stopped", "stype")

    def __init__(self, stype: int, pushes: dict[int, BodyCodec | None], deferral: Deferral) -> None:
        self.stype = stype
        self.pushes = pushes
        self._deferral = deferral
        #: its server has stopped: the service may be registered with another (a restart);
        #: what it still sends goes to links that are closed or closing
        self.stopped = False

    def template(self, ctype: int, proto_type: int, body: Any, utag: int = 0) -> bytes:
        """One encoded push (header with ``utag``, then the body), in ``proto_type`` or, for
        a push declared JSON only, in JSON.

        Raises:
            LocalProtocolError: undeclared push, body does not fit its layout, too long.
        """
        try:
            codec = self.pushes[ctype]
        except KeyError:
            raise LocalProtocolError(
                f"service {self.stype}: push {ctype} is not declared in its `pushes`"
            ) from None
        if proto_type == ProtoType.JSON or codec is None:
            # A JSON-only push reaches a BUF user as JSON: every client decodes JSON.
            proto_type = ProtoType.JSON
            payload = encode_json_body(body)
        else:
            payload = codec.encode(body)
        data = HEADER.pack(self.stype, ctype, utag, proto_type) + payload
        if len(data) > MAX_CMD_BUF:
            raise LocalProtocolError(f"push of {len(data)} bytes exceeds {MAX_CMD_BUF}")
        return data

    def send(self, link: Link, data: bytes | bytearray) -> bool:
        batch = self._deferral.batch
        if batch is None:
            batch = TASK_BATCH.get()
        if batch is not None and batch.open:
            batch.items.append((link, data))
            return not link.closed
        return link.send_raw(data)

    def broadcast(self, users: Iterable[User], ctype: int, body: Any) -> int:
        """Encode once per proto_type, rewrite only the utag per recipient; see `Service`."""
        batch = self._deferral.batch
        if batch is None:
            batch = TASK_BATCH.get()
        held = batch.items if batch is not None and batch.open else None
        templates: dict[int, bytes] = {}
        sent = 0
        for user in users:
            proto = user.proto_type
            template = templates.get(proto)
            if template is None:
                template = templates[proto] = self.template(ctype, proto, body)
            link = user.route.link
            utag = user._utag
            if utag:
                data: bytes | bytearray = bytearray(template)
                _UTAG.pack_into(data, UTAG_OFFSET, utag)
            else:
                data = template
            if held is not None:
                held.append((link, data))
                sent += not link.closed
            elif link.send_raw(data):
                sent += 1
        return sent
