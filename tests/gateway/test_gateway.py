"""netbus/gateway/gateway.py in-process: routing, login binding, kicks and failover.

Every test runs a `netbus.testing.TestCluster` (gateway, auth service, talkrooms, clients in
this event loop on free ports): real sockets, no subprocess, milliseconds per test.
"""

from __future__ import annotations

import asyncio
import secrets
import struct

import pytest

from netbus.client import Client
from netbus.errors import LoginRequired, ServiceUnavailable
from netbus.protocol import Direction, GatewayCmd
from netbus.protocol.header import HEADER, ProtoType
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom import TalkroomService
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.testing import TestCluster
from tests.helpers import CODECS, cmd_buf, frame, json_body
from tests.registry.redis_server import wait_until

T = Stype.TalkRoom
pytestmark = pytest.mark.timeout(20)


def gauge(cluster: TestCluster, name: str, **labels: str) -> float:
    value = cluster.gateway.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def enter(client: Client, uname: str) -> None:
    assert await client.enter(uname, 1) == 1


async def test_a_reply_reaches_its_connection_with_the_utag_cleared() -> None:
    async with TestCluster() as cluster:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.gateway.ports[0])
        try:
            key = secrets.token_urlsafe(18).encode()
            login = cmd_buf(
                Stype.Auth, AuthCmd.GUEST_LOGIN, ProtoType.JSON, json_body(b'{"0":"' + key + b'"}')
            )
            writer.write(frame(login))
            (length,) = struct.unpack("<H", await reader.readexactly(2))
            reply = await reader.readexactly(length - 2)
        finally:
            writer.close()
        stype, ctype, utag, proto_type = HEADER.unpack_from(reply)
        assert (stype, ctype, utag, proto_type) == (Stype.Auth, AuthCmd.GUEST_LOGIN, 0, 1)
        assert b'"status":1' in reply


async def test_services_see_users_by_uid_and_their_pushes_reach_the_right_connection() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        ada, bob = await cluster.guest(), await cluster.guest()
        await enter(ada, "ada")
        await enter(bob, "bob")
        arrived = await ada.next_push(T, TalkroomCmd.UserArrived)
        assert arrived.body["uname"] == "bob"
        reply = await bob.send_msg("hi ada")
        assert reply["0"] == 1
        msg = await ada.next_push(T, TalkroomCmd.UserMsg)
        assert msg.body == {"0": "bob", "1": 1, "2": "hi ada"}
        assert cluster.gateway.sessions.logged_in == 2


async def test_a_packet_before_login_is_refused_with_login_required() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        client = await cluster.client()
        with pytest.raises(LoginRequired):
            await client.enter("early", 0)
        assert gauge(cluster, "netbus_dropped_total", reason="login_required") == 1


async def test_an_unknown_stype_is_answered_service_unavailable() -> None:
    async with TestCluster() as cluster:
        client = await cluster.guest()
        with pytest.raises(ServiceUnavailable) as info:
            await client.request(4321, 7, None)
        assert (info.value.stype, info.value.ctype) == (4321, 7)
        assert gauge(cluster, "netbus_dropped_total", reason="service_unavailable") == 1


async def test_gateway_only_ctypes_from_a_client_are_dropped() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        client = await cluster.guest()
        await enter(client, "mallory")
        client.send(T, 10000, None)  # a forged USER_DISCONNECT
        await client.heartbeat()  # one ordered stream: the forgery was handled before this
        assert gauge(cluster, "netbus_dropped_total", reason="forged_control") == 1
        assert (await client.send_msg("still here"))["0"] == 1  # the service never saw it


@pytest.mark.parametrize("proto_type", [ProtoType.JSON, ProtoType.BUF])
async def test_the_gateway_answers_heartbeats_itself(proto_type: ProtoType) -> None:
    async with TestCluster(auth=False) as cluster:
        client = await cluster.client("ws", proto_type=proto_type)
        await client.heartbeat()
        client.send_raw(cmd_buf(Stype.Gateway, 99, proto_type))  # unknown control: dropped
        await client.heartbeat()
        assert gauge(cluster, "netbus_dropped_total", reason="unknown_control") == 1


async def test_a_closed_connection_leaves_every_service() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        ada, bob = await cluster.guest(), await cluster.guest()
        await enter(ada, "ada")
        await enter(bob, "bob")
        await bob.close()
        gone = await ada.next_push(T, TalkroomCmd.UserExit)
        assert gone.body["uname"] == "bob"
        assert cluster.gateway.sessions.logged_in == 1


async def test_a_new_login_kicks_the_older_connection_of_the_same_account() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        key = secrets.token_urlsafe(18)
        watcher = await cluster.guest()
        await enter(watcher, "watcher")
        first = await cluster.guest(key)
        await enter(first, "twin")
        second = await cluster.guest(key)
        assert second.uid == first.uid
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        gone = await watcher.next_push(T, TalkroomCmd.UserExit)  # USER_DISCONNECT arrived
        assert gone.body["uname"] == "twin"
        await enter(second, "twin")  # the account lives on, on the new connection
        assert cluster.gateway.sessions.logged_in == 2


