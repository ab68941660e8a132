"""The gateway's GUEST_LOGIN rate limit: a token bucket per client address block.

Guessing guest keys or flooding the accounts DB through logins costs time: each client may
make ``limits.login_burst`` attempts at once, then ``limits.login_rate`` per second (0 turns
the limit off). Clients are told apart by ``link.peer_ip`` -- the real client when a trusted
proxy named it (PROXY protocol, X-Forwarded-For) -- aggregated by network prefix
(``limits.ipv4_prefix``, ``limits.ipv6_prefix``), so rotating addresses inside one block
does not escape the limit. Loopback clients are exempt only when
``limits.login_exempt_loopback`` is set (off by default: behind a proxy on the same host
every client would otherwise be exempt). The gateway answers a refused attempt with
RATE_LIMITED (the real count of refused packets, at most one notice a second) and does not
forward it (docs/config.md, docs/protocol.md §7).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netbus.config import LimitsConfig
from netbus.ratelimit import TokenBucket
from netbus.transport.addr import ip_key, is_loopback
from netbus.transport.link import Link
from netbus.transport.notices import note_dropped

__all__ = ["LoginRateLimit"]

#: buckets kept before full ones are forgotten (bounds memory under address rotation)
_MAX_BUCKETS = 100_000


class LoginRateLimit:
    """Per-client-block token buckets for GUEST_LOGIN.

    Args:
        limits: the gateway's limits (``login_rate``, ``login_burst``,
            ``login_exempt_loopback``, ``ipv4_prefix``, ``ipv6_prefix``).
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self, limits: LimitsConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}  #: client address block -> its bucket

    def key(self, link: Link) -> str:
        """The address block ``link``'s logins count against."""
        limits = self.limits
        return ip_key(link.peer_ip, v4_prefix=limits.ipv4_prefix, v6_prefix=limits.ipv6_prefix)

    def allow(self, link: Link) -> bool:
        """Take a token from ``link``'s address block: False means refuse this attempt."""
        limits = self.limits
        if limits.login_rate <= 0:
            return True
        if limits.login_exempt_loopback and is_loopback(link.peer_ip):
            return True
        now = self._clock()
        key = self.key(link)
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= _MAX_BUCKETS:
                for old in [k for k, b in buckets.items() if b.full_at() <= now]:
                    del buckets[old]
            bucket = buckets[key] = TokenBucket(limits.login_rate, limits.login_burst, now)
        return bucket.take(now)

    def refuse(self, link: Link, proto_type: int) -> None:
        """Count the refused attempt as a dropped packet of ``link``; the client hears
        RATE_LIMITED with the real count, at most once a second (`note_dropped`)."""
        note_dropped(link, proto_type, self._clock())
