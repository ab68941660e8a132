"""Failed-login counters with lockout: the `AttemptLimiter` protocol and its in-memory version.

Password guessing is stopped by two limiters (docs/security.md "Lockout"):

* **per account**, keyed by the username's key: stops a slow online guessing attack on one
  account from any number of addresses. Unknown usernames are counted and locked exactly
  like real ones, so a lockout tells nothing about which usernames exist.
* **per source address**, keyed by the client's IP: stops one address from trying a few
  passwords on many accounts (password spraying, credential stuffing).

Both follow a `LockoutPolicy`: ``max_failures`` consecutive failures lock the key for
``lockout`` seconds; each further failure (once the lock has ended) locks it for twice as long
as the one before, up to ``max_lockout``. While
locked, attempts are refused before any password is checked, and are not counted, so a lock
ends on time. A success resets the account's counter (never the address's: one good account
must not let a sprayer reset its own count). A count is forgotten ``window`` seconds after the
key's last failure.

Three implementations pass one test suite: `MemoryAttemptLimiter` (one process, bounded
size), `netbus.storage.lockout_sql.SqlAttemptLimiter` (the ``login_failures`` table, shared by
every center on the database) and `netbus.storage.lockout_redis.RedisAttemptLimiter` (shared
through Redis). Keys are opaque strings of at most 64 characters; callers pass keyed digests
(`netbus.storage.credentials` does), so no username or address is stored in clear.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAX_KEY_LENGTH",
    "AttemptLimiter",
    "LockoutPolicy",
    "MemoryAttemptLimiter",
]

#: Longest limiter key (a hex SHA-256 digest is 64 characters).
MAX_KEY_LENGTH = 64


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """When failures lock a key. See the module docstring.

    Attributes:
        max_failures: consecutive failures that lock the key the first time (>= 1).
        lockout: seconds of the first lockout (> 0).
        max_lockout: the longest lockout; the doubling stops here (>= ``lockout``).
        window: seconds after the last failure at which the count starts again (> 0).
    """

    max_failures: int
    lockout: float
    max_lockout: float
    window: float

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lockout <= 0 or self.window <= 0:
            raise ValueError(f"invalid lockout policy {self}")
        if self.max_lockout < self.lockout:
            raise ValueError("max_lockout must be at least lockout")

    def lock_for(self, failures: int) -> float:
        """Seconds a key is locked after its ``failures``-th consecutive failure (0 = not)."""
        if failures < self.max_failures:
            return 0.0
        exponent = min(failures - self.max_failures, 64)
        return float(min(self.max_lockout, self.lockout * 2**exponent))


class AttemptLimiter(Protocol):
    """Failure counters with lockout for opaque keys. See the module docstring."""

    policy: LockoutPolicy

    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now.

        Raises:
            StorageError, RegistryUnavailable: the shared backend failed.
        """
        ...

    async def record_failure(self, key: str) -> float:
        """Count one failure of ``key``; return the seconds it is now locked for (0 = not).

        Raises:
            StorageError, RegistryUnavailable: the shared backend failed.
        """
        ...

    async def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful login)."""
        ...

    async def purge(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` entries that are neither locked nor counting; return how many."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a usable limiter key; raise ValueError otherwise."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"limiter keys are 1..{MAX_KEY_LENGTH} characters")
    return key


class MemoryAttemptLimiter:
    """`AttemptLimiter` in this process's memory, holding at most ``max_entries`` keys.

    When full, the key that failed least recently is dropped (which can end its lock early:
    an attacker who controls that many addresses is better stopped at the network edge).
    Each center process counts on its own: with N centers and no Redis, an address gets up
    to N times the attempts.

    Args:
        policy: the lockout policy.
        clock: unix time in seconds; injected for tests.
        max_entries: keys kept at most.
    """

    def __init__(
        self,
        policy: LockoutPolicy,
        *,
        clock: Callable[[], float] = time.time,
        max_entries: int = 100_000,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._max_entries = max_entries
        #: key -> [failures, forget_at, locked_until]; oldest failure first
        self._entries: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def locked_for(self, key: str) -> float:
        entry = self._entries.get(check_key(key))
        if entry is None:
            return 0.0
        return max(0.0, entry[2] - self._clock())

    async def record_failure(self, key: str) -> float:
        now = self._clock()
        entry = self._entries.pop(check_key(key), None)
        if entry is None or entry[1] <= now:
            entry = [0.0, 0.0, 0.0 if entry is None else entry[2]]
        entry[0] += 1
        entry[1] = now + self.policy.window
        lock = self.policy.lock_for(int(entry[0]))
        entry[2] = max(entry[2], now + lock)
        self._entries[key] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return max(0.0, entry[2] - now)

    async def reset(self, key: str) -> None:
        self._entries.pop(check_key(key), None)

    async def purge(self, *, limit: int = 1000) -> int:
        now = self._clock()
        stale: list[str] = []
        # Entries are in order of their last failure, so of ``forget_at`` too.
        for key, (_, forget_at, locked_until) in self._entries.items():
            if forget_at > now or len(stale) >= limit:
                break
            if locked_until <= now:
                stale.append(key)
        for key in stale:
            del self._entries[key]
        return len(stale)
