"""Roles dying and coming back under live clients: each test runs a cluster of its own."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from netbus.errors import ServiceUnavailable
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomStatus

from .conftest import ClusterFactory, ready_check
from .helpers import (
    BUF,
    JSON,
    Clients,
    new_key,
    new_name,
    next_gateway_notice,
    retry_until_served,
    room_members,
    settled,
    talk,
)

RESTART_TIMEOUT = 30.0

pytestmark = pytest.mark.one_client_loop


async def test_center_restart_keeps_accounts(
    database_url: str | None, cluster_factory: ClusterFactory, clients: Clients
) -> None:
    """Accounts live in the database and the pepper file: a new center process logs the same
    key into the same uid, and the gateway finds the new center by itself."""
    cluster = await cluster_factory(database_url=database_url)
    key = new_key()
    a = await clients.login(cluster.tcp_url, JSON, key)
    uid = a.uid

    assert await cluster.terminate("center") == 0
    notice = await next_gateway_notice(a, GatewayCmd.SERVICE_UNAVAILABLE, Stype.Auth)
    assert notice.body == {"stype": Stype.Auth, "ctype": 0}

    # Meanwhile a login is refused, not lost; the gateway and the talkroom keep working.
    b = await clients.open(cluster.ws_url)
    with pytest.raises(ServiceUnavailable) as info:
        await b.guest_login(key)
    assert (info.value.stype, info.value.ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN)
    assert await a.enter(new_name("a"), 0) == TalkroomStatus.OK

    await cluster.start_role("center")

    async def center_back(remaining: float) -> object:
        return await next_gateway_notice(
            a, GatewayCmd.SERVICE_AVAILABLE, Stype.Auth, timeout=remaining
        )

    reply = await retry_until_served(
        lambda: b.guest_login(key), timeout=RESTART_TIMEOUT, wake=center_back
    )
    assert reply["status"] == 1 and reply["uid"] == uid, reply
    # The gateway still knew A as that uid: the new login kicked it.
    kick = await a.next_push(Stype.Auth, AuthCmd.RELOGIN)
    assert kick.body is None
    await a.wait_closed()

    c = await clients.login(cluster.tcp_url)
    assert c.uid > 0 and c.uid != uid
    # The accounts were where the config said: no SQLite file appears when MariaDB is used.
    assert (cluster.workdir / "netbus.db").exists() == (database_url is None)


async def test_talkroom_killed_and_restarted(
    cluster_factory: ClusterFactory, clients: Clients
) -> None:
    cluster = await cluster_factory()
    a_name, b_name = new_name("a"), new_name("b")
    a = await clients.member(cluster.tcp_url, a_name, JSON)
    b = await clients.member(cluster.ws_url, b_name, BUF, usex=1)
    await settled(a, b)

    assert await cluster.kill("talkroom") == -9
    for client, proto in ((a, JSON), (b, BUF)):
        push = await next_gateway_notice(client, GatewayCmd.SERVICE_UNAVAILABLE, Stype.TalkRoom)
        assert push.body == {"stype": Stype.TalkRoom, "ctype": 0}
        assert push.proto_type == proto
    for client in (a, b):
        with pytest.raises(ServiceUnavailable) as info:
            await client.send_msg("anyone?")
        assert (info.value.stype, info.value.ctype) == (Stype.TalkRoom, 5)
    # The rest of the cluster is unaffected: logins work; the newcomer hears of the return too.
    c = await clients.login(cluster.tcp_url)

    await cluster.start_role("talkroom")
    for client, proto in ((a, JSON), (b, BUF), (c, JSON)):
        push = await next_gateway_notice(
            client, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom, timeout=RESTART_TIMEOUT
        )
        assert push.body == {"stype": Stype.TalkRoom, "ctype": 0}
        assert push.proto_type == proto

    # A new talkroom process has an empty room: everyone enters again and chats.
    assert await a.enter(a_name, 0) == TalkroomStatus.OK
    assert await b.enter(b_name, 1) == TalkroomStatus.OK
    assert await a.send_msg("back") == {"0": 1, "1": a_name, "2": 0, "3": "back"}
    assert await b.send_msg("yes") == {"0": 1, "1": b_name, "2": 1, "3": "yes"}
    a_pushes, b_pushes = await settled(a, b)
    assert talk(a_pushes) == Counter(
        [("arrived", b_name, 1, JSON), ("msg", b_name, 1, "yes", JSON)]
    )
    assert talk(b_pushes) == Counter([("arrived", a_name, 0, BUF), ("msg", a_name, 0, "back", BUF)])


async def test_roles_on_the_stdlib_loop(cluster_factory: ClusterFactory, clients: Clients) -> None:
    """The other tests run the roles on the default loop (uvloop); this one on asyncio's."""
    cluster = await cluster_factory(loop="asyncio")
    a_name, b_name = new_name("a"), new_name("b")
    a = await clients.member(cluster.ws_url, a_name, BUF)
    b = await clients.member(cluster.tcp_url, b_name, JSON, usex=1)
    assert await b.send_msg("hi") == {"0": 1, "1": b_name, "2": 1, "3": "hi"}
    a_pushes, b_pushes = await settled(a, b)
    assert talk(a_pushes) == Counter([("arrived", b_name, 1, BUF), ("msg", b_name, 1, "hi", BUF)])
    assert b_pushes == []  # its arrival pushes were taken by clients.member


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_gateway_restart(
    cluster_factory: ClusterFactory, clients: Clients, sig: signal.Signals
) -> None:
    """Clients of a gateway that stops are closed (told SHUTDOWN first on a clean stop); the
    services forget them (USER_DISCONNECT on a clean stop, the lost link on a crash); a new
    gateway process serves the same accounts."""
    cluster = await cluster_factory()
    key, a_name, b_name = new_key(), new_name("a"), new_name("b")
    a = await clients.member(cluster.tcp_url, a_name, JSON, key=key)
    b = await clients.member(cluster.ws_url, b_name, BUF)
    uid = a.uid

    gateway = cluster.procs["gateway"]
    gateway.signal(sig)
    assert await asyncio.to_thread(gateway.wait) == (0 if sig == signal.SIGTERM else -sig)
    for client in (a, b):
        await client.wait_closed()
        notices = [p for p in client.drain_pushes() if p.stype == Stype.Gateway]
        if sig == signal.SIGTERM:  # a clean stop says so first (docs/protocol.md, SHUTDOWN)
            assert [p.ctype for p in notices] == [GatewayCmd.SHUTDOWN], notices
            assert set(notices[0].body) == {"reason"} and notices[0].body["reason"]
        else:
            assert notices == []

    await cluster.start_role("gateway")
    await ready_check(cluster, empty_room=False)
    assert await room_members(cluster.tcp_url, clients) == Counter()
    again = await clients.member(cluster.ws_url, a_name, BUF, key=key)
    assert again.uid == uid


async def test_center_sigterm_answers_logins_under_way(
    cluster_factory: ClusterFactory, clients: Clients
) -> None:
    """SIGTERM while the center is creating accounts: every login already sent gets its
    reply (or, once the link is gone, SERVICE_UNAVAILABLE); none is silently lost. The
    center used to close its gateway links before finishing its handlers, so all the
    replies under way were dropped and every client waited for its timeout."""
    cluster = await cluster_factory()
    burst = [await clients.open(cluster.url("tcp" if i % 2 else "ws")) for i in range(20)]
    logins = [asyncio.ensure_future(client.guest_login(new_key())) for client in burst]
    await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)  # the center is at work
    center = cluster.procs["center"]
    center.signal(signal.SIGTERM)
    outcomes = await asyncio.gather(*logins, return_exceptions=True)
    assert await asyncio.to_thread(center.wait) == 0
    for outcome in outcomes:
        if isinstance(outcome, ServiceUnavailable):
            continue
        assert isinstance(outcome, dict) and outcome["status"] == 1, outcome
    assert sum(isinstance(o, dict) for o in outcomes) >= 1
