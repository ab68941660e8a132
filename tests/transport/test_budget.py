"""`InputBudget`: unfinished input across links, oldest holders cut first."""

from __future__ import annotations

import pytest

from netbus.protocol.framing import FrameDecoder
from netbus.transport.budget import InputBudget
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink
from netbus.transport.ws import WsLink
from tests.helpers import cmd_buf, frame, json_body

from .fake import Recorder, connect, feed, settle

PACKET = cmd_buf(1, 5, 1, json_body('{"0":"x"}'))


def big_frame_head(size: int = 60000) -> bytes:
    """The first 20 KB of a frame announcing ``size`` bytes of cmd_buf."""
    return (size + 2).to_bytes(2, "little") + bytes(20000)


async def test_partial_frames_are_counted_and_released() -> None:
    budget = InputBudget(10**9)
    handler = Recorder()
    link = TcpLink(handler, budget=budget)
    connect(link)
    feed(link, frame(PACKET)[:4])
    held = link.partial_in
    assert held == budget.total and budget.holders == 1
    assert held >= 4  # what is allocated for it, not only what arrived
    feed(link, frame(PACKET)[4:])
    assert (link.partial_in, budget.total, budget.holders) == (0, 0, 0)
    assert handler.packets == [PACKET]
    feed(link, big_frame_head())
    assert budget.total == link.partial_in > 20000
    link.close()
    assert budget.total == 0 and budget.holders == 0


async def test_over_budget_the_oldest_holders_are_cut_down_to_low_water() -> None:
    budget = InputBudget(70_000, low_water=0.5)
    handler = Recorder()
    links = [TcpLink(handler, budget=budget) for _ in range(5)]
    for i, link in enumerate(links):
        connect(link, (f"192.0.2.{i}", 1000))
    for link in links[:3]:
        feed(link, big_frame_head())  # 3 x ~20 KB held (what was sent: 20 KB each)
    assert not any(link.closed for link in links)
    feed(links[3], big_frame_head())  # over 70 KB: cut down to <= 35 KB, oldest first
    assert [link.closed for link in links] == [True, True, True, False, False]
    assert {link.close_reason for link in links[:3]} == {CloseReason.INPUT_BUDGET}
    assert budget.total == links[3].partial_in and budget.cut == 3
    assert budget.total <= 35_000
    await settle()


async def test_a_link_that_completes_frames_becomes_young_again() -> None:
    budget = InputBudget(50_000, low_water=0.75)
    handler = Recorder()
    old, busy, new = (TcpLink(handler, budget=budget) for _ in range(3))
    for i, link in enumerate((old, busy, new)):
        connect(link, (f"192.0.2.{i}", 1000))
    feed(busy, big_frame_head())  # busy holds first ...
    feed(old, big_frame_head())
    # ... then finishes its frame and starts another: it is the youngest holder now.
    rest = 60000 - 20000
    feed(busy, bytes(rest) + big_frame_head()[:1000])
    feed(new, big_frame_head())
    assert old.closed and not busy.closed
    assert handler.packets and len(handler.packets[0]) == 60000
    await settle()


async def test_websocket_partial_input_counts_too() -> None:
    budget = InputBudget(10**9)
    link = WsLink(Recorder(), budget=budget)
    connect(link)
    feed(
        link,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert budget.total == 0
    # A masked binary frame announcing 60000 bytes, of which 1000 arrive.
    feed(link, bytes((0x82, 0xFE)) + (60000).to_bytes(2, "big") + bytes(4) + bytes(1000))
    assert link.partial_in == budget.total >= 1000
    # A fragmented message: the finished fragments are held too.
    link2 = WsLink(Recorder(), budget=budget)
    connect(link2, ("192.0.2.7", 1))
    feed(
        link2,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    feed(link2, bytes((0x02, 0x80 | 100)) + bytes(4) + bytes(100))  # first fragment, not fin
    assert link2.partial_in == 100
    link.close()
    link2.close()
    assert budget.total == 0


def test_limit_zero_only_counts() -> None:
    budget = InputBudget(0)
    link = TcpLink(Recorder(), budget=budget)
    budget.update(link, 10**9)
    assert not link.closed and budget.total == 10**9
    with pytest.raises(ValueError):
        InputBudget(-1)


def test_decoder_holds_at_most_four_times_what_it_was_sent() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\xff\xff\x00")  # announces 65533 bytes, sends 1
    assert decoder.buffered == 3 and decoder.held == 2 + FrameDecoder.FIRST_CHUNK
    decoder.feed(bytes(FrameDecoder.FIRST_CHUNK))  # past the first chunk: the final size
    assert decoder.held == 65535
    (out,) = decoder.feed(bytes(65533 - 1 - FrameDecoder.FIRST_CHUNK))
    assert len(out) == 65533 and decoder.held == decoder.buffered == 0
