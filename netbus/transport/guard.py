"""Per-listener protection: connection caps (total and per IP), idle timeout, packet rate limit.

`Guard` wraps the listener's real `LinkHandler`, so every role gets the same limits without
knowing about them. The hot path costs one clock read and a few float operations per packet
(a token bucket); idleness is found by a periodic sweep comparing byte counters, so there is
no timer per connection or per packet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netbus.errors import ProtocolError
from netbus.protocol.control import CONTROL_CODECS, CONTROL_STYPE, GatewayCmd
from netbus.protocol.header import HEADER_SIZE, ProtoType
from netbus.protocol.registry import Direction
from netbus.ratelimit import TokenBucket
from netbus.transport.addr import peer_ip
from netbus.transport.link import Link, LinkHandler
from netbus.transport.reasons import CloseReason

__all__ = ["Guard", "ListenerLimits"]

log = logging.getLogger("netbus.transport")

#: seconds between two RATE_LIMITED notices to one connection (docs/protocol.md §7)
NOTICE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Limits of one listener; 0 turns a limit off. docs/security.md explains each."""

    max_connections: int = 20000
    max_per_ip: int = 512
    idle_timeout: float = 90.0  #: seconds without any byte from the peer
    rate: float = 200.0  #: packets per second allowed on average
    burst: float = 400.0  #: packets allowed at once
    max_dropped: int = 2000  #: rate-limited packets before the connection is closed


class _Bucket(TokenBucket):
    """A connection's packet bucket, with what its RATE_LIMITED notices need."""

    __slots__ = ("dropped", "noticed", "unreported")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        super().__init__(rate, burst, now)
        self.dropped = 0
        self.unreported = 0  #: drops not yet told to the client
        self.noticed = float("-inf")  #: when the last RATE_LIMITED notice went out


class Guard:
    """A `LinkHandler` that enforces `ListenerLimits` in front of ``inner``.

    Args:
        clock: monotonic seconds; defaults to the running loop's clock (tests pass a fake).
    """

    def __init__(
        self,
        inner: LinkHandler,
        limits: ListenerLimits,
        *,
        metrics: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.metrics = metrics
        self.links: dict[Link, list[int | float]] = {}  #: link -> [raw bytes seen, idle since]
        self.per_ip: Counter[str] = Counter()
        self._buckets: dict[Link, _Bucket] = {}
        self._sweeper: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._clock = clock or loop.time
        if limits.idle_timeout > 0:
            self._sweeper = loop.create_task(self._sweep_forever())

    def _refuse(self, link: Link, reason: CloseReason, label: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped.labels(label).inc()
        link.close(reason, abort=True)

    # ----------------------------------------------------------------- LinkHandler
    def link_opened(self, link: Link) -> None:
        limits = self.limits
        ip = peer_ip(link.peer)
        if limits.max_connections and len(self.links) >= limits.max_connections:
            self._refuse(link, CloseReason.LISTENER_FULL, "listener_full")
            return
        if limits.max_per_ip and self.per_ip[ip] >= limits.max_per_ip:
            self._refuse(link, CloseReason.TOO_MANY_PER_IP, "too_many_per_ip")
            return
        self.per_ip[ip] += 1
        now = self._clock()
        self.links[link] = [link.raw_in, now]
        if limits.rate > 0:
            self._buckets[link] = _Bucket(limits.rate, limits.burst, now)
        self.inner.link_opened(link)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        bucket = self._buckets.get(link)
        if bucket is not None:
            now = self._clock()
            if not bucket.take(now):
                limits = self.limits
                bucket.dropped += 1
                bucket.unreported += 1
                if self.metrics is not None:
                    self.metrics.dropped.labels("rate_limited").inc()
                if bucket.dropped >= limits.max_dropped:
                    log.warning("closing %s: sustained flood over the rate limit", link.peer)
                    link.close(CloseReason.RATE_LIMITED, abort=True)
                elif now - bucket.noticed >= NOTICE_INTERVAL:
                    _notify(link, bucket, cmd_buf, now)
                return
            if bucket.unreported and now - bucket.noticed >= NOTICE_INTERVAL:
                _notify(link, bucket, cmd_buf, now)  # the rest of the last streak
        self.inner.packet_received(link, cmd_buf)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.inner.protocol_error(link, exc)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        if self.links.pop(link, None) is None:
            return  # refused at open: the inner handler never saw it
        self._buckets.pop(link, None)
        ip = peer_ip(link.peer)
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        self.inner.link_closed(link, reason)

    # ------------------------------------------------------------------ idle sweep
    def sweep(self) -> int:
        """Close links idle past the timeout; ping idle WebSocket peers. Returns closures."""
        timeout = self.limits.idle_timeout
        now = self._clock()
        closed = 0
        for link, seen in list(self.links.items()):
            if link.raw_in != seen[0]:
                seen[0], seen[1] = link.raw_in, now
                continue
            idle = now - seen[1]
            if idle >= timeout:
                if self.metrics is not None:
                    self.metrics.dropped.labels("idle_timeout").inc()
                link.close(CloseReason.IDLE_TIMEOUT)
                closed += 1
            elif idle >= timeout / 2:
                link.ping()
        return closed

    async def _sweep_forever(self) -> None:
        interval = max(0.05, self.limits.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def _notify(link: Link, bucket: _Bucket, cmd_buf: bytearray, now: float) -> None:
    """Tell the client how many of its packets were dropped (drops are never silent),
    at most once per NOTICE_INTERVAL, in the proto_type of the packet at hand."""
    proto = int.from_bytes(cmd_buf[8:HEADER_SIZE], "little") if len(cmd_buf) >= HEADER_SIZE else 0
    if proto not in (ProtoType.JSON, ProtoType.BUF):
        proto = ProtoType.JSON
    body = {"dropped": min(bucket.unreported, 0xFFFF)}
    link.send_raw(
        CONTROL_CODECS.encode(
            CONTROL_STYPE,
            GatewayCmd.RATE_LIMITED,
            body,
            proto_type=proto,
            direction=Direction.TO_CLIENT,
        )
    )
    bucket.unreported = 0
    bucket.noticed = now
