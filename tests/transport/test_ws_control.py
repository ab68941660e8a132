"""WebSocket control frames over real sockets: they have a budget of their own, and what the
server writes for them (pongs) counts against ``max_buffered_out`` like packets do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.frames import Close, Frame, Opcode

from netbus.transport.reasons import CloseReason
from netbus.transport.ws import CONTROL_BURST, CONTROL_MAX_DROPPED, WsLink

from .fake import Recorder

UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def ping(payload: bytes = b"") -> bytes:
    return Frame(Opcode.PING, payload).serialize(mask=True, extensions=[])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[tuple[int, Recorder]]]]:
    servers: list[asyncio.Server] = []

    async def start(**link_options: int) -> tuple[int, Recorder]:
        handler = Recorder()
        server = await asyncio.get_running_loop().create_server(
            lambda: WsLink(handler, **link_options),
            "127.0.0.1",
            0,  # type: ignore[arg-type]
        )
        servers.append(server)
        return server.sockets[0].getsockname()[1], handler

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


async def upgraded(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, UPGRADE.format(key=key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def read_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(10):
        while chunk := await loop.sock_recv(sock, 65536):
            data += chunk
    return bytes(data)


def frames(data: bytes) -> list[Frame]:
    out = []
    at = 0
    while at < len(data):
        length = data[at + 1] & 0x7F
        out.append(Frame(Opcode(data[at] & 0x0F), data[at + 2 : at + 2 + length]))
        at += 2 + length
    return out


async def test_pings_within_the_budget_are_answered(serve: Callable[..., object]) -> None:
    port, handler = await serve()  # type: ignore[misc]
    sock = await upgraded(port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, ping(b"a") + ping(b"b"))
        data = b""
        async with asyncio.timeout(5):
            while len(data) < 6:
                data += await loop.sock_recv(sock, 100)
        assert [(f.opcode, f.data) for f in frames(data)] == [
            (Opcode.PONG, b"a"),
            (Opcode.PONG, b"b"),
        ]
        assert handler.closed == []
    finally:
        sock.close()


async def test_pings_over_the_budget_go_unanswered(serve: Callable[..., object]) -> None:
    port, handler = await serve()  # type: ignore[misc]
    sock = await upgraded(port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, ping(b"q") * (int(CONTROL_BURST) + 10))
        data = b""
        async with asyncio.timeout(5):
            while len(data) < 3 * int(CONTROL_BURST):
                data += await loop.sock_recv(sock, 4096)
        with contextlib.suppress(TimeoutError):  # nothing more comes
            async with asyncio.timeout(0.3):
                data += await loop.sock_recv(sock, 4096)
    finally:
        sock.close()
    assert [f.data for f in frames(data)] == [b"q"] * int(CONTROL_BURST)  # 10 unanswered
    assert handler.closed == []


async def test_a_ping_flood_is_closed_with_4013(serve: Callable[..., object]) -> None:
    port, handler = await serve()  # type: ignore[misc]
    sock = await upgraded(port)
    try:
        # Few enough to arrive in one read: a server closing with unread input resets the
        # connection, and the close frame could be lost (real floods get that reset).
        count = int(CONTROL_BURST) + CONTROL_MAX_DROPPED + 5
        await asyncio.get_running_loop().sock_sendall(sock, ping(b"x" * 20) * count)
        received = frames(await read_all(sock))
    finally:
        sock.close()
    pongs = [f for f in received if f.opcode is Opcode.PONG]
    assert len(pongs) <= CONTROL_BURST  # the rest went unanswered (a flooder may get none)
    assert received[-1].opcode is Opcode.CLOSE
    assert Close.parse(received[-1].data).code == CloseReason.CONTROL_FLOOD.ws_code == 4013
    await asyncio.sleep(0.05)
    assert handler.closed == [CloseReason.CONTROL_FLOOD]


async def test_pongs_to_a_reader_that_stopped_count_against_the_cap(
    serve: Callable[..., object],
) -> None:
    """With no control budget at all, a client that floods pings and never reads is cut as a
    slow consumer once the pongs queued for it pass max_buffered_out (they used to grow
    without bound: 1.2 GB in 26 s)."""
    port, handler = await serve(  # type: ignore[misc]
        max_buffered_out=256 * 1024,
        control_rate=1e9,
        control_burst=1e9,
        control_max_dropped=10**9,
    )
    sock = await upgraded(port, rcvbuf=4096)
    loop = asyncio.get_running_loop()
    try:
        flood = ping(b"p" * 125) * 1000
        async with asyncio.timeout(20):
            while not handler.closed:
                try:
                    await loop.sock_sendall(sock, flood)
                except (ConnectionResetError, BrokenPipeError):
                    break
        await asyncio.sleep(0.05)
    finally:
        sock.close()
    assert handler.closed == [CloseReason.SLOW_CONSUMER]
