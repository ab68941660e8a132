"""A worker's connections: the raw frame driver and the SDK client, set up and logged in.

Two client kinds (`ClientKind`):

* ``sdk``: `netbus.client.Client`, the framework's own client library (futures matched by
  (stype, ctype), decoded bodies, a push queue). Used for login, ccu (WebSocket), talkroom and
  the fanout sender.
* ``raw``: a `TcpLink` from netbus' transport with a minimal handler that sends one
  pre-encoded cmd_buf and matches replies FIFO on (stype, ctype) without decoding them. Used
  where the client side would otherwise eat the CPU the servers need on a small box: relay
  round trips at tens of thousands per second, and fanout receivers taking 100k pushes/s.
  Setup (guest login, Enter) goes through the same link with the netbus codecs.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from netbus.client import Client
from netbus.errors import ProtocolError
from netbus.protocol.codec import decode_json_body
from netbus.protocol.control import GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.protocol.registry import Direction
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink

from netbus_bench.codecs import BENCH_CODECS
from netbus_bench.worker import Worker

__all__ = ["RawConn", "SetupError", "open_all", "raw_conn", "sdk_conn"]


class SetupError(Exception):
    """A connection could not be logged in or enter the room before the load."""


def guest_key(tag: str, wid: int, n: int) -> str:
    """A new guest account per connection: unique across workers, phases and runs."""
    return f"bench-{tag}-{wid}-{n}-{secrets.token_hex(6)}"[:64]


class RawConn:
    """A netbus `TcpLink` with a request/reply loop that never decodes the hot path."""

    __slots__ = ("arrivals", "closed", "frame", "link", "rc", "rs", "sent_at", "w", "waiters")

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.link = TcpLink(self)
        self.waiters: dict[tuple[int, int], deque[asyncio.Future[bytearray]]] = {}
        self.sent_at: deque[int] = deque()
        self.frame = b""
        self.rs = self.rc = -1
        self.arrivals = 0  #: UserArrived pushes seen (fanout waits for the whole room)
        self.closed = False

    async def connect(self, url: str, local_addr: tuple[str, int] | None) -> None:
        parts = urlsplit(url)
        await asyncio.get_running_loop().create_connection(
            lambda: self.link,
            parts.hostname or "127.0.0.1",
            parts.port or 0,
            local_addr=local_addr,
        )

    async def call(
        self, stype: int, ctype: int, body: Any, proto_type: int = ProtoType.JSON
    ) -> Any:
        """One request during setup; returns the decoded reply body."""
        fut: asyncio.Future[bytearray] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault((stype, ctype), deque()).append(fut)
        data = BENCH_CODECS.encode(
            stype, ctype, body, proto_type=proto_type, direction=Direction.TO_SERVER
        )
        if not self.link.send_raw(data):
            raise ConnectionError("link closed")
        async with asyncio.timeout(10):
            cmd_buf = await fut
        return BENCH_CODECS.decode_body(cmd_buf, stype, ctype, cmd_buf[8], Direction.TO_CLIENT)

    def arm(self, frame: bytes, stype: int, ctype: int) -> None:
        """The frame `send` writes, and the (stype, ctype) of its reply."""
        self.frame, self.rs, self.rc = frame, stype, ctype

    def send(self) -> None:
        self.sent_at.append(time.monotonic_ns())
        self.w.sent += 1
        self.link.send_raw(self.frame)

    # LinkHandler
    def link_opened(self, link: Link) -> None:
        pass

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        stype = cmd_buf[0] | cmd_buf[1] << 8
        ctype = cmd_buf[2] | cmd_buf[3] << 8
        w = self.w
        if stype == self.rs and ctype == self.rc and self.sent_at:
            now = time.monotonic_ns()
            w.record(now, self.sent_at.popleft())
            if w.closed_loop and w.may_send(now):
                self.send()
            return
        queue = self.waiters.get((stype, ctype))
        if queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(cmd_buf)
            return
        if stype == Stype.Gateway and ctype in (
            GatewayCmd.SERVICE_UNAVAILABLE,
            GatewayCmd.LOGIN_REQUIRED,
        ):
            w.error(f"gateway_notice_{ctype}")
            if self.sent_at:  # the refused request will get no reply: free its slot
                self.sent_at.popleft()
                if w.closed_loop and w.may_send(time.monotonic_ns()):
                    self.send()
            return
        if stype != Stype.TalkRoom:
            return
        if ctype == TalkroomCmd.UserMsg:
            if w.listener:
                self._delivery(cmd_buf)
            else:
                w.extra += 1
        elif ctype == TalkroomCmd.UserArrived:
            self.arrivals += 1

    def _delivery(self, cmd_buf: bytearray) -> None:
        """A fanout UserMsg: its text starts with the sender's monotonic_ns."""
        now = time.monotonic_ns()
        w = self.w
        try:
            text = decode_json_body(cmd_buf)["2"]
            sent = int(text[: text.index(" ")])
        except (ProtocolError, KeyError, TypeError, ValueError):
            w.error("bad_delivery")
            return
        if not w.count:
            w.t_first = now
        w.record(now, sent)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.closed = True
        for queue in self.waiters.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(ConnectionError(reason))
        self.waiters.clear()
        self.w.conn_lost()

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.w.error(f"protocol_{exc.kind}")


