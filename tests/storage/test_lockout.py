"""One suite for every lockout limiter (memory, SQL on SQLite and MariaDB, Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from netbus.storage.lockout import (
    AttemptLimiter,
    LockoutPolicy,
    MemoryAttemptLimiter,
)
from netbus.storage.lockout_redis import RedisAttemptLimiter
from netbus.storage.lockout_sql import SqlAttemptLimiter

from .conftest import FakeClock, SharedBackend

POLICY = LockoutPolicy(max_failures=3, lockout=10.0, max_lockout=60.0, window=300.0)
KEY = "a" * 64

MakeLimiter = Callable[..., AttemptLimiter]


@pytest.fixture
def make_limiter(limiter_backend: SharedBackend, clock: FakeClock) -> MakeLimiter:
    def make(policy: LockoutPolicy = POLICY, *, prefix: str = "") -> AttemptLimiter:
        if limiter_backend.kind == "memory":
            return MemoryAttemptLimiter(policy, clock=clock)
        if limiter_backend.redis is not None:
            return RedisAttemptLimiter(
                limiter_backend.redis, policy, prefix=limiter_backend.prefix + prefix, clock=clock
            )
        assert limiter_backend.engine is not None
        return SqlAttemptLimiter(limiter_backend.engine, policy, clock=clock)

    return make


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> AttemptLimiter:
    return make_limiter()


# --- the policy (pure) ---------------------------------------------------------------------


def test_policy_doubles_up_to_the_cap() -> None:
    assert [POLICY.lock_for(n) for n in range(1, 9)] == [0, 0, 10, 20, 40, 60, 60, 60]
    assert POLICY.lock_for(10_000) == 60


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"lockout": 0},
        {"window": 0},
        {"max_lockout": 5.0},  # below lockout
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    values = {"max_failures": 3, "lockout": 10.0, "max_lockout": 60.0, "window": 300.0, **kwargs}
    with pytest.raises(ValueError):
        LockoutPolicy(**values)  # type: ignore[arg-type]


# --- the shared suite ----------------------------------------------------------------------


async def test_locks_after_max_failures(limiter: AttemptLimiter, clock: FakeClock) -> None:
    assert await limiter.locked_for(KEY) == 0
    assert await limiter.record_failure(KEY) == 0
    assert await limiter.record_failure(KEY) == 0
    assert await limiter.locked_for(KEY) == 0
    assert await limiter.record_failure(KEY) == 10
    assert await limiter.locked_for(KEY) == 10
    clock.advance(4)
    assert await limiter.locked_for(KEY) == 6
    clock.advance(6)
    assert await limiter.locked_for(KEY) == 0


async def test_lockout_doubles_then_caps(limiter: AttemptLimiter, clock: FakeClock) -> None:
    for _ in range(2):
        await limiter.record_failure(KEY)
    seen = []
    for _ in range(6):
        lock = await limiter.record_failure(KEY)
        seen.append(lock)
        clock.advance(lock)  # the attacker waits the lock out, then fails again
        assert await limiter.locked_for(KEY) == 0
    assert seen == [10, 20, 40, 60, 60, 60]


async def test_reset_forgets(limiter: AttemptLimiter) -> None:
    for _ in range(3):
        await limiter.record_failure(KEY)
    assert await limiter.locked_for(KEY) > 0
    await limiter.reset(KEY)
    assert await limiter.locked_for(KEY) == 0
    assert await limiter.record_failure(KEY) == 0  # counting starts again
    await limiter.reset("b" * 64)  # unknown key: nothing to do


async def test_count_is_forgotten_after_the_window(
    limiter: AttemptLimiter, clock: FakeClock
) -> None:
    await limiter.record_failure(KEY)
    await limiter.record_failure(KEY)
    clock.advance(300)
    assert await limiter.record_failure(KEY) == 0  # 1 again, not 3
    assert await limiter.record_failure(KEY) == 0
    assert await limiter.record_failure(KEY) == 10


async def test_keys_are_independent(limiter: AttemptLimiter) -> None:
    for _ in range(3):
        await limiter.record_failure(KEY)
    assert await limiter.locked_for(KEY) == 10
    assert await limiter.locked_for("b" * 64) == 0
    assert await limiter.record_failure("b" * 64) == 0


async def test_concurrent_failures_all_count(limiter: AttemptLimiter) -> None:
    locks = await asyncio.gather(*(limiter.record_failure(KEY) for _ in range(8)))
    # 8 failures: locks of 0, 0, 10, 20, 40, 60, 60, 60 in some order; the last one stands
    assert sorted(locks) == [0, 0, 10, 20, 40, 60, 60, 60]
    assert await limiter.locked_for(KEY) == 60


async def test_purge_drops_only_idle_entries(limiter: AttemptLimiter, clock: FakeClock) -> None:
    for i in range(3):
        await limiter.record_failure(f"{i:064d}")
    for _ in range(3):
        await limiter.record_failure(KEY)  # locked for 10 s
    clock.advance(300)
    await limiter.record_failure("f" * 64)  # recent: still counting
    purged = await limiter.purge(limit=2) + await limiter.purge(limit=10)
    if isinstance(limiter, RedisAttemptLimiter):
        assert purged == 0  # Redis expires its keys by itself
    else:
        assert purged == 4
    assert await limiter.record_failure("f" * 64) == 0  # the count of 1 survived: now 2
    assert await limiter.record_failure("f" * 64) == 10


@pytest.mark.parametrize("bad", ["", "x" * 65])
async def test_bad_keys_are_refused(limiter: AttemptLimiter, bad: str) -> None:
    with pytest.raises(ValueError):
        await limiter.record_failure(bad)
    with pytest.raises(ValueError):
        await limiter.locked_for(bad)


# --- backend specifics ---------------------------------------------------------------------


async def test_memory_limiter_is_bounded(clock: FakeClock) -> None:
    limiter = MemoryAttemptLimiter(POLICY, clock=clock, max_entries=3)
    for i in range(5):
        await limiter.record_failure(f"{i:064d}")
    assert len(limiter) == 3
    assert await limiter.record_failure(f"{0:064d}") == 0  # evicted: counting from 1


async def test_redis_counter_expires(redis_backend: SharedBackend, clock: FakeClock) -> None:
    client = redis_backend.redis
    assert client is not None
    limiter = RedisAttemptLimiter(client, POLICY, prefix=redis_backend.prefix, clock=clock)
    await limiter.record_failure(KEY)
    pttl = await client.pttl(f"{redis_backend.prefix}fail:{KEY}")
    assert 299_000 <= pttl <= 300_000
