"""The gateway's login claim against Redis, in-process and deterministic.

A `GatedRegistry` wraps a real `RedisRegistry` and holds each claim at a gate *after* it
landed in Redis (or fails it on demand), so the races of concurrent logins can be played in
a fixed order: a kick that overtakes the claim's reply, a connection that closes mid-claim,
replies that arrive while a claim is in flight, a registry that fails or never answers.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from netbus.client import Client
from netbus.cluster import cluster_secret
from netbus.config import GatewayConfig, ServiceRoute, load_settings
from netbus.errors import LoginRequired, RegistryUnavailable
from netbus.protocol.commands import AuthCmd, Stype
from netbus.registry import KickHandler, LocalHub, LocalRegistry, Owner, RedisRegistry, Registry
from netbus.roles.center.app import CenterServer
from netbus.roles.gateway.gateway import Gateway
from netbus.transport.listener import ListenerSpec
from tests.registry.redis_server import REDIS_URL, wait_until

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


class World:
    """One in-process center and any number of in-process gateways."""

    def __init__(self, stack: AsyncExitStack, center: CenterServer, prefix: str) -> None:
        self.stack = stack
        self.center = center
        self.prefix = prefix

    def redis_registry(self, gateway_id: str) -> RedisRegistry:
        return RedisRegistry(REDIS_URL, gateway_id, prefix=self.prefix, lease=5.0, timeout=1.0)

    async def gateway(
        self, gateway_id: str, registry: Registry, *, claim_timeout: float = 1.0
    ) -> Gateway:
        cfg = GatewayConfig(
            id=gateway_id,
            services={"auth": ServiceRoute(stype=2, addresses=[f"127.0.0.1:{self.center.port}"])},
        )
        gateway = Gateway(
            cfg,
            [ListenerSpec(kind="tcp", port=0)],
            registry=registry,
            claim_timeout=claim_timeout,
            cluster_secret=cluster_secret(load_settings()),  # the center's (tests/conftest.py)
        )
        await self.stack.enter_async_context(gateway)
        await asyncio.wait_for(gateway.wait_services_up(), 5)
        inner = getattr(registry, "inner", registry)
        if isinstance(inner, RedisRegistry):
            await asyncio.wait_for(inner.subscribed.wait(), 5)
        return gateway

    async def client(self, gateway: Gateway) -> Client:
        client = await Client.connect(f"tcp://127.0.0.1:{gateway.ports[0]}")
        self.stack.push_async_callback(client.close)
        return client

    async def owner(self, uid: int) -> str | None:
        raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            return await raw.get(f"{self.prefix}uid:{uid}")  # type: ignore[no-any-return]
        finally:
            await raw.aclose()


@pytest.fixture
async def world(tmp_path: Path, redis_prefix: str) -> AsyncIterator[World]:
    (tmp_path / "netbus.toml").write_text(
        f"""
