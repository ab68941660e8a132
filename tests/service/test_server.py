"""`ServiceServer` lifecycle: ports, shutdown order (close links, drain handlers), cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netbus.client import Client
from netbus.roles.talkroom import TalkroomService
from netbus.service import Service, ServiceServer, User, command
from netbus.transport.listener import ListenerSpec
from tests.helpers import talkroom_server


class SlowEcho(Service):
    """stype 5, JSON only: replies after ``gate`` opens; records how far it got."""

    stype = 5
    name = "slow-echo"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.done = 0

    @command(1)
    async def echo(self, user: User, body: Any) -> Any:
        self.started.set()
        await self.gate.wait()
        self.done += 1
        return body


async def test_close_lets_running_handlers_reply_then_closes_links() -> None:
    slow = SlowEcho()
    server = ServiceServer(
        [slow, TalkroomService()], client_listeners=[ListenerSpec("tcp"), ListenerSpec("ws")]
    )
    async with server:
        assert server.port and len(server.client_ports) == 2
        tcp = await Client.connect(f"tcp://127.0.0.1:{server.client_ports[0]}")
        ws = await Client.connect(f"ws://127.0.0.1:{server.client_ports[1]}/")
        pending = asyncio.ensure_future(tcp.request(5, 1, "echo me"))
        await slow.started.wait()
        assert server.dispatcher.pending == 1
        closing = asyncio.ensure_future(server.close(drain_timeout=5))
        assert await ws.request(1, 1, {"uname": "", "usex": 0}) == -100  # still served
        # No new players while shutting down.
        with pytest.raises(OSError):
            await Client.connect(f"tcp://127.0.0.1:{server.client_ports[0]}")
        assert not closing.done() and not tcp.closed.is_set()
        slow.gate.set()
        assert await pending == "echo me"  # the handler's reply went out before the close
        await closing
        assert slow.done == 1 and server.dispatcher.pending == 0
        for client in (tcp, ws):
            assert "closed" in await client.wait_closed()
            await client.close()


async def test_close_gives_up_on_handlers_at_the_drain_deadline() -> None:
    slow = SlowEcho()
    async with ServiceServer([slow], client_listeners=[ListenerSpec("ws")]) as server:
        client = await Client.connect(f"ws://127.0.0.1:{server.client_ports[0]}/")
        pending = asyncio.ensure_future(client.request(5, 1, "never"))
        await slow.started.wait()
        await server.close(drain_timeout=0.05)
        with pytest.raises(ConnectionError):
            await pending
        await client.wait_closed()
        await client.close()
        slow.gate.set()
        await server.dispatcher.drain(5)
        assert slow.done == 1  # it ran to the end, but its reply had nowhere to go


async def test_port_in_use_fails_start_without_leaking() -> None:
    async with talkroom_server() as h:
        taken = h.server.client_ports[0]
        other = ServiceServer([TalkroomService()], client_listeners=[ListenerSpec(port=taken)])
        with pytest.raises(OSError):
            await other.start()
        assert other._servers == [] and other.client_ports == []
        # The first server is untouched.
        client = await h.connect(0)
        assert await client.enter("still", 0) == 1
