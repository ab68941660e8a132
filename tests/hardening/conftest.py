"""Fixtures of the hardening tests: clusters of real role processes, each test bounded.

The roles run on their production loop (uvloop where installed); the test (client) side
runs on the stdlib loop only, since these tests spend their time in processes and timers,
not in the client library (which the rest of the suite runs on both loops).
``NETBUS_TEST_LOOPS`` still wins, as everywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from netbus.client import Client
from tests.e2e.helpers import Clients, retry_until_served

from .harness import HardCluster, close_raw_sockets

READY_TIMEOUT = 20.0


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    if os.environ.get("NETBUS_TEST_LOOPS"):
        return None  # tests/conftest.py honours it
    return {"asyncio": asyncio.new_event_loop}


async def wait_served(cluster: HardCluster, *, talkroom: bool = True) -> None:
    """The gateway routes to its services: a probe logs in (and asks the talkroom for Exit)."""
    probe = await Client.connect(cluster.tcp_url)
    try:
        reply = await retry_until_served(
            lambda: probe.guest_login(cluster.probe_key), timeout=READY_TIMEOUT
        )
        assert reply.get("status") == 1, reply
        if talkroom:
            await retry_until_served(probe.exit, timeout=READY_TIMEOUT)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await probe.close()


ClusterFactory = Callable[..., Awaitable[HardCluster]]


@pytest.fixture
async def cluster_factory(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """``await cluster_factory(**HardCluster options, services=(...), wait=True)``."""
    started: list[HardCluster] = []

    async def make(
        *, services: tuple[str, ...] = ("center", "talkroom"), wait: bool = True, **options: Any
    ) -> HardCluster:
        cluster = HardCluster(tmp_path / f"cluster{len(started)}", **options)
        started.append(cluster)
        await asyncio.to_thread(cluster.start, services)
        if wait:
            await wait_served(cluster, talkroom="talkroom" in services)
        return cluster

    try:
        yield make
    finally:
        errors = []
        for cluster in started:
            try:
                await asyncio.to_thread(cluster.finish)
            except AssertionError as exc:
                errors.append(str(exc))
        if errors:
            pytest.fail("\n".join(errors))


@pytest.fixture(scope="module")
def module_cluster_options() -> dict[str, Any]:
    """Overridden by a test module that wants a module-wide cluster of its own make."""
    return {}


@pytest.fixture(scope="module")
def module_cluster(
    tmp_path_factory: pytest.TempPathFactory, module_cluster_options: dict[str, Any]
) -> Iterator[HardCluster]:
    """One cluster for the whole module (tests that leave it as they found it)."""
    cluster = HardCluster(tmp_path_factory.mktemp("cluster"), **module_cluster_options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.finish()


@pytest.fixture
async def cluster(module_cluster: HardCluster) -> HardCluster:
    dead = module_cluster.dead_roles()
    assert not dead, f"a role of the module cluster died: {dead}\n{module_cluster.logs()}"
    await wait_served(module_cluster)
    return module_cluster


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    pool = Clients()
    try:
        yield pool
    finally:
        await pool.close_all()


@pytest.fixture(autouse=True)
async def _close_raw_sockets() -> AsyncIterator[None]:
    """Raw sockets a test opened (`RawTcp`) are closed after it, pass or fail."""
    yield
    await close_raw_sockets()
