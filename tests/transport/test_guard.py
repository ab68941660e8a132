"""`Guard` with a fake clock: every listener limit in milliseconds, no sleeping.

Links are real `TcpLink`/`WsLink` objects on an in-memory transport (tests/transport/fake.py);
the guard's clock is a `FakeClock` and its sweep is called by the test.
"""

from __future__ import annotations

import pytest

from netbus.metrics import Metrics
from netbus.protocol import Direction, GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.roles import Stype
from netbus.transport.guard import Guard, ListenerLimits
from netbus.transport.notices import NOTICE_INTERVAL
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink
from netbus.transport.ws import WsLink
from tests.helpers import CODECS, cmd_buf, frame, json_body

from .fake import FakeClock, FakeTransport, Recorder, connect, feed, settle

PACKET = cmd_buf(1, 5, ProtoType.JSON, json_body('{"0":"x"}'))
BUF_PACKET = cmd_buf(1, 5, ProtoType.BUF, b"\x01\x00x")


def dropped(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("netbus_dropped_total", {"reason": reason}) or 0.0


def notices(transport: FakeTransport) -> list[tuple[int, int]]:
    """(proto_type, dropped) of every RATE_LIMITED frame the link wrote."""
    out, data, at = [], bytes(transport.written), 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 2], "little")
        cmd = data[at + 2 : at + size]
        at += size
        stype, ctype = cmd[0] | cmd[1] << 8, cmd[2] | cmd[3] << 8
        if (stype, ctype) == (Stype.Gateway, GatewayCmd.RATE_LIMITED):
            proto = cmd[8] | cmd[9] << 8
            body = CODECS.decode_body(cmd, stype, ctype, proto, Direction.TO_CLIENT)
            out.append((proto, body["dropped"]))
    return out


class Setup:
    def __init__(self, **limits: float) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics("test")
        self.inner = Recorder()
        self.guard = Guard(
            self.inner,
            ListenerLimits(**limits),  # type: ignore[arg-type]
            metrics=self.metrics,
            clock=self.clock,
            sweep=False,
        )

    def tcp(self, ip: str = "203.0.113.1") -> tuple[TcpLink, FakeTransport]:
        link = TcpLink(self.guard)
        return link, connect(link, (ip, 40000))


# ---------------------------------------------------------------------------- caps
async def test_per_ip_cap_counts_ipv4_by_prefix() -> None:
    s = Setup(max_per_ip=2, ipv4_prefix=24)
    a, _ = s.tcp("198.51.100.1")
    b, _ = s.tcp("198.51.100.200")
    c, _ = s.tcp("198.51.100.7")  # a third in the same /24: refused
    d, _ = s.tcp("198.51.101.7")  # the next /24: its own cap
    assert [a.closed, b.closed, c.closed, d.closed] == [False, False, True, False]
    assert c.close_reason is CloseReason.TOO_MANY_PER_IP
    assert s.guard.per_ip == {"198.51.100.0/24": 2, "198.51.101.0/24": 1}
    assert dropped(s.metrics, "too_many_per_ip") == 1
    a.close()
    await settle()
    e, _ = s.tcp("198.51.100.9")  # a slot freed is a slot again
    assert not e.closed


async def test_per_ip_cap_counts_ipv6_by_64() -> None:
    s = Setup(max_per_ip=1)
    a, _ = s.tcp("2001:db8::1")
    b, _ = s.tcp("2001:db8::ffff:1")  # same /64
    c, _ = s.tcp("2001:db8:0:1::1")  # next /64
    assert (a.closed, b.closed, c.closed) == (False, True, False)


async def test_max_connections() -> None:
    s = Setup(max_connections=2)
    links = [s.tcp(f"192.0.2.{i}")[0] for i in range(3)]
    assert [link.closed for link in links] == [False, False, True]
    assert links[2].close_reason is CloseReason.LISTENER_FULL
    assert len(s.inner.opened) == 2


# ----------------------------------------------------------------------- rate limit
async def test_rate_limit_drops_and_tells_the_real_count() -> None:
    s = Setup(rate=10, burst=5, max_dropped=1000)
    link, transport = s.tcp()
    for _ in range(8):
        s.guard.packet_received(link, bytearray(PACKET))
    assert len(s.inner.packets) == 5
    # The first drop is told at once; the next two wait for the end of the second.
    assert notices(transport) == [(ProtoType.JSON, 1)]
    assert link.drops is not None and link.drops.unreported == 2 and link.drops.timer
    s.clock.advance(0.5)  # 5 tokens back
    for _ in range(5):
        s.guard.packet_received(link, bytearray(PACKET))
    assert len(s.inner.packets) == 10 and notices(transport) == [(ProtoType.JSON, 1)]
    s.clock.advance(NOTICE_INTERVAL)
    for _ in range(6):
        s.guard.packet_received(link, bytearray(BUF_PACKET))  # 5 pass (refilled), 1 dropped
    # One notice a second, and the counts add up to every packet dropped (3 + 1).
    assert notices(transport) == [(ProtoType.JSON, 1), (ProtoType.BUF, 3)]
    assert dropped(s.metrics, "rate_limited") == 4
    assert link.drops.dropped == 4


