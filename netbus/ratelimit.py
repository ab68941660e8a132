"""`TokenBucket`: the one rate limiter every netbus limit uses (packets, logins, bytes).

Pure: the caller passes the current time, so limits are tested with a fake clock and the hot
path pays one clock read per packet at most (the caller's).
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens per second.

    Args:
        rate: tokens added per second (> 0).
        burst: the bucket size, also its initial content.
        now: the time the bucket starts at, on the caller's clock.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def level(self, now: float) -> float:
        """Tokens available at ``now`` (refills the bucket)."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.tokens = tokens
        self.stamp = now
        return tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; False (nothing taken) otherwise."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens < cost:
            self.tokens = tokens
            return False
        self.tokens = tokens - cost
        return True

    def full_at(self) -> float:
        """When the bucket will be full again (callers forget full buckets to bound memory)."""
        return self.stamp + (self.burst - self.tokens) / self.rate