[center]
port = 0
database_url = "sqlite+aiosqlite:///{tmp_path}/netbus.db"
pepper = "claims-test-pepper-0123456789"
"""
    )
    settings = load_settings(tmp_path / "netbus.toml")
    async with AsyncExitStack() as stack:
        center = CenterServer(settings)
        await center.start()
        stack.push_async_callback(center.close)
        yield World(stack, center, redis_prefix)


def new_key() -> str:
    return "claim_" + secrets.token_hex(12)


def login_request(client: Client, key: str) -> asyncio.Task[dict[str, object]]:
    return asyncio.create_task(client.guest_login(key))


async def test_a_kick_that_overtakes_the_claim_refuses_the_bind(world: World) -> None:
    """gwA's claim lands, gwB's claim lands after it and kicks gwA's connection over pub/sub;
    the kick reaches gwA before its own claim reply. The older login must lose."""
    gated = GatedRegistry(world.redis_registry("gwA"))
    gw_a = await world.gateway("gwA", gated)
    gw_b = await world.gateway("gwB", world.redis_registry("gwB"))
    key = new_key()
    first = await world.client(gw_a)
    gated.gate.clear()
    pending = login_request(first, key)
    await asyncio.wait_for(gated.landed.wait(), 5)  # in Redis, reply held at the gate

    second = await world.client(gw_b)
    reply = await second.guest_login(key)
    assert reply["status"] == 1
    await wait_until(lambda: gw_a._recent_kicks, timeout=5.0, what="gwA to get the kick")

    gated.gate.set()
    assert (await pending)["status"] == 1  # the login succeeded, then lost to the newer one
    await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
    await first.wait_closed()
    assert gw_a.sessions.logged_in == 0
    assert (await world.owner(reply["uid"]) or "").startswith("gwB:")
    await second.heartbeat()
    assert gw_b.sessions.logged_in == 1


async def test_a_failing_registry_answers_system_error_and_binds_nothing(world: World) -> None:
    gated = GatedRegistry(world.redis_registry("gwA"))
    gw = await world.gateway("gwA", gated)
    client = await world.client(gw)
    gated.fail = True
    assert await client.guest_login(new_key()) == {"status": -100}
    with pytest.raises(LoginRequired):
        await client.enter("nobody", 0)
    assert gw.sessions.logged_in == 0
    gated.fail = False  # Redis is back: the same connection can log in
    reply = await client.guest_login(new_key())
    assert reply["status"] == 1
    assert gw.sessions.logged_in == 1


async def test_a_registry_that_never_answers_costs_one_deadline(world: World) -> None:
    gated = GatedRegistry(world.redis_registry("gwA"))
    gw = await world.gateway("gwA", gated, claim_timeout=0.3)
    client = await world.client(gw)
    gated.gate.clear()  # every claim hangs
    started = time.monotonic()
    assert await client.guest_login(new_key()) == {"status": -100}
    assert time.monotonic() - started < 1.0
    await client.heartbeat()  # the connection is fine, just not logged in
    assert gw.sessions.logged_in == 0


async def test_replies_during_a_claim_keep_their_order(world: World) -> None:
    """Two logins pipelined on one connection: the second reply waits behind the first
    claim; the connection ends up as the second account and the first is released."""
    gated = GatedRegistry(world.redis_registry("gwA"))
    gw = await world.gateway("gwA", gated)
    client = await world.client(gw)
    gated.gate.clear()
    one = login_request(client, new_key())
    await asyncio.wait_for(gated.landed.wait(), 5)
    two = login_request(client, new_key())
    # the second reply reaches the gateway and must wait behind the first claim
    session = next(iter(gw.sessions))
    await wait_until(lambda: session.data.get("held"), timeout=5.0, what="the held reply")
    assert not one.done() and not two.done()
    gated.gate.set()
    reply1, reply2 = await one, await two
    assert reply1["status"] == reply2["status"] == 1
    assert reply1["uid"] != reply2["uid"]
    assert session.uid == reply2["uid"]
    assert (await world.owner(reply2["uid"]) or "").startswith("gwA:")

    async def released() -> bool:
        return await world.owner(reply1["uid"]) is None

    await wait_until(released, timeout=5.0, what="the first account's release")


async def test_a_connection_closed_mid_claim_releases_it(world: World) -> None:
    gated = GatedRegistry(world.redis_registry("gwA"))
    gw = await world.gateway("gwA", gated)
    client = await world.client(gw)
    gated.gate.clear()
    pending = login_request(client, new_key())
    await asyncio.wait_for(gated.landed.wait(), 5)
    uid = next(iter(gated.held))
    await client.close()
    with pytest.raises(ConnectionError):
        await pending
    await wait_until(lambda: len(gw.sessions) == 0, timeout=5.0, what="the gateway to notice")
    gated.gate.set()

    async def released() -> bool:
        return await world.owner(uid) is None

    await wait_until(released, timeout=5.0, what="the release")
    assert gw.sessions.logged_in == 0


async def test_relogin_on_the_same_gateway_kicks_through_the_claim(world: World) -> None:
    gw = await world.gateway("gwA", world.redis_registry("gwA"))
    key = new_key()
    first = await world.client(gw)
    await first.guest_login(key)
    second = await world.client(gw)
    reply = await second.guest_login(key)
    await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
    await first.wait_closed()
    assert gw.sessions.logged_in == 1
    await second.heartbeat()
    owner = await world.owner(reply["uid"])
    assert owner == f"gwA:{gw._conn_id(gw.sessions.by_uid(reply['uid']))}"  # type: ignore[arg-type]


async def test_in_process_gateways_kick_each_other_synchronously(world: World) -> None:
    """The default registry, shared by two gateways of one process (no Redis at all)."""
    hub = LocalHub()
    gw_a = await world.gateway("gwA", LocalRegistry("gwA", hub=hub))
    gw_b = await world.gateway("gwB", LocalRegistry("gwB", hub=hub))
    key = new_key()
    first = await world.client(gw_a)
    reply = await first.guest_login(key)
    second = await world.client(gw_b)
    await second.guest_login(key)
    await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
    await first.wait_closed()
    assert hub.owners[reply["uid"]].gateway == "gwB"
    await second.close()
    await wait_until(lambda: reply["uid"] not in hub.owners, timeout=5.0, what="the release")
