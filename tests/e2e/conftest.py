"""Fixtures of the end-to-end tests: real role processes, real sockets, real databases.

- ``shared_cluster`` (one per test module): for tests that leave the cluster as they found
  it. ``cluster`` hands it to a test after checking that every route answers and the room
  is empty (leftover members of the previous test are awaited until they have left).
- ``cluster_factory``: a cluster of the test's own, for tests that kill or restart roles.
- ``database_url``: SQLite and MariaDB. MariaDB gets a database of its own,
  ``netbus_e2e_<hex>``, dropped afterwards; if the server does not answer the MariaDB
  variant fails under CI (env ``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from netbus.client import Client
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus

from .cluster import Cluster, live_pids_with_arg
from .helpers import Clients, barrier, leaked_secrets, next_gateway_notice, retry_until_served


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_client_loop: run this e2e test's client side on one event loop only",
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """Tests marked ``one_client_loop`` (the ones that start and stop processes, where the
    time goes) run their client side on the stdlib loop only: the loop under test there is
    the roles' (uvloop by default, asyncio's in test_roles_on_the_stdlib_loop), and the
    client library runs on both loops in every other test. ``NETBUS_TEST_LOOPS`` still wins.
    None defers to tests/conftest.py.
    """
    if item.get_closest_marker("one_client_loop") and not os.environ.get("NETBUS_TEST_LOOPS"):
        return {"asyncio": asyncio.new_event_loop}
    return None


MYSQL_BASE_URL = os.environ.get("NETBUS_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")
READY_TIMEOUT = 20.0


async def ready_check(
    cluster: Cluster, *, timeout: float = READY_TIMEOUT, empty_room: bool = True
) -> None:
    """Every route answers through the gateway, and (``empty_room``) the room is empty.

    A probe logs in (auth route), asks the talkroom for Exit (talkroom route), enters, and
    waits for the UserExit of anyone still in the room (a client the previous test closed
    whose USER_DISCONNECT the talkroom has not handled yet); then leaves.
    """
    probe = await Client.connect(cluster.tcp_url)
    try:
        reply = await retry_until_served(
            lambda: probe.guest_login(cluster.probe_key), timeout=timeout
        )
        assert reply.get("status") == 1, reply

        async def talkroom_back(remaining: float) -> object:
            return await next_gateway_notice(
                probe, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom, timeout=remaining
            )

        status = await retry_until_served(probe.exit, timeout=timeout, wake=talkroom_back)
        assert status in (TalkroomStatus.OK, TalkroomStatus.NOT_IN_ROOM), status
        if not empty_room:
            return
        assert await probe.enter("~probe", 0) == TalkroomStatus.OK
        await barrier(probe)
        present = {
            p.body["uname"]
            for p in probe.drain_pushes()
            if p.stype == Stype.TalkRoom and p.ctype == TalkroomCmd.UserArrived
        }
        while present:
            push = await probe.next_push(Stype.TalkRoom, TalkroomCmd.UserExit, timeout=timeout)
            present.discard(push.body["uname"])
        assert await probe.exit() == TalkroomStatus.OK
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await probe.close()


def stop_and_check(cluster: Cluster) -> None:
    """Stop the roles (each must exit 0 on SIGTERM) and check what they leave behind: no
    process, and no guest key or pepper in anything they printed."""
    try:
        cluster.stop(check=True)
    finally:
        leftovers = live_pids_with_arg(str(cluster.config_path))
        assert not leftovers, f"role processes outlived the cluster: {leftovers}"
    pepper = cluster.pepper_file.read_text().strip() if cluster.pepper_file.exists() else ""
    output = [line for proc in cluster.history for line in proc.output()]
    leaked = leaked_secrets(output, cluster.probe_key, pepper)
    assert not leaked, f"secrets in the roles' output: {sorted(leaked)}"


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        stop_and_check(cluster)


@pytest.fixture
async def cluster(shared_cluster: Cluster) -> Cluster:
    await ready_check(shared_cluster)
    return shared_cluster


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster_factory(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """``await cluster_factory(database_url=..., loop=...)``: a started cluster of one's own."""
    started: list[Cluster] = []

    async def make(*, database_url: str | None = None, loop: str = "auto") -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(started)}", database_url=database_url, loop=loop)
        started.append(cluster)
        await asyncio.to_thread(cluster.start)
        await ready_check(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in started:
            stop_and_check(cluster)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    pool = Clients()
    try:
        yield pool
    finally:
        await pool.close_all()


# ----------------------------------------------------------------------------- storage
def _mariadb_unavailable(reason: str) -> None:
    message = f"MariaDB at {make_url(MYSQL_BASE_URL).render_as_string()} unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "mariadb"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None (the cluster's own SQLite file) or the URL of a scratch MariaDB database."""
    if request.param == "sqlite":
        yield None
        return
    admin_url = make_url(MYSQL_BASE_URL).set(database=None)
    admin = create_async_engine(
        admin_url.update_query_dict({"connect_timeout": "3"}), poolclass=NullPool
    )
    name = f"netbus_e2e_{secrets.token_hex(6)}"
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4"))
        except Exception as exc:  # no server, or it refuses us
            _mariadb_unavailable(f"{type(exc).__name__}: {exc}")
        try:
            yield make_url(MYSQL_BASE_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
    finally:
        await admin.dispose()