async def test_a_second_login_on_one_connection_lets_the_first_account_go() -> None:
    async with TestCluster(services=[TalkroomService()]) as cluster:
        watcher = await cluster.guest()
        await enter(watcher, "watcher")
        key = secrets.token_urlsafe(18)
        client = await cluster.guest(key)
        first_uid = client.uid
        await enter(client, "first")
        assert (await client.guest_login(secrets.token_urlsafe(18)))["status"] == 1
        assert client.uid != first_uid
        gone = await watcher.next_push(T, TalkroomCmd.UserExit)
        assert gone.body["uname"] == "first"
        again = await cluster.guest(key)  # the first account is free: nobody is kicked
        assert again.uid == first_uid
        await client.heartbeat()
        assert not client.closed.is_set()


async def test_gateways_sharing_a_registry_kick_each_others_users() -> None:
    async with TestCluster(gateways=2) as cluster:
        key = secrets.token_urlsafe(18)
        first = await cluster.guest(key, gateway=0)
        second = await cluster.guest(key, gateway=1)
        assert first.uid == second.uid
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        assert cluster.gateways[1].sessions.by_uid(second.uid) is not None


async def test_primary_failover_and_fail_back_tell_every_user() -> None:
    primary, standby = TalkroomService(), TalkroomService()
    async with TestCluster(services=[primary, standby], policies={"talkroom": "primary"}) as c:
        users = [await c.guest() for _ in range(3)]
        for i, user in enumerate(users):
            await enter(user, f"u{i}")
        await c.stop_service(primary)
        for user in users:
            lost = await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE)
            assert lost.body == {"stype": T, "ctype": 0}
            back = await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE)
            assert back.body == {"stype": T, "ctype": 0}
            await enter(user, "again")  # re-entered on the standby
        await c.start_service(primary)
        for user in users:  # fail-back: everybody returns to the primary
            await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE)
            await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE)
        # the standby is told that each user left it (USER_DISCONNECT): no ghosts in its room
        registry = c.server(standby).metrics.registry
        labels = {"direction": "in", "stype": str(T), "ctype": "10000"}

        def disconnects() -> float:
            return registry.get_sample_value("netbus_packets_total", labels) or 0.0

        await wait_until(lambda: disconnects() >= 3, timeout=5.0, what="3 USER_DISCONNECT")
        assert disconnects() == 3


async def test_the_last_instance_going_fails_pending_requests() -> None:
    only = TalkroomService()
    async with TestCluster(services=[only]) as cluster:
        user = await cluster.guest()
        await enter(user, "solo")
        await cluster.stop_service(only)
        lost = await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE)
        assert lost.body == {"stype": T, "ctype": 0}
        with pytest.raises(ServiceUnavailable):
            await user.send_msg("anyone?")
        await cluster.start_service(only)
        await user.next_push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE)
        await enter(user, "solo")


async def test_health_facts_show_links_and_users() -> None:
    talkroom = TalkroomService()
    async with TestCluster(services=[talkroom]) as cluster:
        await cluster.guest()
        facts = cluster.gateway.health_facts()
        (link,) = cluster.upstreams(talkroom)
        assert facts["services"]["talkroom"] == {link.name: "up"}
        assert facts["connections"] == 1 and facts["logged_in"] == 1
        assert facts["id"] == "gw1" and facts["ports"] == cluster.gateway.ports


async def test_a_login_refused_during_an_auth_outage_can_recover() -> None:
    """Issue 10 item 12: SERVICE_AVAILABLE reaches a connection that is not logged in."""
    async with TestCluster() as cluster:
        page = await cluster.client("ws")
        bystander = await cluster.client()  # connected, never tried to log in
        await cluster.stop_service(cluster.auth)
        key = secrets.token_urlsafe(18)
        with pytest.raises(ServiceUnavailable):
            await page.guest_login(key)
        await cluster.start_service(cluster.auth)
        back = await page.next_push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE, timeout=2.0)
        assert back.body == {"stype": Stype.Auth, "ctype": 0}
        assert (await page.guest_login(key))["status"] == 1
        await bystander.heartbeat()
        assert bystander.drain_pushes() == []  # only those that used the service are told


async def test_service_heartbeat_echoes_are_not_drops() -> None:
    """Issue 10 item 14: each service echoes the gateway's link heartbeat (utag 0); that is
    the link being alive, not a packet without a route."""
    talkroom = TalkroomService()
    async with TestCluster(services=[talkroom]) as cluster:
        user = await cluster.guest()
        heartbeat = CODECS.encode(
            Stype.Gateway, GatewayCmd.HEARTBEAT, None, direction=Direction.TO_SERVER
        )
        for service in (talkroom, cluster.auth):
            (upstream,) = cluster.upstreams(service)
            raw_in = upstream.link.raw_in if upstream.link is not None else 0
            assert upstream.send_raw(heartbeat)  # what Upstream sends every heartbeat_interval
        # One ordered link each way: once the talkroom answers this request, its echo (sent
        # before the reply) has been handled; the auth echo is handled by the next login.
        await enter(user, "alive")
        await cluster.guest()
        assert upstream.link is not None and upstream.link.raw_in > raw_in
        assert gauge(cluster, "netbus_dropped_total", reason="no_route") == 0
