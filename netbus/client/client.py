"""An asyncio client for netbus servers, over TCP, TLS, WS or WSS, in JSON or BUF.

The protocol has no request ids, so a reply is matched to the oldest pending request with
the same (stype, ctype); every other packet is a push and lands in `Client.pushes`.

Errors (all from `netbus.errors`; the client never lets a ``websockets`` exception out):

- `ConnectionClosed` (a `ConnectionError`): `Client.connect` could not connect (refused,
  TLS, WebSocket handshake, timeout), or the connection closed before the reply came;
- `ServiceUnavailable` / `LoginRequired`: the gateway could not deliver the request
  (SERVICE_UNAVAILABLE / LOGIN_REQUIRED notices);
- `RequestFailed`: the service answered REQUEST_FAILED (``status``: unknown command, bad
  request, server error, busy, not allowed; docs/protocol.md §7.1);
- `RequestTimeout` (a `TimeoutError`): no answer within the request's timeout;
- `LocalProtocolError`: the body does not fit the command's layout (a bug in the caller).

Heartbeats: while connected the client sends a HEARTBEAT every ``heartbeat`` seconds (20 by
default, None turns them off), so an idle connection is not cut by the gateway's idle
timeout; once the peer has echoed one, silence for 2.5 intervals closes the connection as
dead. Echoes never appear in `pushes`.

Codecs: JSON needs none. For BUF, pass the layouts of the services you talk to:
``Client.connect(url, codecs=client_codecs(MyService))`` (`netbus.service.client_codecs`);
the control channel's layouts are always included.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import WebSocketException
from websockets.protocol import State as WsState

from netbus.errors import (
    ConnectionClosed,
    LoginRequired,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
    ServiceUnavailable,
)
from netbus.protocol.control import CONTROL_CODECS, CONTROL_STYPE, GatewayCmd
from netbus.protocol.header import MAX_CMD_BUF, ProtoType, unpack_header
from netbus.protocol.registry import CodecRegistry, Direction
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink

__all__ = ["DEFAULT_HEARTBEAT", "Client", "Push"]

#: seconds between heartbeats (the gateway's default idle timeout is 90 s)
DEFAULT_HEARTBEAT = 20.0
#: silence, in heartbeat intervals, after which a peer that echoes heartbeats is dead
_DEAD_AFTER = 2.5

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

    Args:
        proto_type: default for requests that do not say.
        codecs: BUF layouts of the services this client talks to (the control channel's
            are always added).
        heartbeat: seconds between heartbeats; None (or 0) sends none.
        clock: monotonic seconds, for the dead-link check (inject a fake one in tests).
    """

    def __init__(
        self,
        *,
        proto_type: int = ProtoType.JSON,
        codecs: CodecRegistry | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.proto_type = proto_type
        self.codecs = CONTROL_CODECS if codecs is None else CONTROL_CODECS | codecs
        self.heartbeat_interval = heartbeat or None
        self._clock = clock
        self.pushes: asyncio.Queue[Push] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.uid = 0
        self.heartbeats_sent = 0
        self._pending: dict[tuple[int, int], deque[asyncio.Future[Any]]] = {}
        self._link: Link | None = None
        self._ws: ClientConnection | None = None
        self._ws_reader: asyncio.Task[None] | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_received = 0.0
        self._echo_seen = False

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
        codecs: CodecRegistry | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        clock: Callable[[], float] | None = None,
    ) -> Client:
        """Connect to ``tcp://``, ``tls://``, ``ws://`` or ``wss://`` host:port[/path].

        For ``tls://`` and ``wss://`` pass ``ssl`` (a client context) unless the server's
        certificate is trusted by the system store. ``local_addr`` binds the socket's source
        (host, port) as `loop.create_connection` does, e.g. ``("127.0.0.2", 0)`` to spread
        many connections over several loopback addresses.

        Raises:
            ValueError: an unsupported URL scheme.
            ConnectionClosed: the connection could not be opened (the cause is chained).
        """
        client = cls(proto_type=proto_type, codecs=codecs, heartbeat=heartbeat, clock=clock)
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in ("tcp", "tls", "ws", "wss"):
            raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}")
        if scheme in ("tls", "wss") and ssl is None:
            ssl = ssl_module.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                await client._open(
                    url, parts.hostname, parts.port, scheme, ssl, timeout, local_addr
                )
        except TimeoutError as exc:
            raise ConnectionClosed(f"could not connect to {url}: timed out") from exc
        except (OSError, EOFError, WebSocketException) as exc:
            raise ConnectionClosed(f"could not connect to {url}: {exc}") from exc
        client._started()
        return client

    async def _open(
        self,
        url: str,
        host: str | None,
        port: int | None,
        scheme: str,
        ssl: ssl_module.SSLContext | None,
        timeout: float,
        local_addr: tuple[str, int] | None,
    ) -> None:
        if scheme in ("tcp", "tls"):
            loop = asyncio.get_running_loop()
            link = TcpLink(self)
            # asyncio takes None here (a missing port reaches getaddrinfo as 0, a missing
            # host raises ValueError); typeshed's overloads only allow str and int.
            await loop.create_connection(
                lambda: link,
                cast(str, host),
                cast(int, port),
                ssl=ssl if scheme == "tls" else None,
                server_hostname=host if scheme == "tls" else None,
                local_addr=local_addr,
            )
            self._link = link
        else:
            self._ws = await ws_connect(
                url,
                ssl=ssl if scheme == "wss" else None,
                compression=None,
                max_size=MAX_CMD_BUF,
                ping_interval=None,
                open_timeout=timeout,
                local_addr=local_addr,  # passed on to loop.create_connection
            )
            self._ws_reader = asyncio.create_task(self._read_ws())

    # ------------------------------------------------------------------- heartbeats
    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _started(self) -> None:
        self._last_received = self._now()
        if self.heartbeat_interval and not self.closed.is_set():
            loop = asyncio.get_running_loop()
            self._beat = loop.call_later(self.heartbeat_interval, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        """Send one HEARTBEAT (or give up on a peer that stopped answering); re-arm."""
        self._beat = None
        interval = self.heartbeat_interval
        if self.closed.is_set() or not interval:
            return
        if self._echo_seen and self._now() - self._last_received > _DEAD_AFTER * interval:
            silence = _DEAD_AFTER * interval
            self.close_reason = f"heartbeat timeout: nothing received for {silence:g}s"
            self._abort()
            self._closed(self.close_reason)
            return
        try:
            self.send(CONTROL_STYPE, GatewayCmd.HEARTBEAT, None)
            self.heartbeats_sent += 1
        except ConnectionClosed:
            return
        self._beat = asyncio.get_running_loop().call_later(interval, self._heartbeat_tick)

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
        except WsConnectionClosed as exc:
            reason = f"closed: {exc}"
        except (OSError, WebSocketException) as exc:
            reason = f"closed: {exc}"
        finally:
            self._closed(reason)
            with contextlib.suppress(OSError, WebSocketException):
                await self._ws.close()

    def _closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        self.closed.set()
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        for queue in self._pending.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(ConnectionClosed(f"connection closed: {self.close_reason}"))
        self._pending.clear()

    def _on_cmd(self, cmd_buf: bytearray) -> None:
        try:
            stype, ctype, _utag, proto_type = unpack_header(cmd_buf)
            body = self.codecs.decode_body(cmd_buf, stype, ctype, proto_type, Direction.TO_CLIENT)
        except ProtocolError as exc:
            self.close_reason = f"server sent a malformed packet: {exc}"
            self._abort()
            return
        if self.heartbeat_interval:
            self._last_received = self._now()
        if stype == CONTROL_STYPE:
            if ctype == GatewayCmd.REQUEST_FAILED and self._request_failed(body):
                return
            if ctype in _REFUSALS:
                self._fail_pending(body, _REFUSALS[ctype])
            elif ctype == GatewayCmd.HEARTBEAT:
                self._echo_seen = True
                self._resolve(stype, ctype, body)  # else: an automatic one's echo, no push
                return
        if self._resolve(stype, ctype, body):
            return
        self.pushes.put_nowait(Push(stype, ctype, body, proto_type))

    def _resolve(self, stype: int, ctype: int, body: Any) -> bool:
        queue = self._pending.get((stype, ctype))
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(body)
                return True
        return False

    def _request_failed(self, body: Any) -> bool:
        """Fail the request REQUEST_FAILED answers; False if none is pending (then a push)."""
        if not isinstance(body, dict):
            return False
        stype, ctype, status = body.get("stype"), body.get("ctype"), body.get("status")
        if not all(type(n) is int for n in (stype, ctype, status)):
            return False
        waiting = self._pending.get((stype, ctype))  # type: ignore[arg-type]
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_exception(RequestFailed(stype, ctype, status))  # type: ignore[arg-type]
                return True
        return False

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
        """Send one command without waiting for anything.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            LocalProtocolError: ``body`` does not fit the command's layout.
        """
        cmd_buf = self.codecs.encode(
            stype,
            ctype,
            body,
            proto_type=proto_type or self.proto_type,
            direction=Direction.TO_SERVER,
        )
        self.send_raw(cmd_buf)

    def send_raw(self, cmd_buf: bytes) -> None:
        """Send already-encoded bytes (tests use it to send hostile packets).

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        if self.closed.is_set():
            raise ConnectionClosed(f"connection closed: {self.close_reason}")
        if self._link is not None:
            self._link.send_raw(cmd_buf)
        elif self._ws is not None:
            if self._ws.protocol.state is not WsState.OPEN:
                # Closing handshake under way: the reader has not seen the end yet.
                raise ConnectionClosed(f"connection closing: {self._ws.protocol.state.name}")
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
            RequestFailed: the service answered REQUEST_FAILED.
            ServiceUnavailable: the gateway could not deliver it (LoginRequired: not yet
                logged in).
            RequestTimeout: no reply within ``timeout`` seconds.
            ConnectionClosed: the connection closed first.
            LocalProtocolError: ``body`` does not fit the command's layout.
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
        """The next push, skipping ones that do not match ``stype``/``ctype`` if given.

        Raises:
            TimeoutError: none arrived within ``timeout`` seconds.
        """
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
        """Close the connection (idempotent); pending requests fail with `ConnectionClosed`."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._link is not None:
            self._link.close(CloseReason.NORMAL, "client closed")
            await self._link.wait_closed()
        if self._ws is not None:
            with contextlib.suppress(OSError, WebSocketException):
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

    # --------------------------------------------------- conveniences: built-in services
    async def heartbeat(self, *, timeout: float = 5.0) -> None:
        """One HEARTBEAT round trip (besides the automatic ones)."""
        await self.request(CONTROL_STYPE, GatewayCmd.HEARTBEAT, None, timeout=timeout)

    async def guest_login(self, key: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """Auth GUEST_LOGIN (always JSON: Auth has no BUF layout). Returns the reply object."""
        reply = await self.request(
            Stype.Auth, AuthCmd.GUEST_LOGIN, key, proto_type=ProtoType.JSON, timeout=timeout
        )
        if isinstance(reply, dict) and reply.get("status") == 1:
            self.uid = int(reply.get("uid", 0))
        return reply  # type: ignore[no-any-return]

    async def enter(self, uname: str, usex: int, *, timeout: float = 5.0) -> int:
        """Talkroom Enter (for BUF, connect with the talkroom's codecs)."""
        body = {"uname": uname, "usex": usex}
        return await self.request(Stype.TalkRoom, TalkroomCmd.Enter, body, timeout=timeout)  # type: ignore[no-any-return]

    async def exit(self, *, timeout: float = 5.0) -> int:
        return await self.request(Stype.TalkRoom, TalkroomCmd.Exit, None, timeout=timeout)  # type: ignore[no-any-return]

    async def send_msg(self, msg: str, *, timeout: float = 5.0) -> dict[str, Any]:
        return await self.request(Stype.TalkRoom, TalkroomCmd.SendMsg, msg, timeout=timeout)  # type: ignore[no-any-return]
