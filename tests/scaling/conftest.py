"""Fixtures of the scaling tests: gateway processes over the shared Redis or a private one.

`shared_cluster` (one per module: center, talkroom, gw1..gw3 on the shared Redis) serves the
tests that change nothing but their own fresh keys. Tests that kill a process or Redis make
their own with `make_cluster`, which runs the cluster on the event loop of the test's variant
(``--loop asyncio`` under ``[asyncio]``, ``--loop uvloop`` under ``[uvloop]``).
`clients` connects to a gateway and closes everything it opened after the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from netbus.client import Client
from tests.registry.redis_server import (
    REDIS_URL,
    PrivateRedis,
    delete_prefix,
    redis_unavailable,
    unique_prefix,
)
from tests.scaling.cluster import ScaleCluster

ClusterFactory = Callable[..., Awaitable[ScaleCluster]]


def _require_shared_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        redis_unavailable(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def _loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleCluster]:
    _require_shared_redis()
    cluster = ScaleCluster(
        tmp_path_factory.mktemp("shared-cluster"), redis_url=REDIS_URL, prefix=unique_prefix()
    )
    try:
        cluster.start(gateways=3)
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(delete_prefix(cluster.redis_url, cluster.prefix))


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """``await make_cluster(gateways=2, redis_url=None, **options)``; everything is stopped and
    the test's keys deleted afterwards. ``redis_url=None`` means the shared Redis."""
    made: list[ScaleCluster] = []

    async def make(
        *, gateways: int = 2, redis_url: str | None = None, **options: Any
    ) -> ScaleCluster:
        if redis_url is None:
            _require_shared_redis()
        workdir = tmp_path / f"cluster{len(made)}"
        workdir.mkdir()
        cluster = ScaleCluster(
            workdir,
            redis_url=redis_url or REDIS_URL,
            prefix=unique_prefix(),
            loop=_loop_name(),
            **options,
        )
        made.append(cluster)
        await asyncio.to_thread(cluster.start, gateways)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            await asyncio.to_thread(cluster.stop)
            await delete_prefix(cluster.redis_url, cluster.prefix)


class Clients:
    """Opens clients to a cluster's gateways and closes them all at the end of the test."""

    def __init__(self) -> None:
        self.opened: list[Client] = []

    async def connect(self, cluster: ScaleCluster, gw_id: str) -> Client:
        client = await Client.connect(cluster.gateway(gw_id).url)
        self.opened.append(client)
        return client

    async def login(
        self, cluster: ScaleCluster, gw_id: str, key: str
    ) -> tuple[Client, dict[str, Any]]:
        client = await self.connect(cluster, gw_id)
        return client, await client.guest_login(key)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    tracker = Clients()
    try:
        yield tracker
    finally:
        await asyncio.gather(*(c.close() for c in tracker.opened), return_exceptions=True)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix on the shared Redis, deleted after the test."""
    _require_shared_redis()
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(REDIS_URL, prefix)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test alone, which it may stop and start again."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    async with PrivateRedis(workdir) as server:
        yield server
