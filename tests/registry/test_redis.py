"""What only the Redis registry does: leases, the refresh loop, pub/sub recovery, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from netbus.errors import RegistryUnavailable
from netbus.registry import Owner, RedisRegistry, redact_redis_url
from tests.registry.redis_server import REDIS_URL, PrivateRedis, delete_prefix, wait_until


@asynccontextmanager
async def registry(
    gateway_id: str,
    prefix: str,
    *,
    url: str = REDIS_URL,
    start: bool = True,
    kicks: list[tuple[int, str]] | None = None,
    **kwargs: float,
) -> AsyncIterator[RedisRegistry]:
    reg = RedisRegistry(url, gateway_id, prefix=prefix, **kwargs)
    sink = kicks if kicks is not None else []
    reg.set_kick_handler(lambda uid, conn: sink.append((uid, conn)))
    if start:
        await reg.start()
    try:
        yield reg
    finally:
        await reg.close()


async def test_an_entry_is_a_lease_that_expires_without_refresh(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    async with registry("gwA", redis_prefix, start=False, lease=0.3) as reg:
        await reg.claim(7, "a.1")
        key = f"{redis_prefix}uid:7"
        assert await raw_redis.get(key) == "gwA:a.1"
        assert 0 < await raw_redis.pttl(key) <= 300
        started = time.monotonic()  # not started: nothing renews the entry

        async def gone() -> bool:
            return not await raw_redis.exists(key)

        await wait_until(gone, timeout=3.0, what="the lease to expire")
        assert time.monotonic() - started < 1.0


async def test_the_refresh_loop_renews_leases(redis_prefix: str, raw_redis: aioredis.Redis) -> None:
    async with registry("gwA", redis_prefix, lease=0.5, refresh_interval=0.1) as reg:
        await reg.claim(7, "a.1")
        key = f"{redis_prefix}uid:7"
        claimed = time.monotonic()

        async def alive_past_two_leases() -> bool:
            assert await raw_redis.get(key) == "gwA:a.1", "the lease lapsed"
            return time.monotonic() - claimed > 1.0

        await wait_until(alive_past_two_leases, timeout=5.0, interval=0.05)


async def test_the_refresh_loop_repairs_a_lost_kick(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    kicks: list[tuple[int, str]] = []
    async with registry("gwA", redis_prefix, kicks=kicks, lease=3.0, refresh_interval=0.1) as reg:
        await reg.claim(7, "a.1")
        # another gateway's claim whose pub/sub kick never arrived
        await raw_redis.set(f"{redis_prefix}uid:7", "gwB:b.1", px=10_000)
        await wait_until(lambda: kicks == [(7, "a.1")], timeout=3.0, what="the repair kick")
        assert 7 not in reg.held


async def test_a_kick_that_overtakes_the_claim_reply_keeps_it_out_of_held(
    redis_prefix: str,
) -> None:
    kicks: list[tuple[int, str]] = []
    async with registry("gwA", redis_prefix, kicks=kicks) as reg:
        original = reg._claim

        async def claim_then_get_kicked(**kwargs: object) -> object:
            result = await original(**kwargs)  # type: ignore[arg-type]
            reg.deliver_kick(7, "a.1")  # the subscriber got the kick first
            return result

        reg._claim = claim_then_get_kicked  # type: ignore[assignment,method-assign]
        assert await reg.claim(7, "a.1") is None
        assert kicks == [(7, "a.1")]
        assert 7 not in reg.held


async def test_malformed_kick_messages_are_ignored(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    kicks: list[tuple[int, str]] = []
    async with registry("gwA", redis_prefix, kicks=kicks) as reg:
        await asyncio.wait_for(reg.subscribed.wait(), 5)
        channel = f"{redis_prefix}kick:gwA"
        for junk in ("", "x y", "12", "-3 a.1", "\xff\xfe"):
            await raw_redis.publish(channel, junk)
        await raw_redis.publish(channel, "7 a.1")
        await wait_until(lambda: kicks, timeout=3.0)
        assert kicks == [(7, "a.1")]


async def test_claims_fail_fast_and_recover_across_a_redis_restart(
    private_redis: PrivateRedis,
) -> None:
    """Down: calls raise RegistryUnavailable at once. Back (empty): entries are re-created by
    the refresh, the kick channel is subscribed again, and kicks flow."""
    prefix = "netbus-test-restart:"
    kicks_a: list[tuple[int, str]] = []
    url = private_redis.url
    async with (
        registry("gwA", prefix, url=url, kicks=kicks_a, lease=2.0, refresh_interval=0.1) as a,
        registry("gwB", prefix, url=url, lease=2.0, refresh_interval=0.1) as b,
    ):
        await asyncio.wait_for(a.subscribed.wait(), 5)
        await a.claim(1, "a.1")
        await private_redis.stop()
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            await b.claim(2, "b.2")
        assert time.monotonic() - started < 1.0
        with pytest.raises(RegistryUnavailable):
            await a.refresh()
        await wait_until(lambda: not a.subscribed.is_set(), timeout=5.0, what="sub lost")

        await private_redis.start()  # same port, no data

        async def restored() -> bool:
            try:
                return await b.owner(1) == Owner("gwA", "a.1")
            except RegistryUnavailable:
                return False

        await wait_until(restored, timeout=5.0, what="gwA to re-create its entry")
        await wait_until(a.subscribed.is_set, timeout=5.0, what="gwA to resubscribe")
        assert await b.claim(1, "b.1") == Owner("gwA", "a.1")
        await wait_until(lambda: kicks_a == [(1, "a.1")], timeout=3.0, what="the kick")


async def test_every_call_is_bounded_when_redis_hangs() -> None:
    """A server that accepts and never answers: calls fail within the timeout, no hang."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        async with registry(
            "gwA", "netbus-test-hang:", url=f"redis://127.0.0.1:{port}/0", timeout=0.3
        ) as reg:
            with pytest.raises(RegistryUnavailable):
                await reg.claim(7, "a.1")
            with pytest.raises(RegistryUnavailable):
                await reg.release(7, "a.1")
        assert time.monotonic() - started < 3.0  # start (ping), claim, release, close
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_close_deletes_only_this_gateways_entries(
    redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    async with registry("gwB", redis_prefix) as b:
        async with registry("gwA", redis_prefix) as a:
            await a.claim(1, "a.1")
            await a.claim(2, "a.2")
            await b.claim(2, "b.2")
        assert await raw_redis.exists(f"{redis_prefix}uid:1") == 0
        assert await raw_redis.get(f"{redis_prefix}uid:2") == "gwB:b.2"
    assert await delete_prefix(REDIS_URL, redis_prefix) == 0


def test_redact_redis_url() -> None:
    assert redact_redis_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_redis_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_redis_url("rediss://user:pw@h/1") == "rediss://user:***@h/1"


def test_bad_lease_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisRegistry(REDIS_URL, "gwA", lease=0)
