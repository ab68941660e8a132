"""`Link` life cycle and error containment on a real connected socket pair (no ports)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from netbus.errors import ProtocolError
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink
from tests.helpers import cmd_buf, frame, json_body


class Handler:
    def __init__(self, *, fail_open: bool = False, fail_packet: bool = False) -> None:
        self.fail_open = fail_open
        self.fail_packet = fail_packet
        self.opened = 0
        self.packets: list[bytes] = []
        self.errors: list[ProtocolError] = []
        self.closed: list[str] = []
        self.got = asyncio.Event()

    def link_opened(self, link: Link) -> None:
        self.opened += 1
        if self.fail_open:
            raise RuntimeError("open hook bug")

    def packet_received(self, link: Link, data: bytearray) -> None:
        self.packets.append(bytes(data))
        self.got.set()
        if self.fail_packet:
            raise RuntimeError("packet hook bug")

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.errors.append(exc)
        raise RuntimeError("error hook bug")

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.closed.append(reason)


async def pair(handler: Handler, **kw: int) -> tuple[TcpLink, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    link = TcpLink(handler, **kw)  # type: ignore[arg-type]
    await asyncio.get_running_loop().connect_accepted_socket(lambda: link, ours)
    return link, theirs


@pytest.fixture
async def sockets() -> AsyncIterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


async def eof(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while True:
            try:
                if not await loop.sock_recv(sock, 65536):
                    return
            except ConnectionResetError:
                return


PACKET = cmd_buf(1, 5, 1, json_body('{"0":"x"}'))


def test_unconnected_link() -> None:
    link = TcpLink(Handler())  # type: ignore[arg-type]
    assert link.send_raw(PACKET) is False
    assert link.buffered_out == 0
    link.close(CloseReason.SHUTDOWN)
    link.close(CloseReason.IDLE_TIMEOUT)
    assert link.closed and link.close_reason is CloseReason.SHUTDOWN


async def test_never_connected_link_wait_closed_returns() -> None:
    link = TcpLink(Handler())  # type: ignore[arg-type]
    await link.wait_closed()


async def test_packet_handler_bug_keeps_the_link(sockets: list[socket.socket]) -> None:
    handler = Handler(fail_packet=True)
    link, peer = await pair(handler)
    sockets.append(peer)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, frame(PACKET) * 2)
    async with asyncio.timeout(5):
        while len(handler.packets) < 2:
            handler.got.clear()
            await handler.got.wait()
    assert handler.packets == [PACKET, PACKET]
    assert not link.closed
    assert (link.stats.packets_in, link.stats.bytes_in) == (2, 2 * len(PACKET))
    assert link.send_raw(PACKET)
    assert await loop.sock_recv(peer, 100) == frame(PACKET)
    assert (link.stats.packets_out, link.stats.bytes_out) == (1, len(PACKET))
    link.close()
    await link.wait_closed()
    assert handler.closed == [CloseReason.NORMAL]
    assert link.send_raw(PACKET) is False


async def test_open_hook_bug_closes_that_link(sockets: list[socket.socket]) -> None:
    handler = Handler(fail_open=True)
    link, peer = await pair(handler)
    sockets.append(peer)
    await eof(peer)
    await link.wait_closed()
    assert link.close_reason is CloseReason.HANDLER_ERROR
    assert handler.closed == [CloseReason.HANDLER_ERROR]


async def test_protocol_error_hook_bug_still_closes(sockets: list[socket.socket]) -> None:
    handler = Handler()
    link, peer = await pair(handler)
    sockets.append(peer)
    await asyncio.get_running_loop().sock_sendall(peer, b"\x05\x00")
    await eof(peer)
    await link.wait_closed()
    assert [e.kind for e in handler.errors] == ["frame_length"]
    assert link.stats.protocol_errors == 1
    assert handler.closed == [CloseReason.PROTOCOL_ERROR]
    assert link.close_detail == "frame_length"


async def test_peer_close_reports_once(sockets: list[socket.socket]) -> None:
    handler = Handler()
    link, peer = await pair(handler)
    peer.close()
    await link.wait_closed()
    await link.wait_closed()
    link.close(CloseReason.NORMAL)
    assert handler.closed == [CloseReason.PEER_CLOSED]
    assert link.lost and link.closed
