"""Registry fixtures: one test suite for the in-process and the Redis registry (STYLE §2.9).

`backend` is parametrised over ``local`` and ``redis``. Its `Backend.make` returns started
registries that share one state (a `LocalHub`, or one Redis under a test-private key
prefix), so two registries stand for two gateways. Every kick a registry reports is recorded
in `Backend.kicks`. Keys are deleted after each test; the shared Redis is never flushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from netbus.registry import LocalHub, LocalRegistry, Owner, RedisRegistry, Registry
from tests.registry.redis_server import (
    REDIS_URL,
    PrivateRedis,
    delete_prefix,
    redis_unavailable,
    unique_prefix,
    wait_until,
)

__all__ = ["Backend"]

_redis_down: list[str] = []


async def _check_shared_redis() -> None:
    if _redis_down:
        redis_unavailable(_redis_down[0])
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        _redis_down.append(f"{type(exc).__name__}: {exc}")
        redis_unavailable(_redis_down[0])
    finally:
        await client.aclose()


@dataclass
class Backend:
    """Registries of several "gateways" over one shared state, plus ways to poke that state."""

    name: str
    url: str = REDIS_URL
    prefix: str = ""
    hub: LocalHub = field(default_factory=LocalHub)
    registries: list[Registry] = field(default_factory=list)
    kicks: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    raw: aioredis.Redis | None = None

    async def make(self, gateway_id: str, **kwargs: object) -> Registry:
        """A started registry for gateway ``gateway_id``, recording its kicks."""
        registry: Registry
        if self.name == "local":
            registry = LocalRegistry(gateway_id, hub=self.hub)
        else:
            options = {"lease": 5.0, "timeout": 1.0, **kwargs}
            registry = RedisRegistry(self.url, gateway_id, prefix=self.prefix, **options)  # type: ignore[arg-type]
        kicks = self.kicks.setdefault(gateway_id, [])
        registry.set_kick_handler(lambda uid, conn: kicks.append((uid, conn)))
        await registry.start()
        self.registries.append(registry)
        if isinstance(registry, RedisRegistry):
            await asyncio.wait_for(registry.subscribed.wait(), 5.0)
        return registry

    async def wait_kicks(self, gateway_id: str, count: int, timeout: float = 5.0) -> None:
        kicks = self.kicks.setdefault(gateway_id, [])
        await wait_until(lambda: len(kicks) >= count, timeout=timeout, what=f"{count} kicks")

    async def steal(self, uid: int, owner: Owner) -> None:
        """Make ``owner`` the owner of ``uid`` behind everybody's back (no kick is sent)."""
        if self.raw is None:
            self.hub.owners[uid] = owner
        else:
            await self.raw.set(f"{self.prefix}uid:{uid}", str(owner), px=60_000)

    async def wipe(self, uid: int) -> None:
        """Drop the entry of ``uid``, as a Redis restart without persistence would."""
        if self.raw is None:
            self.hub.owners.pop(uid, None)
        else:
            await self.raw.delete(f"{self.prefix}uid:{uid}")

    async def close(self) -> None:
        for registry in self.registries:
            await registry.close()
        if self.raw is not None:
            await self.raw.aclose()
            await delete_prefix(self.url, self.prefix)


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "local":
        b = Backend("local")
    else:
        await _check_shared_redis()
        b = Backend("redis", prefix=unique_prefix())
        b.raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix on the shared Redis, deleted after the test."""
    await _check_shared_redis()
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(REDIS_URL, prefix)


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared Redis (decoded strings) for checking keys."""
    await _check_shared_redis()
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test alone, which it may stop and start again."""
    async with PrivateRedis(tmp_path) as server:
        yield server
