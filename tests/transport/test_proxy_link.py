"""Real client addresses behind trusted proxies (PROXY v1/v2, X-Forwarded-For) and WS
origins, over real sockets: what every limit and log line then reads from ``link.peer_ip``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from netbus.protocol.proxy import encode_v1, encode_v2
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.reasons import CloseReason
from netbus.transport.trust import OriginPolicy, ProxyTrust, TrustedNetworks
from tests.helpers import cmd_buf, frame, json_body

from .fake import Recorder

PACKET = cmd_buf(1, 5, 1, json_body('{"0":"x"}'))
TRUST = TrustedNetworks(["127.0.0.1"])  # 127.0.0.2 is another, untrusted, local address


async def raw(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def closed_unanswered(sock: socket.socket) -> bool:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            return await loop.sock_recv(sock, 100) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
async def tcp() -> AsyncIterator[tuple[Listener, Recorder]]:
    handler = Recorder()
    spec = ListenerSpec(kind="tcp", proxy=ProxyTrust(TRUST, proxy_protocol=True))
    listener = await start_listener(spec, handler)
    yield listener, handler
    listener.close()
    await listener.wait_closed()


@pytest.mark.parametrize("version", [1, 2])
async def test_a_trusted_proxy_names_the_client(
    tcp: tuple[Listener, Recorder], version: int
) -> None:
    listener, handler = tcp
    encode = encode_v1 if version == 1 else encode_v2
    header = encode(("203.0.113.7", 51000), ("127.0.0.1", listener.port))
    sock = await raw(listener.port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, header[:7])  # split anywhere
        await asyncio.sleep(0.05)
        assert handler.opened == []  # not before the header is whole
        await loop.sock_sendall(sock, header[7:] + frame(PACKET))
        await handler.wait(lambda: handler.packets)
        (link,) = handler.opened
        assert (link.peer_ip, link.peer) == ("203.0.113.7", ("203.0.113.7", 51000))
        assert link.proxy_peer[0] == "127.0.0.1"
        assert handler.packets == [PACKET]
    finally:
        sock.close()


async def test_local_command_keeps_the_proxys_address(tcp: tuple[Listener, Recorder]) -> None:
    listener, handler = tcp
    sock = await raw(listener.port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, encode_v2(None) + frame(PACKET))
        await handler.wait(lambda: handler.packets)
        assert handler.opened[0].peer_ip == "127.0.0.1"
    finally:
        sock.close()


async def test_a_trusted_proxy_without_a_header_is_refused(
    tcp: tuple[Listener, Recorder],
) -> None:
    listener, handler = tcp
    sock = await raw(listener.port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, frame(PACKET))
        assert await closed_unanswered(sock)
    finally:
        sock.close()
    await handler.wait(lambda: handler.errors)
    assert handler.opened == [] and handler.packets == []
    assert handler.errors[0].kind == "proxy_header"


async def test_a_header_from_an_untrusted_peer_is_a_protocol_error(
    tcp: tuple[Listener, Recorder],
) -> None:
    listener, handler = tcp
    sock = await raw(listener.port, source="127.0.0.2")
    try:
        header = encode_v1(("203.0.113.7", 1), ("127.0.0.1", listener.port))
        await asyncio.get_running_loop().sock_sendall(sock, header + frame(PACKET))
        assert await closed_unanswered(sock)
    finally:
        sock.close()
    await handler.wait(lambda: handler.closed)
    assert [e.kind for e in handler.errors] == ["proxy_untrusted"]
    assert handler.closed == [CloseReason.PROTOCOL_ERROR] and handler.packets == []
    assert handler.opened[0].peer_ip == "127.0.0.2"


async def test_an_untrusted_peer_without_a_header_is_served(
    tcp: tuple[Listener, Recorder],
) -> None:
    listener, handler = tcp
    sock = await raw(listener.port, source="127.0.0.2")
    try:
        await asyncio.get_running_loop().sock_sendall(sock, frame(PACKET))
        await handler.wait(lambda: handler.packets)
        assert handler.opened[0].peer_ip == "127.0.0.2"
    finally:
        sock.close()


# ------------------------------------------------------------------------- WebSocket
@pytest.fixture
async def ws() -> AsyncIterator[tuple[Listener, Recorder]]:
    handler = Recorder()
    spec = ListenerSpec(
        kind="ws",
        proxy=ProxyTrust(TRUST),
        origins=OriginPolicy(["https://game.example.com"]),
    )
    listener = await start_listener(spec, handler)
    yield listener, handler
    listener.close()
    await listener.wait_closed()


@pytest.mark.parametrize(
    ("source", "client"), [("127.0.0.1", "203.0.113.9"), ("127.0.0.2", "127.0.0.2")]
)
async def test_x_forwarded_for_is_believed_from_trusted_proxies_only(
    ws: tuple[Listener, Recorder], source: str, client: str
) -> None:
    listener, handler = ws
    url = f"ws://127.0.0.1:{listener.port}/ws"
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    async with ws_connect(url, additional_headers=headers, local_addr=(source, 0)) as conn:
        await conn.send(PACKET)
        await handler.wait(lambda: handler.packets)
    assert handler.opened[0].peer_ip == client


async def test_a_forbidden_origin_gets_403(ws: tuple[Listener, Recorder]) -> None:
    listener, handler = ws
    url = f"ws://127.0.0.1:{listener.port}/ws"
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    await handler.wait(lambda: handler.closed)
    assert handler.closed == [CloseReason.FORBIDDEN_ORIGIN]
    # The page's own origin and non-browser clients (no Origin) pass.
    for origin in ("https://game.example.com", None):
        async with ws_connect(url, origin=origin) as conn:  # type: ignore[arg-type]
            await conn.send(PACKET)
    await handler.wait(lambda: len(handler.packets) == 2)
