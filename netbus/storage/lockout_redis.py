"""`AttemptLimiter` over Redis: lockout counters shared by every center (``[redis] url``).

Key (``P`` = ``[redis] prefix``): ``P fail:<key>``, a hash of ``n`` (failures), ``g`` (when
the count is forgotten) and ``l`` (locked until), unix milliseconds. Counting a failure is
one Lua script (atomic); the key expires by itself once it neither counts nor locks, so
`RedisAttemptLimiter.purge` has nothing to do. Every call is bounded by ``timeout``; any
Redis failure becomes `StorageError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from netbus.storage.errors import StorageError
from netbus.storage.lockout import LockoutPolicy, check_key

__all__ = ["RedisAttemptLimiter"]

T = TypeVar("T")

# KEYS[1] the counter. ARGV: now ms, window ms, max failures, lockout ms, max lockout ms.
# Returns the locked-until time (ms). Same arithmetic as LockoutPolicy.lock_for.
_FAIL = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxf, lockout, maxlock = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'n', 'g', 'l')
local n, forget, locked = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')
if forget <= now then n = 1 else n = n + 1 end
if n >= maxf then
  local lock = math.min(maxlock, lockout * 2 ^ math.min(n - maxf, 64))
  locked = math.max(locked, now + math.floor(lock))
end
redis.call('HSET', KEYS[1], 'n', n, 'g', now + window, 'l', locked)
redis.call('PEXPIRE', KEYS[1], math.max(window, locked - now))
return locked
"""


class RedisAttemptLimiter:
    """`AttemptLimiter` in Redis (`netbus.storage.lockout` has the rules).

    Args:
        client: a ``redis.asyncio.Redis`` with ``decode_responses=True``; not owned.
        policy: the lockout policy.
        prefix: prepended to every key; give each limiter its own (``netbus:acct:`` ...).
        clock: unix time in seconds; injected for tests.
        timeout: upper bound in seconds for one call.
    """

    def __init__(
        self,
        client: Redis,
        policy: LockoutPolicy,
        *,
        prefix: str = "netbus:",
        clock: Callable[[], float] = time.time,
        timeout: float = 1.5,
    ) -> None:
        self.policy = policy
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._timeout = timeout
        self._fail = client.register_script(_FAIL)
        self._args = [
            round(policy.window * 1000),
            policy.max_failures,
            round(policy.lockout * 1000),
            round(policy.max_lockout * 1000),
        ]

    def _key(self, key: str) -> str:
        return f"{self._prefix}fail:{check_key(key)}"

    async def _bounded(self, op: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (RedisError, OSError, TimeoutError) as err:
            raise StorageError(f"{op}: redis {type(err).__name__}") from err

    async def locked_for(self, key: str) -> float:
        name = self._key(key)
        now = int(self._clock() * 1000)
        locked = await self._bounded("lockout check", self._client.hget(name, "l"))
        return 0.0 if locked is None else max(0, int(locked) - now) / 1000

    async def record_failure(self, key: str) -> float:
        name = self._key(key)
        now = int(self._clock() * 1000)
        locked = await self._bounded(
            "lockout count", self._fail(keys=[name], args=[now, *self._args])
        )
        return max(0, int(locked) - now) / 1000

    async def reset(self, key: str) -> None:
        await self._bounded("lockout reset", self._client.delete(self._key(key)))

    async def purge(self, *, limit: int = 1000) -> int:
        return 0  # keys carry their own expiry
