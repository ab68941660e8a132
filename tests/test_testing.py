"""netbus/testing.py: the public in-process cluster and fake clock (their own contract)."""

from __future__ import annotations

import pytest

from netbus.roles.talkroom import TalkroomService
from netbus.service import Service
from netbus.testing import FakeClock, TestCluster


class Impostor(Service):
    """A service on the auth stype, which the built-in auth service already serves."""

    stype = 2
    name = "impostor"


def test_fake_clock_moves_only_forward_and_only_when_told() -> None:
    clock = FakeClock(10.0)
    assert clock() == clock() == 10.0
    clock.advance(2.5)
    assert clock() == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_cluster_refuses_impossible_layouts() -> None:
    with pytest.raises(ValueError, match="gateway"):
        TestCluster(gateways=0)
    with pytest.raises(ValueError, match="listener"):
        TestCluster(listeners=())
    with pytest.raises(ValueError, match="auth stype"):
        TestCluster(services=[Impostor()])


async def test_clients_urls_and_servers_of_a_running_cluster() -> None:
    talkroom = TalkroomService()
    async with TestCluster(services=[talkroom], listeners=("ws",)) as cluster:
        assert cluster.url("ws").startswith("ws://127.0.0.1:")
        with pytest.raises(LookupError):
            cluster.url("tcp")
        client = await cluster.guest(kind="ws")
        assert client.uid > 0
        assert cluster.server(talkroom).port == int(cluster.upstreams(talkroom)[0].port)
        await cluster.stop_service(talkroom)
        with pytest.raises(LookupError):
            cluster.server(talkroom)
        with pytest.raises(ValueError, match="not running"):
            await cluster.stop_service(talkroom)
        await cluster.start_service(talkroom)
        with pytest.raises(ValueError, match="already running"):
            await cluster.start_service(talkroom)
    assert client.closed.is_set()  # everything the cluster opened is closed with it


async def test_without_auth_there_is_no_login() -> None:
    async with TestCluster(auth=False) as cluster:
        with pytest.raises(LookupError):
            _ = cluster.auth
        client = await cluster.client()
        await client.heartbeat()
