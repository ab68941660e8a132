"""RATE_LIMITED notices: a client learns how many of its packets were dropped, exactly.

Every limit that drops a client's packet (the listener's packet bucket, the gateway's login
limit) calls `note_dropped`. The first drop after a quiet second is reported at once; drops
within the next second are added up and reported when that second is over, by one timer per
connection that is being limited (never a timer per packet). The ``dropped`` values a client
receives therefore add up to the real number of packets dropped, at most one notice per
second (docs/protocol.md §7). The count per connection lives on the link, so the limits that
share a connection share its one notice per second.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from netbus.protocol.control import CONTROL_CODECS, CONTROL_STYPE, GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.protocol.registry import Direction

if TYPE_CHECKING:
    from netbus.transport.link import Link

__all__ = ["NOTICE_INTERVAL", "DropNotice", "note_dropped"]

NOTICE_INTERVAL = 1.0  #: seconds between two RATE_LIMITED notices to one connection
_MAX_REPORT = 0xFFFF  #: the largest ``dropped`` one notice carries (BUF u16)


class DropNotice:
    """One connection's dropped packets: the total, and what it has not been told yet."""

    __slots__ = ("dropped", "noticed", "proto", "timer", "unreported")

    def __init__(self) -> None:
        self.dropped = 0  #: packets dropped on this connection, all limits together
        self.unreported = 0  #: drops not yet told to the client
        self.noticed = float("-inf")  #: when the last notice went out (caller's clock)
        self.proto = int(ProtoType.JSON)  #: proto_type of the last dropped packet
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def note_dropped(link: Link, proto_type: int, now: float, count: int = 1) -> int:
    """Count ``count`` dropped packets of ``link`` and notify the client (rate limited).

    Args:
        proto_type: of the dropped packet; the notice uses it (JSON if it is not 1 or 2).
        now: the caller's clock (monotonic seconds).

    Returns:
        The total dropped on this link so far (limits close the link past a maximum).
    """
    state = link.drops
    if state is None:
        state = link.drops = DropNotice()
    state.dropped += count
    state.unreported += count
    state.proto = proto_type if proto_type in (ProtoType.JSON, ProtoType.BUF) else ProtoType.JSON
    if now - state.noticed >= NOTICE_INTERVAL:
        _send(link, state, now)
    elif state.timer is None and not link.closed:
        due = state.noticed + NOTICE_INTERVAL
        state.timer = asyncio.get_running_loop().call_later(due - now, _due, link, state, due)
    return state.dropped


def _due(link: Link, state: DropNotice, due: float) -> None:
    state.timer = None
    if not link.closed and state.unreported:
        _send(link, state, due)


def _send(link: Link, state: DropNotice, now: float) -> None:
    count = min(state.unreported, _MAX_REPORT)
    state.unreported -= count
    state.noticed = now
    link.send_raw(
        CONTROL_CODECS.encode(
            CONTROL_STYPE,
            GatewayCmd.RATE_LIMITED,
            {"dropped": count},
            proto_type=state.proto,
            direction=Direction.TO_CLIENT,
        )
    )
    if state.unreported and state.timer is None and not link.closed:
        due = now + NOTICE_INTERVAL
        state.timer = asyncio.get_running_loop().call_later(NOTICE_INTERVAL, _due, link, state, due)
