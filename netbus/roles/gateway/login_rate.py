"""The gateway's GUEST_LOGIN rate limit: a token bucket per client IP.

Guessing guest keys or flooding the accounts DB through logins costs time: each IP may make
``limits.login_burst`` attempts at once, then ``limits.login_rate`` per second (0 turns the
limit off). Loopback clients are exempt when ``limits.login_exempt_loopback`` is set: behind a
proxy on the same host every client is 127.0.0.1, and local tools log in by the thousand. The
gateway answers a refused attempt RATE_LIMITED and does not forward it (docs/config.md).
"""

from __future__ import annotations

import time

from netbus.config import LimitsConfig
from netbus.transport.link import Link

__all__ = ["LoginRateLimit"]


class LoginRateLimit:
    """Per-IP token buckets for GUEST_LOGIN.

    Args:
        limits: the gateway's limits (``login_rate``, ``login_burst``, ``login_exempt_loopback``).
    """

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self._buckets: dict[str, list[float]] = {}  #: client IP -> [tokens, stamp]

    def allow(self, link: Link) -> bool:
        """Take a token from ``link``'s IP: False means refuse this login attempt."""
        limits = self.limits
        if limits.login_rate <= 0:
            return True
        ip = link.peer[0] if isinstance(link.peer, tuple) else "?"
        if limits.login_exempt_loopback and (ip.startswith("127.") or ip == "::1"):
            return True
        now = time.monotonic()
        buckets = self._buckets
        bucket = buckets.get(ip)
        if bucket is None:
            if len(buckets) >= 100_000:  # forget addresses whose bucket has refilled
                full = limits.login_burst / limits.login_rate
                for key in [k for k, b in buckets.items() if now - b[1] > full]:
                    del buckets[key]
            bucket = buckets[ip] = [limits.login_burst, now]
        tokens = min(limits.login_burst, bucket[0] + (now - bucket[1]) * limits.login_rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True
