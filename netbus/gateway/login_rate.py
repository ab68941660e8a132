"""The gateway's GUEST_LOGIN rate limit: a token bucket per client IP.

Guessing guest keys or flooding the accounts DB through logins costs time: each IP may make
``limits.login_burst`` attempts at once, then ``limits.login_rate`` per second (0 turns the
limit off). Loopback clients are exempt when ``limits.login_exempt_loopback`` is set: behind a
proxy on the same host every client is 127.0.0.1, and local tools log in by the thousand. The
gateway answers a refused attempt RATE_LIMITED and does not forward it (docs/config.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netbus.config import LimitsConfig
from netbus.ratelimit import TokenBucket
from netbus.transport.addr import is_loopback, peer_ip
from netbus.transport.link import Link

__all__ = ["LoginRateLimit"]

#: buckets kept before full ones are forgotten (bounds memory under address rotation)
_MAX_BUCKETS = 100_000


class LoginRateLimit:
    """Per-IP token buckets for GUEST_LOGIN.

    Args:
        limits: the gateway's limits (``login_rate``, ``login_burst``, ``login_exempt_loopback``).
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self, limits: LimitsConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}  #: client IP -> its bucket

    def allow(self, link: Link) -> bool:
        """Take a token from ``link``'s IP: False means refuse this login attempt."""
        limits = self.limits
        if limits.login_rate <= 0:
            return True
        ip = peer_ip(link.peer)
        if limits.login_exempt_loopback and is_loopback(ip):
            return True
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(ip)
        if bucket is None:
            if len(buckets) >= _MAX_BUCKETS:
                for key in [k for k, b in buckets.items() if b.full_at() <= now]:
                    del buckets[key]
            bucket = buckets[ip] = TokenBucket(limits.login_rate, limits.login_burst, now)
        return bucket.take(now)
