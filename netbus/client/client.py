"""An asyncio client for netbus servers, over TCP, TLS, WS or WSS, in JSON or BUF.

The protocol has no request ids, so a reply is matched to the oldest pending request with
the same (stype, ctype); every other packet is a push and lands in `Client.pushes`. A gateway
SERVICE_UNAVAILABLE notice fails the matching pending request with `ServiceUnavailable`.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import deque
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState

from netbus.errors import LoginRequired, ProtocolError, RequestTimeout, ServiceUnavailable
from netbus.protocol.commands import (
    CODECS,
    AuthCmd,
    Direction,
    GatewayCmd,
    Stype,
    TalkroomCmd,
)
from netbus.protocol.header import MAX_CMD_BUF, ProtoType, unpack_header
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink

__all__ = ["Client", "Push"]


_REFUSALS: dict[int, type[ServiceUnavailable]] = {
    GatewayCmd.SERVICE_UNAVAILABLE: ServiceUnavailable,
    GatewayCmd.LOGIN_REQUIRED: LoginRequired,
}


class Push(NamedTuple):
    stype: int
    ctype: int
    body: Any
    proto_type: int


class Client:
    """One connection to a gateway (or a standalone server).

    Use `Client.connect`, then `request` / `send` and read pushes with `next_push`.
    """

    def __init__(self, *, proto_type: int = ProtoType.JSON) -> None:
        self.proto_type = proto_type
        self.pushes: asyncio.Queue[Push] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.uid = 0
        self._pending: dict[tuple[int, int], deque[asyncio.Future[Any]]] = {}
        self._link: Link | None = None
        self._ws: ClientConnection | None = None
        self._ws_reader: asyncio.Task[None] | None = None

    # --------------------------------------------------------------------- connecting
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        proto_type: int = ProtoType.JSON,
        ssl: ssl_module.SSLContext | None = None,
        timeout: float = 5.0,
        local_addr: tuple[str, int] | None = None,
    ) -> Client:
        """Connect to ``tcp://``, ``tls://``, ``ws://`` or ``wss://`` host:port[/path].

        For ``tls://`` and ``wss://`` pass ``ssl`` (a client context) unless the server's
        certificate is trusted by the system store. ``local_addr`` binds the socket's source
        (host, port) as `loop.create_connection` does, e.g. ``("127.0.0.2", 0)`` to spread
        many connections over several loopback addresses.
        """
        client = cls(proto_type=proto_type)
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme in ("tls", "wss") and ssl is None:
            ssl = ssl_module.create_default_context()
        async with asyncio.timeout(timeout):
            if scheme in ("tcp", "tls"):
                loop = asyncio.get_running_loop()
                link = TcpLink(client)
                # asyncio takes None here (a missing port reaches getaddrinfo as 0, a missing
                # host raises ValueError); typeshed's overloads only allow str and int.
                await loop.create_connection(
                    lambda: link,
                    cast(str, parts.hostname),
                    cast(int, parts.port),
                    ssl=ssl if scheme == "tls" else None,
                    server_hostname=parts.hostname if scheme == "tls" else None,
                    local_addr=local_addr,
                )
                client._link = link
            elif scheme in ("ws", "wss"):
                client._ws = await ws_connect(
                    url,
                    ssl=ssl if scheme == "wss" else None,
                    compression=None,
                    max_size=MAX_CMD_BUF,
                    ping_interval=None,
                    open_timeout=timeout,
                    local_addr=local_addr,  # passed on to loop.create_connection
                )
                client._ws_reader = asyncio.create_task(client._read_ws())
            else:
                raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}")
        return client

    # ------------------------------------------------------------------- link handler
    def link_opened(self, link: Link) -> None:
        pass

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        self._on_cmd(cmd_buf)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.close_reason = f"server sent a malformed frame: {exc}"

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        detail = f": {link.close_detail}" if link.close_detail else ""
        self._closed(self.close_reason or f"{reason}{detail}")

    async def _read_ws(self) -> None:
        assert self._ws is not None
        reason = "closed"
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    reason = "server sent a text message"
                    break
                self._on_cmd(bytearray(message))
        except ConnectionClosed as exc:
            reason = f"closed: {exc}"
        finally:
            self._closed(reason)
            await self._ws.close()

    def _closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        self.closed.set()
        error = ConnectionError(f"connection closed: {self.close_reason}")
        for queue in self._pending.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(error)
        self._pending.clear()

    def _on_cmd(self, cmd_buf: bytearray) -> None:
        try:
            stype, ctype, _utag, proto_type = unpack_header(cmd_buf)
            body = CODECS.decode_body(cmd_buf, stype, ctype, proto_type, Direction.TO_CLIENT)
        except ProtocolError as exc:
            self.close_reason = f"server sent a malformed packet: {exc}"
            self._abort()
            return
        if stype == Stype.Gateway and ctype in _REFUSALS:
            self._fail_pending(body, _REFUSALS[ctype])
        queue = self._pending.get((stype, ctype))
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(body)
                return
        self.pushes.put_nowait(Push(stype, ctype, body, proto_type))

    def _fail_pending(self, body: Any, error: type[ServiceUnavailable]) -> None:
        """Fail the request a refusal names; ctype 0 (the service went down) fails them all."""
        if not isinstance(body, dict):
            return
        key: tuple[Any, Any] = (body.get("stype"), body.get("ctype"))  # unvalidated JSON
        if key[1] == 0:
            for (stype, ctype), queue in self._pending.items():
                if stype == key[0]:
                    for fut in queue:
                        if not fut.done():
                            fut.set_exception(error(stype, ctype))
                    queue.clear()
            return
        waiting = self._pending.get(key)
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_exception(error(*key))
                return

    def _abort(self) -> None:
        if self._link is not None:
            self._link.close(CloseReason.PROTOCOL_ERROR, self.close_reason, abort=True)
        elif self._ws is not None:
            self._ws.transport.abort()

    # ---------------------------------------------------------------------- sending
    def send(self, stype: int, ctype: int, body: Any, *, proto_type: int | None = None) -> None:
        """Send one command without waiting for anything."""
        cmd_buf = CODECS.encode(
            stype,
            ctype,
            body,
            proto_type=proto_type or self.proto_type,
            direction=Direction.TO_SERVER,
        )
        self.send_raw(cmd_buf)

    def send_raw(self, cmd_buf: bytes) -> None:
        """Send already-encoded bytes (tests use it to send hostile packets)."""
        if self.closed.is_set():
            raise ConnectionError(f"connection closed: {self.close_reason}")
        if self._link is not None:
            self._link.send_raw(cmd_buf)
        elif self._ws is not None:
            if self._ws.protocol.state is not WsState.OPEN:
                # Closing handshake under way: the reader has not seen the end yet.
                raise ConnectionError(f"connection closing: {self._ws.protocol.state.name}")
            self._ws.protocol.send_binary(cmd_buf)
            self._ws.send_data()

    async def request(
        self,
        stype: int,
        ctype: int,
        body: Any,
        *,
        proto_type: int | None = None,
        timeout: float = 5.0,
    ) -> Any:
        """Send a command and wait for the reply with the same (stype, ctype).

        Raises:
            ServiceUnavailable: the gateway could not deliver it.
            RequestTimeout: no reply within ``timeout`` seconds.
            ConnectionError: the connection closed first.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((stype, ctype), deque()).append(fut)
        try:
            self.send(stype, ctype, body, proto_type=proto_type)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise RequestTimeout(f"no reply to ({stype}, {ctype}) in {timeout}s") from None
        finally:
            queue = self._pending.get((stype, ctype))
            if queue and fut in queue:
                queue.remove(fut)

    async def next_push(
        self, stype: int | None = None, ctype: int | None = None, *, timeout: float = 5.0
    ) -> Push:
        """The next push, skipping ones that do not match ``stype``/``ctype`` if given."""
        async with asyncio.timeout(timeout):
            while True:
                push = await self.pushes.get()
                if (stype is None or push.stype == stype) and (
                    ctype is None or push.ctype == ctype
                ):
                    return push

    def drain_pushes(self) -> list[Push]:
        out = []
        while not self.pushes.empty():
            out.append(self.pushes.get_nowait())
        return out

    async def close(self) -> None:
        if self._link is not None:
            self._link.close(CloseReason.NORMAL, "client closed")
            await self._link.wait_closed()
        if self._ws is not None:
            await self._ws.close()
            if self._ws_reader is not None:
                await self._ws_reader
        self._closed("client closed")

    async def wait_closed(self, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.close_reason

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ conveniences
    async def guest_login(self, key: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """GUEST_LOGIN (always JSON: Auth has no BUF layout). Returns the reply object."""
        reply = await self.request(
            Stype.Auth, AuthCmd.GUEST_LOGIN, key, proto_type=ProtoType.JSON, timeout=timeout
        )
        if isinstance(reply, dict) and reply.get("status") == 1:
            self.uid = int(reply.get("uid", 0))
        return reply  # type: ignore[no-any-return]

    async def enter(self, uname: str, usex: int, *, timeout: float = 5.0) -> int:
        body = {"uname": uname, "usex": usex}
        return await self.request(Stype.TalkRoom, TalkroomCmd.Enter, body, timeout=timeout)  # type: ignore[no-any-return]

    async def exit(self, *, timeout: float = 5.0) -> int:
        return await self.request(Stype.TalkRoom, TalkroomCmd.Exit, None, timeout=timeout)  # type: ignore[no-any-return]

    async def send_msg(self, msg: str, *, timeout: float = 5.0) -> dict[str, Any]:
        return await self.request(Stype.TalkRoom, TalkroomCmd.SendMsg, msg, timeout=timeout)  # type: ignore[no-any-return]

    async def heartbeat(self, *, timeout: float = 5.0) -> None:
        await self.request(Stype.Gateway, GatewayCmd.HEARTBEAT, None, timeout=timeout)
