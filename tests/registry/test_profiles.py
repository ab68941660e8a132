"""The center's profile cache: ``<prefix>user:<uid>`` written on login, never failing one."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from netbus.registry import ProfileCache, redis_client
from netbus.storage import Account
from tests.registry.redis_server import REDIS_URL, free_port

ACCOUNT = Account(
    uid=42,
    unick="遊客123456",
    usex=1,
    uface=3,
    uvip=2,
    vip_endtime=0,
    is_guest=True,
    status=0,
)


async def test_store_writes_the_profile_hash_with_a_ttl(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    client = redis_client(REDIS_URL, timeout=1.0)
    try:
        await ProfileCache(client, prefix=redis_prefix, ttl=60).store(ACCOUNT)
    finally:
        await client.aclose()
    key = f"{redis_prefix}user:42"
    assert await raw_redis.hgetall(key) == {
        "unick": "遊客123456",
        "usex": "1",
        "uface": "3",
        "uvip": "2",
        "is_guest": "1",
    }
    assert 0 < await raw_redis.ttl(key) <= 60


async def test_store_without_ttl_keeps_the_entry(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    client = redis_client(REDIS_URL, timeout=1.0)
    try:
        await ProfileCache(client, prefix=redis_prefix, ttl=None).store(ACCOUNT)
    finally:
        await client.aclose()
    assert await raw_redis.ttl(f"{redis_prefix}user:42") == -1


async def test_a_failed_write_is_swallowed_quickly() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    try:
        started = time.monotonic()
        await ProfileCache(client, timeout=0.5).store(ACCOUNT)  # must not raise
        assert time.monotonic() - started < 1.0
    finally:
        await client.aclose()
