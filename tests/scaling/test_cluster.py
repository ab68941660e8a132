"""Two or more gateway processes over one Redis: one login state, cluster-wide kick.

Every test runs real ``python -m netbus`` processes (see `tests.scaling.cluster`) against a
real Redis: the machine's shared one under a private key prefix, or a private redis-server
when the test stops Redis. Waits are on replies, closures and Redis state, with deadlines.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis

from netbus.client import Client
from netbus.errors import ServiceUnavailable
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from tests.registry.redis_server import PrivateRedis, wait_until
from tests.scaling.cluster import ScaleCluster
from tests.scaling.conftest import Clients, ClusterFactory

pytestmark = pytest.mark.timeout(60)


def new_key() -> str:
    return "scale_" + secrets.token_hex(12)


async def owner_of(cluster_url: str, prefix: str, uid: int) -> str | None:
    client = aioredis.Redis.from_url(cluster_url, decode_responses=True, socket_timeout=2)
    try:
        return await client.get(f"{prefix}uid:{uid}")  # type: ignore[no-any-return]
    finally:
        await client.aclose()


async def test_relogin_on_another_gateway_kicks_the_first(
    shared_cluster: ScaleCluster, clients: Clients
) -> None:
    cluster = shared_cluster
    key = new_key()
    first, reply1 = await clients.login(cluster, "gw1", key)
    assert reply1["status"] == 1
    uid = reply1["uid"]
    assert (await owner_of(cluster.redis_url, cluster.prefix, uid) or "").startswith("gw1:")
    assert await first.enter("first", 0) == 1

    second, reply2 = await clients.login(cluster, "gw2", key)
    assert reply2["status"] == 1 and reply2["uid"] == uid
    push = await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
    assert push.body is None
    await first.wait_closed()
    assert (await owner_of(cluster.redis_url, cluster.prefix, uid) or "").startswith("gw2:")
    assert await second.enter("second", 1) == 1  # the newer connection keeps working

    # the center cached the profile for everyone to read
    raw = aioredis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        profile = await raw.hgetall(f"{cluster.prefix}user:{uid}")
    finally:
        await raw.aclose()
    assert profile == {
        "unick": reply2["unick"],
        "usex": str(reply2["usex"]),
        "uface": str(reply2["uface"]),
        "uvip": str(reply2["uvip"]),
        "is_guest": "1",
    }


async def test_concurrent_logins_leave_one_connection_per_uid(
    shared_cluster: ScaleCluster, clients: Clients
) -> None:
    """200 logins of 20 keys at once over 3 gateways: exactly one connection per uid lives."""
    cluster = shared_cluster
    gateways = ["gw1", "gw2", "gw3"]
    keys = [new_key() for _ in range(20)]
    # create the 20 accounts first (so that the center does not race on inserts)
    uids: dict[str, int] = {}
    for key in keys:
        client, reply = await clients.login(cluster, "gw1", key)
        uids[key] = reply["uid"]
        await client.close()
    plan = [(keys[i % 20], gateways[(i * 7) % 3]) for i in range(200)]
    conns = await asyncio.gather(*(clients.connect(cluster, gw) for _, gw in plan))

    async def login(client: Client, key: str) -> str:
        try:
            reply = await client.guest_login(key, timeout=15)
        except ConnectionError:
            return "closed"  # kicked before its reply
        return "ok" if reply.get("status") == 1 else f"status {reply.get('status')}"

    results = await asyncio.gather(
        *(login(client, key) for client, (key, _) in zip(conns, plan, strict=True))
    )
    assert set(results) <= {"ok", "closed"}, Counter(results)

    def open_per_key() -> Counter[str]:
        return Counter(
            key for c, (key, _) in zip(conns, plan, strict=True) if not c.closed.is_set()
        )

    # Every superseded connection is closed by a kick (local, pub/sub or, if a message was
    # lost, the next lease refresh); wait until at most one is left per key.
    await wait_until(
        lambda: all(n <= 1 for n in open_per_key().values()),
        timeout=10.0,
        what="superseded connections to close",
    )
    assert open_per_key() == Counter({key: 1 for key in keys})
    # The survivor is the one Redis names: its gateway owns the uid ...
    survivors = {
        key: (c, gw) for c, (key, gw) in zip(conns, plan, strict=True) if not c.closed.is_set()
    }
    for key, (_client, gw) in survivors.items():
        owner = await owner_of(cluster.redis_url, cluster.prefix, uids[key])
        assert owner is not None and owner.startswith(f"{gw}:"), (key, owner, gw)
    # ... and it is really logged in: it can use the talkroom.
    statuses = await asyncio.gather(
        *(client.enter(f"u{i}", 0) for i, (client, _) in enumerate(survivors.values()))
    )
    assert statuses == [1] * 20
    # every kicked connection that had its reply was told why
    for client in conns:
        if client.closed.is_set() and client.uid:
            kinds = {(p.stype, p.ctype) for p in client.drain_pushes()}
            assert (Stype.Auth, AuthCmd.RELOGIN) in kinds


async def test_chat_between_users_on_different_gateways(
    shared_cluster: ScaleCluster, clients: Clients
) -> None:
    cluster = shared_cluster
    tag = secrets.token_hex(3)  # other tests' users may share the room: tell ours apart
    alice, _ = await clients.login(cluster, "gw1", new_key())
    bob, _ = await clients.login(cluster, "gw3", new_key())
    assert await alice.enter(f"alice{tag}", 0) == 1
    assert await bob.enter(f"bob{tag}", 1) == 1

    async def push_from(client: Client, ctype: int, body: object) -> None:
        while (await client.next_push(Stype.TalkRoom, ctype)).body != body:
            pass

    await push_from(alice, TalkroomCmd.UserArrived, {"uname": f"bob{tag}", "usex": 1})
    reply = await alice.send_msg("hello from gw1")
    assert reply == {"0": 1, "1": f"alice{tag}", "2": 0, "3": "hello from gw1"}
    await push_from(bob, TalkroomCmd.UserMsg, {"0": f"alice{tag}", "1": 0, "2": "hello from gw1"})
    await bob.send_msg("hi from gw3")
    await push_from(alice, TalkroomCmd.UserMsg, {"0": f"bob{tag}", "1": 1, "2": "hi from gw3"})


async def test_talkroom_fails_over_to_the_standby_for_every_gateway(
    make_cluster: ClusterFactory, clients: Clients
) -> None:
    """policy = "primary": one room on the first talkroom that is up, wherever users are."""
    cluster = await make_cluster(gateways=2, talkrooms=2)
    alice, _ = await clients.login(cluster, "gw1", new_key())
    bob, _ = await clients.login(cluster, "gw2", new_key())
    assert await alice.enter("alice", 0) == 1
    assert await bob.enter("bob", 1) == 1
    await alice.next_push(Stype.TalkRoom, TalkroomCmd.UserArrived)

    await cluster.akill("talkroom1")
    for client in (alice, bob):  # moved: the state on the old instance is gone
        gone = await client.next_push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE)
        assert gone.body == {"stype": Stype.TalkRoom, "ctype": 0}
        back = await client.next_push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE)
        assert back.body == {"stype": Stype.TalkRoom, "ctype": 0}
    assert await alice.enter("alice", 0) == 1
    assert await bob.enter("bob", 1) == 1
    await alice.next_push(Stype.TalkRoom, TalkroomCmd.UserArrived)
    await alice.send_msg("still one room")
    msg = await bob.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg)
    assert msg.body["2"] == "still one room"


async def test_a_killed_gateways_users_expire_and_log_in_elsewhere(
    make_cluster: ClusterFactory, clients: Clients
) -> None:
    cluster = await make_cluster(gateways=2, lease=1.5, refresh_interval=0.3)
    key = new_key()
    _victim, reply = await clients.login(cluster, "gw2", key)
    uid = reply["uid"]
    assert (await owner_of(cluster.redis_url, cluster.prefix, uid) or "").startswith("gw2:")

    killed = time.monotonic()
    await cluster.akill("gw2")

    async def expired() -> bool:
        return await owner_of(cluster.redis_url, cluster.prefix, uid) is None

    await wait_until(expired, timeout=5.0, interval=0.05, what="gw2's lease to expire")
    assert time.monotonic() - killed < 1.5 + 1.0
    again, reply = await clients.login(cluster, "gw1", key)
    assert reply["status"] == 1 and reply["uid"] == uid
    assert (await owner_of(cluster.redis_url, cluster.prefix, uid) or "").startswith("gw1:")
    assert await again.enter("again", 0) == 1


async def test_redis_restart_mid_game(
    make_cluster: ClusterFactory, private_redis: PrivateRedis, clients: Clients
) -> None:
    """Down: logins get SYSTEM_ERROR fast, players keep chatting. Back: logins work again and
    the cluster-wide kick works again, without restarting netbus."""
    cluster = await make_cluster(gateways=2, redis_url=private_redis.url, timeout=1.0)
    alice_key = new_key()
    alice, reply = await clients.login(cluster, "gw1", alice_key)
    alice_uid = reply["uid"]
    bob, _ = await clients.login(cluster, "gw2", new_key())
    assert await alice.enter("alice", 0) == 1
    assert await bob.enter("bob", 1) == 1
    await alice.next_push(Stype.TalkRoom, TalkroomCmd.UserArrived)

    await private_redis.stop()
    for gw in ("gw1", "gw2"):
        started = time.monotonic()
        late, reply = await clients.login(cluster, gw, new_key())
        assert reply == {"status": -100}
        assert time.monotonic() - started < 2.0
        with pytest.raises(ServiceUnavailable):  # not bound: no login, no talkroom
            await late.enter("late", 0)
    await alice.send_msg("redis is down")
    msg = await bob.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg)
    assert msg.body == {"0": "alice", "1": 0, "2": "redis is down"}

    await private_redis.start()  # same port, empty

    async def logins_work() -> bool:
        client, reply = await clients.login(cluster, "gw2", new_key())
        await client.close()
        return reply.get("status") == 1

    await wait_until(logins_work, timeout=10.0, interval=0.1, what="logins after the restart")
    # gw1 put alice's entry back (lease refresh), so a relogin elsewhere kicks her again
    await wait_until(
        lambda: owner_of(private_redis.url, cluster.prefix, alice_uid),
        timeout=5.0,
        what="alice's entry to be re-created",
    )
    alice2, reply = await clients.login(cluster, "gw2", alice_key)
    assert reply["status"] == 1
    await alice.next_push(Stype.Auth, AuthCmd.RELOGIN)
    await alice.wait_closed()
    assert await alice2.enter("alice", 0) == 1
    await bob.send_msg("welcome back")
    msg = await alice2.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg)
    assert msg.body == {"0": "bob", "1": 1, "2": "welcome back"}