async def test_pending_drops_are_told_by_the_timer_without_another_packet() -> None:
    s = Setup(rate=1, burst=1, max_dropped=1000)
    link, transport = s.tcp()
    for _ in range(40):
        s.guard.packet_received(link, bytearray(PACKET))
    assert notices(transport) == [(ProtoType.JSON, 1)]
    state = link.drops
    assert state is not None and state.timer is not None
    # The timer runs at the end of the second (on the loop's clock); run its callback now.
    state.timer.cancel()
    from netbus.transport import notices as notices_module

    notices_module._due(link, state, state.noticed + NOTICE_INTERVAL)
    assert notices(transport) == [(ProtoType.JSON, 1), (ProtoType.JSON, 38)]


async def test_sustained_flood_is_closed() -> None:
    s = Setup(rate=10, burst=5, max_dropped=20)
    link, transport = s.tcp()
    for _ in range(100):
        s.guard.packet_received(link, bytearray(PACKET))
    assert link.closed and link.close_reason is CloseReason.RATE_LIMITED
    assert transport.aborted
    assert len(s.inner.packets) == 5
    await settle()
    assert s.inner.closed == [CloseReason.RATE_LIMITED]
    assert link.drops is not None and link.drops.timer is None  # released with the link


# ---------------------------------------------------------------- idle and frame sweep
async def test_idle_timeout_by_sweep() -> None:
    s = Setup(idle_timeout=10, frame_timeout=0)
    quiet, _ = s.tcp()
    busy, _ = s.tcp("192.0.2.9")
    for _ in range(4):
        s.clock.advance(3)
        feed(busy, frame(PACKET))
        s.guard.sweep()
    assert quiet.closed and quiet.close_reason is CloseReason.IDLE_TIMEOUT
    assert not busy.closed
    assert dropped(s.metrics, "idle_timeout") == 1


async def test_idle_ws_peer_is_pinged_at_half_the_timeout() -> None:
    s = Setup(idle_timeout=10, frame_timeout=0)
    link = WsLink(s.guard)
    transport = connect(link)
    feed(
        link,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert transport.written.startswith(b"HTTP/1.1 101")
    s.guard.sweep()
    s.clock.advance(5)
    s.guard.sweep()
    assert b"\x89\x02nb" in transport.written  # a ping
    s.clock.advance(5)
    s.guard.sweep()
    assert link.close_reason is CloseReason.IDLE_TIMEOUT
    assert b"\x88" in transport.written  # a close frame, code 4001
    assert (4001).to_bytes(2, "big") in transport.written


async def test_a_frame_left_unfinished_is_cut_at_the_deadline() -> None:
    s = Setup(idle_timeout=0, frame_timeout=15)
    trickler, _ = s.tcp()
    steady, _ = s.tcp("192.0.2.9")
    whole = frame(PACKET)
    feed(trickler, whole[:5])
    feed(steady, whole[:5])
    s.guard.sweep()  # both seen holding a frame
    for _ in range(3):
        s.clock.advance(5)
        feed(trickler, b"\x00")  # one more byte of the same frame: still unfinished
        feed(steady, whole[5:] + whole[:5])  # completes a frame, starts the next
        s.guard.sweep()
    assert trickler.closed and trickler.close_reason is CloseReason.FRAME_TIMEOUT
    assert not steady.closed and len(s.inner.packets) == 3
    await settle()
    assert dropped(s.metrics, "frame_timeout") == 1


async def test_sweep_interval_follows_the_shorter_deadline() -> None:
    assert Setup(idle_timeout=90, frame_timeout=15).guard.sweep_interval == 5
    assert Setup(idle_timeout=8, frame_timeout=0).guard.sweep_interval == 2
    assert Setup(idle_timeout=0, frame_timeout=0).guard.sweep_interval == 0


# -------------------------------------------------------------- closes that are counted
@pytest.mark.parametrize(
    ("reason", "label"),
    [
        (CloseReason.FORBIDDEN_ORIGIN, "forbidden_origin"),
        (CloseReason.INPUT_BUDGET, "input_budget"),
        (CloseReason.CONTROL_FLOOD, "ws_control_flood"),
    ],
)
async def test_link_side_refusals_are_counted(reason: CloseReason, label: str) -> None:
    s = Setup()
    link, _ = s.tcp()
    link.close(reason)
    await settle()
    assert dropped(s.metrics, label) == 1
    assert s.inner.closed == [reason]


async def test_protocol_error_of_a_link_it_never_opened_is_counted_not_forwarded() -> None:
    from netbus.errors import ProtocolError

    s = Setup()
    link = TcpLink(s.guard)  # never connected: the guard does not know it
    s.guard.protocol_error(link, ProtocolError("proxy_header", "none"))
    assert s.inner.errors == []
    sample = s.metrics.registry.get_sample_value(
        "netbus_protocol_errors_total", {"kind": "proxy_header"}
    )
    assert sample == 1
