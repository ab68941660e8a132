"""netbus/gateway/logins.py: login claims against a real Redis, in-process and deterministic.

A `GatedRegistry` wraps a real `RedisRegistry` and holds each claim at a gate *after* it
landed in Redis (or fails it on demand), so the races of concurrent logins play in a fixed
order: a kick that overtakes the claim's reply, a connection that closes mid-claim, replies
that arrive while a claim is in flight, a registry that fails or never answers. The
gateways' clock is a `FakeClock`, so the claim bookkeeping is checked without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping

import pytest
import redis.asyncio as aioredis

from netbus.errors import LoginRequired, RegistryUnavailable
from netbus.gateway import Gateway
from netbus.gateway.logins import ClaimedLogins, LocalLogins
from netbus.registry import KickHandler, Owner, RedisRegistry, Registry
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom import TalkroomService
from netbus.testing import FakeClock, TestCluster
from tests.registry.redis_server import wait_until

pytestmark = pytest.mark.timeout(30)


class GatedRegistry:
    """A `Registry` that delegates to ``inner`` but can fail claims or hold them at a gate."""

    def __init__(self, inner: Registry) -> None:
        self.inner = inner
        self.gateway_id = inner.gateway_id
        self.gate = asyncio.Event()
        self.gate.set()
        self.landed = asyncio.Event()  #: a claim reached Redis and waits at the gate
        self.fail = False

    def set_kick_handler(self, handler: KickHandler) -> None:
        self.inner.set_kick_handler(handler)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def claim(self, uid: int, conn: str) -> Owner | None:
        if self.fail:
            raise RegistryUnavailable("test: registry down")
        previous = await self.inner.claim(uid, conn)
        self.landed.set()
        await self.gate.wait()
        return previous

    async def release(self, uid: int, conn: str) -> bool:
        return await self.inner.release(uid, conn)

    async def owner(self, uid: int) -> Owner | None:
        return await self.inner.owner(uid)

    async def refresh(self) -> list[int]:
        return await self.inner.refresh()

    @property
    def held(self) -> Mapping[int, str]:
        return self.inner.held


class Rig:
    """A cluster on the shared Redis whose first gateway's registry is gated."""

    def __init__(self, redis_url: str, *, gateways: int = 1, **options: object) -> None:
        self.redis_url = redis_url
        self.clock = FakeClock()
        self.gated: GatedRegistry | None = None
        self.cluster = TestCluster(
            gateways=gateways,
            registry=self._registry,
            clock=self.clock,
            redis_url=redis_url,  # for the key prefix, deleted on exit
            **options,  # type: ignore[arg-type]
        )

    def _registry(self, gateway_id: str) -> Registry:
        inner = RedisRegistry(
            self.redis_url, gateway_id, prefix=self.cluster.redis_prefix, lease=5.0, timeout=1.0
        )
        if self.gated is None:
            self.gated = GatedRegistry(inner)
            return self.gated
        return inner

    async def __aenter__(self) -> Rig:
        await self.cluster.__aenter__()
        for gateway in self.cluster.gateways:
            registry = gateway.logins.registry
            inner = registry.inner if isinstance(registry, GatedRegistry) else registry
            assert isinstance(inner, RedisRegistry)
            await asyncio.wait_for(inner.subscribed.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cluster.__aexit__(*exc)

    @property
    def gate(self) -> GatedRegistry:
        assert self.gated is not None
        return self.gated

    def logins(self, index: int = 0) -> ClaimedLogins:
        logins = self.cluster.gateways[index].logins
        assert isinstance(logins, ClaimedLogins)
        return logins

    async def owner(self, uid: int) -> str | None:
        raw = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            return await raw.get(f"{self.cluster.redis_prefix}uid:{uid}")  # type: ignore[no-any-return]
        finally:
            await raw.aclose()


def new_key() -> str:
    return "claim_" + secrets.token_hex(12)


def conn_of(gateway: Gateway, uid: int) -> str:
    session = gateway.sessions.by_uid(uid)
    assert session is not None
    return f"{gateway.id}:{gateway.logins.conn_id(session)}"


async def test_a_kick_that_overtakes_the_claim_refuses_the_bind(redis_url: str) -> None:
    """gw1's claim lands, gw2's claim lands after it and kicks gw1's connection over pub/sub;
    the kick reaches gw1 before its own claim reply. The older login must lose."""
    async with Rig(redis_url, gateways=2) as rig:
        cluster = rig.cluster
        key = new_key()
        first = await cluster.client(gateway=0)
        rig.gate.gate.clear()
        pending = asyncio.create_task(first.guest_login(key))
        await asyncio.wait_for(rig.gate.landed.wait(), 5)  # in Redis, reply held at the gate

        second = await cluster.client(gateway=1)
        reply = await second.guest_login(key)
        assert reply["status"] == 1
        kicks = rig.logins(0).recent_kicks
        await wait_until(lambda: kicks, timeout=5.0, what="gw1 to get the kick")
        assert list(kicks.values()) == [rig.clock.now]  # stamped by the gateway's clock

        rig.gate.gate.set()
        assert (await pending)["status"] == 1  # the login succeeded, then lost to the newer one
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        assert not kicks  # the claim removed its own entry
        assert cluster.gateways[0].sessions.logged_in == 0
        assert await rig.owner(reply["uid"]) == conn_of(cluster.gateways[1], reply["uid"])
        await second.heartbeat()
        assert cluster.gateways[1].sessions.logged_in == 1
        superseded = cluster.gateways[0].metrics.registry.get_sample_value(
            "netbus_logins_total", {"result": "superseded"}
        )
        assert superseded == 1


async def test_a_failing_registry_answers_system_error_and_binds_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Rig(redis_url, services=[TalkroomService()]) as rig:
        gateway = rig.cluster.gateway
        client = await rig.cluster.client()
        rig.gate.fail = True
        with caplog.at_level(logging.WARNING, logger="netbus.gateway"):
            assert await client.guest_login(new_key()) == {"status": -100}
            assert await client.guest_login(new_key()) == {"status": -100}
            rig.clock.advance(10.5)
            assert await client.guest_login(new_key()) == {"status": -100}
        warnings = [r for r in caplog.records if "registry unavailable" in r.getMessage()]
        assert len(warnings) == 2  # one line per outage (10 s apart), not one per login
        with pytest.raises(LoginRequired):
            await client.enter("nobody", 0)
        assert gateway.sessions.logged_in == 0
        rig.gate.fail = False  # Redis is back: the same connection can log in
        assert (await client.guest_login(new_key()))["status"] == 1
        assert gateway.sessions.logged_in == 1


async def test_a_registry_that_never_answers_costs_one_deadline(redis_url: str) -> None:
    async with Rig(redis_url, claim_timeout=0.05) as rig:
        client = await rig.cluster.client()
        rig.gate.gate.clear()  # every claim hangs until the claim deadline
        assert await client.guest_login(new_key(), timeout=2.0) == {"status": -100}
        await client.heartbeat()  # the connection is fine, just not logged in
        assert rig.cluster.gateway.sessions.logged_in == 0


async def test_replies_during_a_claim_keep_their_order(redis_url: str) -> None:
    """Two logins pipelined on one connection: the second reply waits behind the first
    claim; the connection ends up as the second account and the first is released."""
    async with Rig(redis_url) as rig:
        gateway = rig.cluster.gateway
        client = await rig.cluster.client()
        rig.gate.gate.clear()
        one = asyncio.create_task(client.guest_login(new_key()))
        await asyncio.wait_for(rig.gate.landed.wait(), 5)
        two = asyncio.create_task(client.guest_login(new_key()))
        # the second reply reaches the gateway and must wait behind the first claim
        (session,) = gateway.sessions
        logins = rig.logins()
        await wait_until(lambda: logins.held(session), timeout=5.0, what="the held reply")
        assert not one.done() and not two.done()
        rig.gate.gate.set()
        reply1, reply2 = await one, await two
        assert reply1["status"] == reply2["status"] == 1
        assert reply1["uid"] != reply2["uid"]
        assert session.uid == reply2["uid"] and logins.held(session) == 0
        assert await rig.owner(reply2["uid"]) == conn_of(gateway, reply2["uid"])

        async def released() -> bool:
            return await rig.owner(reply1["uid"]) is None

        await wait_until(released, timeout=5.0, what="the first account's release")


async def test_a_connection_closed_mid_claim_releases_it(redis_url: str) -> None:
    async with Rig(redis_url) as rig:
        gateway = rig.cluster.gateway
        client = await rig.cluster.client()
        rig.gate.gate.clear()
        pending = asyncio.create_task(client.guest_login(new_key()))
        await asyncio.wait_for(rig.gate.landed.wait(), 5)
        (uid,) = rig.gate.held
        await client.close()
        with pytest.raises(ConnectionError):
            await pending
        await wait_until(lambda: len(gateway.sessions) == 0, timeout=5.0, what="the close")
        rig.gate.gate.set()

        async def released() -> bool:
            return await rig.owner(uid) is None

        await wait_until(released, timeout=5.0, what="the release")
        assert gateway.sessions.logged_in == 0


async def test_relogin_on_the_same_gateway_kicks_through_the_claim(redis_url: str) -> None:
    async with Rig(redis_url) as rig:
        gateway = rig.cluster.gateway
        key = new_key()
        first = await rig.cluster.guest(key)
        second = await rig.cluster.guest(key)
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        assert gateway.sessions.logged_in == 1
        await second.heartbeat()
        assert await rig.owner(second.uid) == conn_of(gateway, second.uid)


async def test_without_redis_logins_bind_in_the_reply_callback() -> None:
    async with TestCluster(gateways=2) as cluster:
        assert all(isinstance(g.logins, LocalLogins) for g in cluster.gateways)
        key = new_key()
        first = await cluster.guest(key, gateway=0)
        second = await cluster.guest(key, gateway=1)
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        gw2 = cluster.gateways[1]
        registry = gw2.logins.registry
        owner = await registry.owner(second.uid)
        assert owner is not None and str(owner) == conn_of(gw2, second.uid)
        await second.close()
        await wait_until(lambda: len(gw2.sessions) == 0, timeout=5.0, what="the close")
        assert await registry.owner(second.uid) is None  # released on close