async def raw_conn(w: Worker, i: int) -> RawConn:
    """Connection ``i`` of this worker as a `RawConn`, logged in and in the room if asked."""
    spec = w.spec.connect
    conn = RawConn(w)
    await conn.connect(spec.url, w.local_addr(i))
    w.conns += 1
    try:
        if spec.login:
            reply = await conn.call(
                Stype.Auth, AuthCmd.GUEST_LOGIN, guest_key(spec.tag, w.spec.wid, i)
            )
            if not isinstance(reply, dict) or reply.get("status") != 1:
                raise SetupError(f"guest login refused: {reply!r}")
        if spec.enter:
            status = await conn.call(
                Stype.TalkRoom,
                TalkroomCmd.Enter,
                {"uname": f"{spec.tag[:8]}{w.spec.wid}_{i}", "usex": i % 2},
            )
            if status != 1:
                raise SetupError(f"Enter refused: {status!r}")
    except BaseException:
        conn.link.close(CloseReason.NORMAL, "setup failed", abort=True)
        raise
    return conn


async def sdk_conn(w: Worker, i: int) -> Client:
    """Connection ``i`` of this worker as a `Client`, logged in and in the room if asked."""
    spec = w.spec.connect
    client = await Client.connect(
        spec.url, timeout=10, local_addr=w.local_addr(i), codecs=BENCH_CODECS, heartbeat=None
    )
    w.conns += 1
    try:
        if spec.login:
            reply = await client.guest_login(guest_key(spec.tag, w.spec.wid, i), timeout=10)
            if reply.get("status") != 1:
                raise SetupError(f"guest login refused: {reply!r}")
        if spec.enter:
            status = await client.enter(f"{spec.tag[:8]}{w.spec.wid}_{i}", i % 2, timeout=10)
            if status != 1:
                raise SetupError(f"Enter refused: {status!r}")
    except BaseException:
        w.conns -= 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 2)
        raise
    return client


async def open_all(w: Worker, make: Callable[[Worker, int], Awaitable[Any]]) -> list[Any]:
    """All of the worker's connections, ``concurrency`` at a time; failures are counted.

    Raises:
        SetupError: not one connection could be set up.
    """
    spec = w.spec.connect
    async with asyncio.timeout(spec.setup_timeout):
        made = await w.gather_bounded(range(spec.conns), lambda i: make(w, i), spec.concurrency)
    ok = [m for m in made if not isinstance(m, BaseException)]
    for m in made:
        if isinstance(m, BaseException):
            w.error(f"setup_{type(m).__name__}")
    if not ok:
        first = next(m for m in made if isinstance(m, BaseException))
        raise SetupError(f"no connection could be set up: {first!r}") from first
    return ok
