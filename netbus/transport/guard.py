"""Per-listener protection: connection caps, idle and frame deadlines, packet rate limit.

`Guard` wraps the listener's real `LinkHandler`, so every role gets the same limits without
knowing about them. The hot path costs one clock read and a few float operations per packet
(a token bucket). Idleness and unfinished frames are found by one periodic sweep comparing
counters, so there is no timer per connection or per packet. docs/security.md lists every
limit, its default and the attack it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netbus.errors import ProtocolError
from netbus.protocol.header import HEADER_SIZE
from netbus.ratelimit import TokenBucket
from netbus.transport.addr import ip_key
from netbus.transport.link import Link, LinkHandler
from netbus.transport.notices import note_dropped
from netbus.transport.reasons import CloseReason

__all__ = ["Guard", "ListenerLimits"]

log = logging.getLogger("netbus.transport")

#: closes the Guard counts in ``netbus_dropped_total{reason}`` when the link reports them
_COUNTED = {
    CloseReason.FORBIDDEN_ORIGIN: "forbidden_origin",
    CloseReason.INPUT_BUDGET: "input_budget",
    CloseReason.CONTROL_FLOOD: "ws_control_flood",
    CloseReason.FRAME_TIMEOUT: "frame_timeout",
}


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Limits of one listener; 0 turns a limit off. docs/security.md explains each."""

    max_connections: int = 20000
    max_per_ip: int = 512
    idle_timeout: float = 90.0  #: seconds without any byte from the peer
    rate: float = 200.0  #: packets per second allowed on average
    burst: float = 400.0  #: packets allowed at once
    max_dropped: int = 2000  #: rate-limited packets before the connection is closed
    frame_timeout: float = 15.0  #: seconds one frame may stay unfinished
    ipv4_prefix: int = 32  #: per-IP caps count IPv4 clients by this network prefix
    ipv6_prefix: int = 64  #: ... and IPv6 clients by this one (a /64 is one subscriber)


class _Watch:
    """What the sweep knows of one link."""

    __slots__ = ("frames", "idle_since", "key", "partial_since", "seen")

    def __init__(self, raw_in: int, now: float, key: str) -> None:
        self.seen = raw_in  #: raw bytes at the last sweep
        self.idle_since = now
        self.key = key  #: its per-IP key (network prefix)
        self.frames = -1  #: packets_in when its unfinished frame was first seen
        self.partial_since = 0.0


class Guard:
    """A `LinkHandler` that enforces `ListenerLimits` in front of ``inner``.

    Args:
        clock: monotonic seconds; defaults to the running loop's clock (tests pass a fake).
        sweep: run the idle / frame-deadline sweep on a timer (tests call `sweep` instead).
    """

    def __init__(
        self,
        inner: LinkHandler,
        limits: ListenerLimits,
        *,
        metrics: Any = None,
        clock: Callable[[], float] | None = None,
        sweep: bool = True,
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.metrics = metrics
        self.links: dict[Link, _Watch] = {}
        self.per_ip: Counter[str] = Counter()
        self._buckets: dict[Link, TokenBucket] = {}
        self._sweeper: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._clock = clock or loop.time
        if sweep and self.sweep_interval > 0:
            self._sweeper = loop.create_task(self._sweep_forever())

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps: a quarter of the idle timeout, a third of the frame
        deadline (so either fires at most that late), never under 50 ms; 0 = no sweep."""
        limits = self.limits
        periods = [t / 4 for t in (limits.idle_timeout,) if t > 0]
        periods += [t / 3 for t in (limits.frame_timeout,) if t > 0]
        return max(0.05, min(periods)) if periods else 0.0

    def _count(self, label: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped.labels(label).inc()

    def _refuse(self, link: Link, reason: CloseReason, label: str) -> None:
        self._count(label)
        link.close(reason, abort=True)

    # ----------------------------------------------------------------- LinkHandler
    def link_opened(self, link: Link) -> None:
        limits = self.limits
        key = ip_key(link.peer_ip, v4_prefix=limits.ipv4_prefix, v6_prefix=limits.ipv6_prefix)
        if limits.max_connections and len(self.links) >= limits.max_connections:
            self._refuse(link, CloseReason.LISTENER_FULL, "listener_full")
            return
        if limits.max_per_ip and self.per_ip[key] >= limits.max_per_ip:
            self._refuse(link, CloseReason.TOO_MANY_PER_IP, "too_many_per_ip")
            return
        self.per_ip[key] += 1
        now = self._clock()
        self.links[link] = _Watch(link.raw_in, now, key)
        if limits.rate > 0:
            self._buckets[link] = TokenBucket(limits.rate, limits.burst, now)
        self.inner.link_opened(link)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        bucket = self._buckets.get(link)
        if bucket is not None:
            now = self._clock()
            if not bucket.take(now):
                self._count("rate_limited")
                proto = cmd_buf[8] | cmd_buf[9] << 8 if len(cmd_buf) >= HEADER_SIZE else 0
                if note_dropped(link, proto, now) >= self.limits.max_dropped:
                    log.warning("closing %s: sustained flood over the rate limit", link.peer)
                    link.close(CloseReason.RATE_LIMITED, abort=True)
                return
        self.inner.packet_received(link, cmd_buf)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        if link not in self.links:
            # Its preamble failed before it opened (a trusted proxy sent no PROXY header):
            # the inner handler never saw it, so it is counted here.
            if self.metrics is not None:
                self.metrics.protocol_errors.labels(exc.kind).inc()
            return
        self.inner.protocol_error(link, exc)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        watch = self.links.pop(link, None)
        if watch is None:
            return  # refused at open: the inner handler never saw it
        self._buckets.pop(link, None)
        self.per_ip[watch.key] -= 1
        if self.per_ip[watch.key] <= 0:
            del self.per_ip[watch.key]
        label = _COUNTED.get(reason)
        if label is not None:
            self._count(label)
        self.inner.link_closed(link, reason)

    # ------------------------------------------------------------------------ sweep
    def sweep(self) -> int:
        """Close links idle past the timeout or holding one frame past the frame deadline;
        ping idle WebSocket peers. Returns how many links it closed.

        A frame counts from the first sweep that sees it unfinished, so it is cut between
        ``frame_timeout`` and ``frame_timeout`` plus one sweep interval after it began.
        """
        limits = self.limits
        idle_timeout, frame_timeout = limits.idle_timeout, limits.frame_timeout
        now = self._clock()
        closed = 0
        for link, watch in list(self.links.items()):
            if frame_timeout > 0 and link.partial_in:
                frames = link.stats.packets_in
                if watch.frames != frames:  # a new unfinished frame (or the first seen)
                    watch.frames, watch.partial_since = frames, now
                elif now - watch.partial_since >= frame_timeout:
                    link.close(CloseReason.FRAME_TIMEOUT, abort=True)
                    closed += 1
                    continue
            else:
                watch.frames = -1
            if idle_timeout <= 0:
                continue
            if link.raw_in != watch.seen:
                watch.seen, watch.idle_since = link.raw_in, now
                continue
            idle = now - watch.idle_since
            if idle >= idle_timeout:
                self._count("idle_timeout")
                link.close(CloseReason.IDLE_TIMEOUT)
                closed += 1
            elif idle >= idle_timeout / 2:
                link.ping()
        return closed

    async def _sweep_forever(self) -> None:
        interval = self.sweep_interval
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
