"""The profile cache: the center writes each logged-in account's public profile to Redis.

``<prefix>user:<uid>`` is a hash with ``unick``, ``usex``, ``uface``, ``uvip`` and ``is_guest``
(``0``/``1``), written on every successful login, before the reply leaves the center: a
service that sees the user's first packet can read it. It is a cache (the database is the
truth), so a failed write is logged and the login goes on; ``ttl`` bounds stale entries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT

if TYPE_CHECKING:
    from netbus.storage import Account

__all__ = ["ProfileCache"]

log = logging.getLogger("netbus.registry")


class ProfileCache:
    """Writes profiles with one pipelined ``HSET`` + ``EXPIRE``, bounded by ``timeout``.

    Args:
        client: a redis.asyncio client (see `netbus.registry.redis.redis_client`); not owned.
        ttl: seconds an entry lives after its last login (None: no expiry).
        timeout: seconds a login may wait for the write.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "netbus:",
        ttl: float | None = 7 * 86400,
        timeout: float = 0.5,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.timeout = timeout
        self._last_warning = 0.0

    def key(self, uid: int) -> str:
        return f"{self.prefix}user:{uid}"

    async def store(self, account: Account) -> None:
        """`AuthService` ``on_login`` hook: cache the profile; never fails the login."""
        profile: dict[EncodableT, EncodableT] = {
            "unick": account.unick,
            "usex": account.usex,
            "uface": account.uface,
            "uvip": account.uvip,
            "is_guest": int(account.is_guest),
        }
        key = self.key(account.uid)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.hset(key, mapping=profile)
                    if self.ttl:
                        pipe.expire(key, int(self.ttl))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._last_warning > 10.0:  # one line per outage burst, not per login
                self._last_warning = now
                log.warning("profile cache write failed (%s: %s)", type(exc).__name__, exc)
