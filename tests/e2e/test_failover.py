"""Roles dying and coming back under live clients: each test runs a cluster of its own."""

from __future__ import annotations

from collections import Counter

import pytest

from netbus.errors import ServiceUnavailable
from netbus.protocol.commands import AuthCmd, GatewayCmd, Stype, TalkroomStatus

from .conftest import ClusterFactory
from .helpers import BUF, JSON, Clients, new_key, new_name, next_gateway_notice, retry_until_served
from .helpers import settled, talk

RESTART_TIMEOUT = 30.0


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
    assert talk(b_pushes) == Counter(
        [("arrived", a_name, 0, BUF), ("msg", a_name, 0, "back", BUF)]
    )


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
