"""Service-link authentication over real sockets: nothing is read before both sides proved
the cluster secret (docs/security.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from netbus.protocol.linkauth import HELLO_SIZE
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.preamble import AuthStep
from netbus.transport.upstream import Backoff, Upstream
from tests.helpers import cmd_buf, frame, json_body

from .fake import Recorder

SECRET = b"transport-test-cluster-secret-01"
PACKET = cmd_buf(1, 5, 1, json_body('{"0":"x"}'), utag=7)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Listener, Recorder]]:
    handler = Recorder()
    listener = await start_listener(ListenerSpec(kind="tcp", auth_secret=SECRET), handler)
    yield listener, handler
    listener.close()
    await listener.wait_closed()


async def test_same_secret_links_and_carries_packets(
    service: tuple[Listener, Recorder],
) -> None:
    listener, handler = service
    mine = Recorder()
    upstream = Upstream("127.0.0.1", listener.port, mine, secret=SECRET, heartbeat=0)
    upstream.start()
    try:
        async with asyncio.timeout(5):
            await upstream.wait_up()
        assert upstream.send_raw(PACKET)
        await handler.wait(lambda: handler.packets)
        assert handler.packets == [PACKET] and len(handler.opened) == 1
        handler.opened[0].send_raw(PACKET)  # and back
        await mine.wait(lambda: mine.packets)
        assert mine.packets == [PACKET]
    finally:
        await upstream.close()


async def test_wrong_secret_never_opens_and_backs_off(
    service: tuple[Listener, Recorder],
) -> None:
    listener, handler = service
    mine = Recorder()
    upstream = Upstream(
        "127.0.0.1",
        listener.port,
        mine,
        secret=b"another-cluster-secret-000000",
        backoff=Backoff(base=0.01, cap=0.05),
        heartbeat=0,
    )
    upstream.start()
    try:
        await handler.wait(lambda: len(handler.errors) >= 3)  # three attempts refused
        assert not upstream.is_up and mine.opened == [] and upstream.refused >= 2
        assert handler.opened == [] and handler.packets == []
        assert {e.kind for e in handler.errors} == {"link_auth"}  # counted by the service
        assert upstream.backoff.failures >= 2  # never reset: it backs off like a failed connect
    finally:
        await upstream.close()


async def test_a_client_without_the_secret_is_closed_unread(
    service: tuple[Listener, Recorder],
) -> None:
    """Direct TCP to a service port: the forged frames are never read."""
    listener, handler = service
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        hello = await asyncio.wait_for(reader.readexactly(HELLO_SIZE), 5)
        assert hello[:5] == b"NBLA\x01"
        writer.write(frame(PACKET) * 10)
        rest = await asyncio.wait_for(reader.read(), 5)  # EOF (or reset): closed
        assert rest == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    await handler.wait(lambda: handler.errors)
    assert handler.packets == [] and handler.opened == []
    assert handler.errors[0].kind == "link_auth"


async def test_a_fake_service_cannot_take_the_link() -> None:
    """A process that grabbed the service port answers with forged frames at once."""
    accepted = asyncio.Event()

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(cmd_buf(2, 1, 1, json_body('{"status":1,"uid":7}'), utag=7)))
        accepted.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mine = Recorder()
    upstream = Upstream(
        "127.0.0.1", port, mine, secret=SECRET, backoff=Backoff(0.01, 0.05), heartbeat=0
    )
    upstream.start()
    try:
        await mine.wait(lambda: len(mine.errors) >= 2)
        assert mine.opened == [] and mine.packets == [] and upstream.refused >= 1
        assert [e.kind for e in mine.errors][:1] == ["link_auth"]
    finally:
        await upstream.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_peer_is_cut_at_the_handshake_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AuthStep, "timeout", 0.2)
    handler = Recorder()
    listener = await start_listener(ListenerSpec(kind="tcp", auth_secret=SECRET), handler)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        await reader.readexactly(HELLO_SIZE)
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed at the deadline, without a word
        writer.close()
        await handler.wait(lambda: handler.errors)
        assert handler.errors[0].kind == "link_auth" and handler.opened == []
    finally:
        listener.close()
        await listener.wait_closed()


def test_link_auth_is_refused_on_websocket_listeners() -> None:
    from netbus.errors import ConfigError
    from netbus.transport.listener import link_factory

    with pytest.raises(ConfigError):
        link_factory(ListenerSpec(kind="ws", auth_secret=SECRET), Recorder())
