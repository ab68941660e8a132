"""`Backoff` bounds and `Upstream` reconnects against a real service listener."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netbus.errors import ProtocolError
from netbus.protocol import Direction
from netbus.protocol.header import unpack_header
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.upstream import Backoff, LinkState, Upstream
from tests.helpers import CODECS, free_port, talkroom_server


def test_backoff_first_delay_small_then_capped() -> None:
    backoff = Backoff(base=0.05, cap=3.0)
    first = backoff.next_delay()
    assert 0.025 <= first <= 0.05
    delays = [backoff.next_delay() for _ in range(50)]
    assert all(0 < d <= 3.0 for d in delays)
    assert all(d >= 1.5 for d in delays[-20:])  # the ceiling reached the cap
    assert max(delays[:3]) <= 0.4  # grows gradually
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() <= 0.05


def test_backoff_does_not_overflow_after_very_many_failures() -> None:
    backoff = Backoff(base=0.05, cap=2.0)
    backoff.failures = 5000  # 2**5000 * 0.05 is an OverflowError for floats
    assert 1.0 <= backoff.next_delay() <= 2.0


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def link_opened(self, link: Link) -> None:
        self.events.put_nowait(("opened", link))

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        self.events.put_nowait(("packet", unpack_header(cmd_buf)))

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.events.put_nowait(("error", exc))

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.events.put_nowait(("closed", reason))

    async def next(self, kind: str) -> Any:
        async with asyncio.timeout(5):
            while True:
                got, value = await self.events.get()
                if got == kind:
                    return value


def enter(utag: int) -> bytes:
    body = {"uname": f"u{utag}", "usex": 0}
    return CODECS.encode(Stype.TalkRoom, 1, body, utag=utag, direction=Direction.TO_SERVER)


async def test_upstream_connects_carries_packets_and_reconnects() -> None:
    async with talkroom_server(()) as h:
        rec = Recorder()
        up = Upstream("127.0.0.1", h.server.port, rec, backoff=Backoff(0.01, 0.05), heartbeat=0)
        up.start()
        try:
            await asyncio.wait_for(up.wait_up(), 5)
            assert up.is_up and up.state is LinkState.UP
            await rec.next("opened")
            assert up.send_raw(enter(3))
            assert (await rec.next("packet"))[:3] == (Stype.TalkRoom, TalkroomCmd.Enter, 3)

            # The service side drops the link: the upstream comes back by itself, and the
            # service saw the gateway's users leave (on_link_lost).
            for link in h.server.gateway_host.links:
                link.close(CloseReason.NORMAL)
            await rec.next("closed")
            assert not up.is_up
            assert up.send_raw(enter(4)) is False
            await rec.next("opened")
            await asyncio.wait_for(up.wait_up(), 5)
            assert up.reconnects == 1
            assert len(h.service.room) == 0
            assert up.send_raw(enter(4))
            assert (await rec.next("packet"))[2] == 4
        finally:
            await up.close()
        assert up.state is LinkState.STOPPED
        assert up.link is None or up.link.closed


async def test_upstream_waits_for_a_service_that_starts_late() -> None:
    port = free_port()
    rec = Recorder()
    up = Upstream("127.0.0.1", port, rec, backoff=Backoff(0.01, 0.05), heartbeat=0)
    up.start()
    try:
        async with asyncio.timeout(5):
            # Failed connects are not reported to the handler: poll the counter.
            while up.backoff.failures < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert up.state is LinkState.DOWN and not up.is_up
        from netbus.roles.talkroom import TalkroomService
        from netbus.service.server import ServiceServer

        async with ServiceServer([TalkroomService()], port=port):
            await asyncio.wait_for(up.wait_up(), 5)
            assert up.is_up
            assert up.backoff.failures == 0
    finally:
        await up.close()


async def test_upstream_heartbeat_drops_a_silent_peer() -> None:
    """A peer that accepts but never answers is half-open: dropped after 3 silent beats."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # reads the heartbeats, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rec = Recorder()
    up = Upstream("127.0.0.1", port, rec, backoff=Backoff(0.01, 0.02), heartbeat=0.02)
    up.start()
    try:
        await rec.next("opened")
        reason = await rec.next("closed")
        assert reason is CloseReason.HEARTBEAT_TIMEOUT
        await rec.next("opened")  # and it dials again
    finally:
        await up.close()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


@pytest.mark.parametrize("heartbeat", [0, 5.0])
async def test_upstream_close_before_connecting(heartbeat: float) -> None:
    up = Upstream("127.0.0.1", free_port(), Recorder(), heartbeat=heartbeat)
    up.start()
    await up.close()
    await up.close()
    assert up.state is LinkState.STOPPED


async def test_upstream_close_while_connect_completes_does_not_hang() -> None:
    """Cancelled right after connection_made: uvloop never calls connection_lost then.

    Regression: `Upstream.close` waited forever for that link on uvloop.
    """
    async with talkroom_server(()) as h:
        rec = Recorder()
        up = Upstream("127.0.0.1", h.server.port, rec, heartbeat=0)

        def cancel_mid_connect(link: Link) -> None:
            Recorder.link_opened(rec, link)
            assert up._task is not None
            up._task.cancel()  # the task is still inside create_connection

        rec.link_opened = cancel_mid_connect  # type: ignore[method-assign]
        up.start()
        await rec.next("opened")
        async with asyncio.timeout(5):
            await up.close()
            assert await rec.next("closed")  # the owner heard the link end
        assert up.state is LinkState.STOPPED
        assert up.link is None
