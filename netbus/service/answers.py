"""What a request is answered with, and in what order: replies, refusals, the ordered queues.

`Command` is a declared command bound to a service instance. `Origin` says where a request
came from and what it was: all that is needed to answer it. `answer_failure` builds the one
answer a request that cannot be served gets (the command's in-kind error reply, or
REQUEST_FAILED, docs/protocol.md §7.1). `AnswerQueues` keeps one user's answers to one
command in request order while an ``async`` handler is still running.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from netbus.errors import LocalProtocolError, RequestRefused
from netbus.protocol.codec import BodyCodec, encode_json_body
from netbus.protocol.control import (
    CONTROL_CODECS,
    CONTROL_STYPE,
    GatewayCmd,
    RequestStatus,
)
from netbus.protocol.header import HEADER, MAX_CMD_BUF, PRELOGIN_BIT, ProtoType
from netbus.protocol.registry import Direction
from netbus.service.commands import NO_ERROR_REPLY, CommandSpec
from netbus.service.user import Route, User
from netbus.transport.link import Link

__all__ = [
    "AnswerQueues",
    "Command",
    "Origin",
    "Slot",
    "answer_failure",
    "encode_reply",
    "refusal",
    "who",
]

_JSON = ProtoType.JSON
_REQUEST_FAILED = GatewayCmd.REQUEST_FAILED
_Key = tuple[Route, int, int]  #: (route, utag, ctype): one user's requests of one command


class Command:
    """A declared command bound to one service instance (built once, at registration)."""

    __slots__ = ("buf", "ctype", "error_reply", "handler", "is_async", "name", "reply", "reply_buf")

    def __init__(self, spec: CommandSpec, handler: Callable[[User, Any], Any]) -> None:
        self.ctype = spec.ctype
        self.name = spec.name
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.reply = spec.reply
        self.buf: BodyCodec | None = spec.buf
        self.reply_buf: BodyCodec | None = spec.reply_buf
        self.error_reply = spec.error_reply


class Origin(NamedTuple):
    """Where a request came from and what it was (built only on the paths that fail)."""

    route: Route
    stype: int
    ctype: int
    utag: int
    proto: int


def encode_reply(stype: int, cmd: Command, utag: int, proto: int, value: Any) -> bytes:
    """The reply ``value`` as a cmd_buf, in the request's proto_type.

    Raises:
        LocalProtocolError: the value does not fit the reply layout, or is too long.
    """
    if proto == _JSON:
        payload = encode_json_body(value)
    elif cmd.reply_buf is None:
        raise LocalProtocolError(f"({stype}, {cmd.ctype}) has no BUF reply layout")
    else:
        payload = cmd.reply_buf.encode(value)
    data = HEADER.pack(stype, cmd.ctype, utag, proto) + payload
    if len(data) > MAX_CMD_BUF:
        raise LocalProtocolError(f"reply of {len(data)} bytes exceeds {MAX_CMD_BUF}")
    return data


def answer_failure(origin: Origin, cmd: Command | None, status: RequestStatus) -> bytes:
    """The in-kind error reply if the command declares one that fits, else REQUEST_FAILED."""
    if cmd is not None and cmd.error_reply is not NO_ERROR_REPLY:
        value = cmd.error_reply(status) if callable(cmd.error_reply) else cmd.error_reply
        try:
            return encode_reply(origin.stype, cmd, origin.utag, origin.proto, value)
        except LocalProtocolError:
            pass  # e.g. a BUF request whose in-kind reply is JSON only
    body = {"stype": origin.stype, "ctype": origin.ctype, "status": int(status)}
    payload = CONTROL_CODECS.encode_body(
        CONTROL_STYPE, _REQUEST_FAILED, origin.proto, body, Direction.TO_CLIENT
    )
    return HEADER.pack(CONTROL_STYPE, _REQUEST_FAILED, origin.utag, origin.proto) + payload


def refusal(exc: RequestRefused) -> tuple[RequestStatus, str]:
    """The status and the metrics reason of a `RequestRefused` a handler raised."""
    try:
        status = RequestStatus(exc.status)
    except ValueError:
        status = RequestStatus.BAD_REQUEST
    return status, "not_allowed" if status is RequestStatus.NOT_ALLOWED else "bad_request"


def who(origin: Origin, user: User | None) -> str:
    """Who sent a request, for logs: a uid, a pre-login key, or a direct player's address."""
    route, utag = origin.route, origin.utag
    if route.direct:
        return f"direct player {route.link.peer}"
    if user is not None and user.uid:
        return f"uid {user.uid}"
    if utag and utag < PRELOGIN_BIT:
        return f"uid {utag}"
    return f"pre-login key {utag:#x} via {route.link.peer}"


class Slot:
    """One answer in a queue; sent when it and every answer before it are ready."""

    __slots__ = ("data", "pushes", "ready")

    def __init__(self, data: bytes | None = None, *, ready: bool = False) -> None:
        self.data = data
        self.pushes: list[tuple[Link, bytes | bytearray]] = []
        self.ready = ready


class AnswerQueues:
    """Per (route, utag, ctype): the answers of requests still being handled, in order.

    Only ``async`` commands open a queue; a request refused at once while an earlier one of
    the same command is still running waits behind it, so the client's FIFO matching holds.
    """

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[_Key, deque[Slot]] = {}

    def __bool__(self) -> bool:
        return bool(self._queues)

    def open(self, key: _Key) -> Slot:
        """A place in ``key``'s queue for a request whose answer comes later."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        slot = Slot()
        queue.append(slot)
        return slot

    def send_or_hold(self, key: _Key, data: bytes) -> None:
        """Send an answer that is ready now, unless earlier ones of ``key`` are pending."""
        queue = self._queues.get(key)
        if queue:
            queue.append(Slot(data, ready=True))
        else:
            key[0].link.send_raw(data)

    def fill(
        self, key: _Key, slot: Slot, data: bytes | None, pushes: list[tuple[Link, Any]]
    ) -> None:
        """``slot``'s answer (None: none) and its pushes are ready: send what may go now."""
        slot.data = data
        slot.pushes = pushes
        slot.ready = True
        queue = self._queues.get(key)
        if queue is None:
            return
        link = key[0].link
        while queue and queue[0].ready:
            done = queue.popleft()
            if done.data is not None:
                link.send_raw(done.data)
            for target, push in done.pushes:
                target.send_raw(push)
        if not queue:
            del self._queues[key]
