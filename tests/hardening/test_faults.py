"""Faults under traffic, with real processes: crashes, a database outage, a frozen service.

- Each role in turn is killed with SIGKILL while clients chat, then started again; only that
  role is restarted, and things recover by themselves: the talkroom (members are told it is
  unavailable, then available; they enter again and chat), the center (logins are refused
  with SERVICE_UNAVAILABLE meanwhile, chat goes on untouched), the gateway (clients lose
  their connection, reconnect to the new process and log in to the same accounts).
- The center's MariaDB (a private ``mariadbd`` of the test's own, never the shared server)
  is stopped and started again: logins get SYSTEM_ERROR (-100) at once instead of hanging,
  then work again, with no netbus process restarted. Frozen (SIGSTOP), the database costs a
  login at most the store's 10 s bound.
- A "talkroom" that accepts the gateway's link and never answers: requests end in the
  client's RequestTimeout, logins keep working, and the gateway's heartbeat finds the
  silent link (closed and redialled) within 3 heartbeat intervals.

Requests in flight when a service dies are lost with it (the protocol has no request ids,
so the gateway cannot answer for them): the client's deadline ends them. Everything sent
after the gateway noticed is answered, with SERVICE_UNAVAILABLE if need be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netbus.client import Client
from netbus.config import GatewayConfig
from netbus.errors import RequestTimeout, ServiceUnavailable
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.e2e.cluster import free_ports
from tests.e2e.helpers import Clients, new_key, new_name, retry_until_served

from .conftest import ClusterFactory, wait_served
from .harness import BUF, JSON, HardCluster, PrivateMariaDB, StalledService, eventually

pytestmark = pytest.mark.timeout(120)

MYSQL_BASE_URL = os.environ.get("NETBUS_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")
REQUEST_TIMEOUT = 2.0  #: the chatters' deadline: bounds how long a lost request is waited for
RECOVERY = 20.0  #: seconds for a restarted role to be served again
HEARTBEAT = 1.0  #: gateway.heartbeat_interval of the stalled-service test


# ---------------------------------------------------------------------------- chatters
@dataclass
class Outcome:
    sent: float
    done: float
    kind: str  #: ok, unavailable, timeout, closed, not_in_room, wrong
    detail: str = ""


@dataclass
class Chatter:
    """A room member that keeps chatting like a real client: it re-enters the room when a
    reply says it is not in it (a restarted talkroom has an empty room)."""

    client: Client
    name: str
    usex: int
    outcomes: list[Outcome] = field(default_factory=list)
    entered: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        need_enter = False
        while not stop.is_set() and not self.client.closed.is_set():
            sent = time.monotonic()
            try:
                if need_enter:
                    status = await self.client.enter(self.name, self.usex, timeout=REQUEST_TIMEOUT)
                    assert status == TalkroomStatus.OK, status
                    self.entered += 1
                    need_enter = False
                    continue
                msg = f"{self.name} #{n}"
                n += 1
                reply = await self.client.send_msg(msg, timeout=REQUEST_TIMEOUT)
            except ServiceUnavailable as exc:
                self._record(sent, "unavailable", repr(exc))
                need_enter = True
            except RequestTimeout as exc:
                self._record(sent, "timeout", repr(exc))
            except ConnectionError as exc:
                self._record(sent, "closed", repr(exc))
                return
            else:
                if reply == {"0": TalkroomStatus.INVALID_OPT}:
                    self._record(sent, "not_in_room")
                    need_enter = True
                elif reply == {"0": 1, "1": self.name, "2": self.usex, "3": msg}:
                    self._record(sent, "ok")
                else:
                    self._record(sent, "wrong", repr(reply))
            await asyncio.sleep(0.03)

    def _record(self, sent: float, kind: str, detail: str = "") -> None:
        self.outcomes.append(Outcome(sent, time.monotonic(), kind, detail))

    def kinds(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        return [o.kind for o in self.outcomes if since <= o.sent < until]

    async def ok_after(self, since: float, count: int = 3, timeout: float = RECOVERY) -> None:
        await eventually(
            lambda: _value(self.kinds(since).count("ok")),
            lambda n: n >= count,
            timeout=timeout,
            what=f"{self.name}: {count} replies after {since:.1f}",
        )


async def _value(value: Any) -> Any:
    return value


class Room:
    """Chatters on one cluster, each in its own transport/encoding."""

    SPECS = (("tcp", JSON, 0), ("ws", BUF, 1), ("tcp", BUF, 1))

    def __init__(self, cluster: HardCluster, clients: Clients) -> None:
        self.cluster = cluster
        self.clients = clients
        self.keys = [new_key() for _ in self.SPECS]
        self.names = [new_name(f"m{i}") for i in range(len(self.SPECS))]
        self.chatters: list[Chatter] = []
        self.uids: list[int] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self) -> None:
        """(Re)connect everyone, log in with the same keys, enter, start chatting."""
        self.stop = asyncio.Event()
        self.chatters = []
        uids = []
        for (kind, proto, usex), key, name in zip(self.SPECS, self.keys, self.names, strict=True):
            client = await self.clients.member(
                self.cluster.url(kind), name, proto, usex=usex, key=key
            )
            uids.append(client.uid)
            self.chatters.append(Chatter(client, name, usex))
        if self.uids:
            assert uids == self.uids, "a reconnecting member got another account"
        self.uids = uids
        self.tasks = [asyncio.create_task(c.run(self.stop)) for c in self.chatters]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    def wrong(self) -> list[Outcome]:
        return [o for c in self.chatters for o in c.outcomes if o.kind == "wrong"]

    async def hear_each_other(self) -> None:
        """Every member receives new chat from every other member (pushes, by name)."""
        for chatter in self.chatters:
            chatter.client.drain_pushes()
        for chatter in self.chatters:
            others = set(self.names) - {chatter.name}
            heard: set[str] = set()
            while others - heard:
                push = await chatter.client.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg)
                heard.add(push.body["0"])


async def outage_notice(client: Client, notice: GatewayCmd, stype: int) -> None:
    """Wait for the stype-0 ``notice`` about service ``stype`` as a whole (ctype 0)."""
    async with asyncio.timeout(RECOVERY):
        while True:
            push = await client.next_push(Stype.Gateway, notice, timeout=RECOVERY)
            if push.body == {"stype": stype, "ctype": 0}:
                return


# ----------------------------------------------------------------- SIGKILL, each role
async def test_kill9_each_role_in_turn_under_traffic(
    cluster_factory: ClusterFactory, clients: Clients
) -> None:
    cluster = await cluster_factory()
    room = Room(cluster, clients)
    await room.join()
    await asyncio.gather(*(c.ok_after(0.0) for c in room.chatters))
    pids = cluster.pids()

    # -- talkroom: unavailable, back, members enter again and chat -------------------------
    assert await cluster.kill("talkroom") == -9
    killed = time.monotonic()
    for chatter in room.chatters:
        await outage_notice(chatter.client, GatewayCmd.SERVICE_UNAVAILABLE, Stype.TalkRoom)
    noticed = time.monotonic()
    # The rest of the cluster keeps working: logins are served meanwhile.
    await clients.login(cluster.tcp_url)
    await asyncio.sleep(0.3)  # chatters meet the outage
    await cluster.start_role("talkroom")
    restarted = time.monotonic()
    for chatter in room.chatters:
        await outage_notice(chatter.client, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom)
    await asyncio.gather(*(c.ok_after(restarted) for c in room.chatters))
    for chatter in room.chatters:
        # Sent once the gateway knew: refused at once, every one of them.
        during = chatter.kinds(noticed, restarted)
        assert "unavailable" in during and set(during) <= {"unavailable"}, during
        # Only the one request in flight at the kill may be lost (its deadline ends it).
        around = chatter.kinds(killed - REQUEST_TIMEOUT - 1.0, restarted)
        assert around.count("timeout") <= 1, around
        assert chatter.entered >= 1
    await room.hear_each_other()
    assert {r: cluster.pid(r) for r in ("center", "gateway")} == {
        r: pids[r] for r in ("center", "gateway")
    }

    # -- center: logins refused meanwhile, chat untouched ------------------------------------
    pids = cluster.pids()
    key, uid = room.keys[0], room.uids[0]
    assert await cluster.kill("center") == -9
    killed = time.monotonic()
    for chatter in room.chatters:
        await outage_notice(chatter.client, GatewayCmd.SERVICE_UNAVAILABLE, Stype.Auth)
    newcomer = await clients.open(cluster.ws_url)
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        await newcomer.guest_login(new_key())
    assert (info.value.stype, info.value.ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN)
    assert time.monotonic() - start < 1.0  # refused at once, not left to time out
    await cluster.start_role("center")
    restarted = time.monotonic()
    reply = await retry_until_served(lambda: newcomer.guest_login(new_key()), timeout=RECOVERY)
    assert reply["status"] == AuthStatus.OK, reply
    other = await clients.open(cluster.tcp_url)  # the accounts survived the crash
    assert (await other.guest_login(cluster.probe_key))["status"] == AuthStatus.OK
    for chatter in room.chatters:
        assert set(chatter.kinds(killed, restarted)) == {"ok"}, chatter.kinds(killed, restarted)
    assert {r: cluster.pid(r) for r in ("talkroom", "gateway")} == {
        r: pids[r] for r in ("talkroom", "gateway")
    }

    # -- gateway: clients lose it, reconnect to the new process, same accounts ---------------
    pids = cluster.pids()
    assert await cluster.kill("gateway") == -9
    for chatter in room.chatters:
        await chatter.client.wait_closed()
        notices = [p for p in chatter.client.drain_pushes() if p.stype == Stype.Gateway]
        assert not [p for p in notices if p.ctype == GatewayCmd.SHUTDOWN]  # a crash says nothing
    await room.halt()
    for role in ("talkroom", "center"):  # the services dropped the dead gateway's link
        await eventually(
            lambda role=role: cluster.healthz(role),
            lambda h: h["gateway_links"] == 0,
            timeout=5,
            what=f"{role} without gateway links",
        )
    await cluster.start_role("gateway")
    await wait_served(cluster)
    await room.join()  # same keys -> same uids; Enter is OK: the talkroom forgot them
    assert room.uids[0] == uid and room.keys[0] == key
    await asyncio.gather(*(c.ok_after(0.0) for c in room.chatters))
    await room.hear_each_other()
    await room.halt()
    assert {r: cluster.pid(r) for r in ("center", "talkroom")} == {
        r: pids[r] for r in ("center", "talkroom")
    }
    assert not room.wrong()


# ---------------------------------------------------------------------- MariaDB outage
class Database:
    """The center's MariaDB, which the test may stop, start, freeze and thaw.

    Preferably a private ``mariadbd`` (its own data directory and port). Where none can be
    run, a TCP proxy in front of the shared server stands in (`tests/storage/tcp_proxy.py`):
    stopping the proxy refuses and cuts every connection, as a stopped server does.
    """

    def __init__(self, url: str, private: PrivateMariaDB | None, proxy: Any = None) -> None:
        self.url = url
        self.private = private
        self.proxy = proxy

    async def stop(self) -> None:
        if self.private is not None:
            await asyncio.to_thread(self.private.stop)
        else:
            await self.proxy.stop()

    async def start(self) -> None:
        if self.private is not None:
            await asyncio.to_thread(self.private.start)
        else:
            await self.proxy.start()

    def freeze(self) -> None:
        if self.private is not None:
            self.private.freeze()
        else:
            self.proxy.hang()

    def thaw(self) -> None:
        if self.private is not None:
            self.private.thaw()
        else:
            self.proxy.resume()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    private = PrivateMariaDB(tmp_path / "mariadb", free_ports(1)[0])
    why = "mariadb-install-db / mariadbd not installed"
    if PrivateMariaDB.available():
        try:
            await asyncio.to_thread(private.install)
            await asyncio.to_thread(private.start)
        except (AssertionError, OSError, subprocess.SubprocessError) as exc:
            private.close()
            why = f"private mariadbd failed: {exc}"
        else:
            try:
                yield Database(private.url, private)
            finally:
                private.close()
            return
    print(f"{why}: using a TCP proxy in front of the shared MariaDB instead")
    async with proxied_shared_mariadb() as db:
        yield db


@contextlib.asynccontextmanager
async def proxied_shared_mariadb() -> AsyncIterator[Database]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from tests.storage.tcp_proxy import TcpProxy

    base = make_url(MYSQL_BASE_URL)
    admin = create_async_engine(
        base.set(database=None).update_query_dict({"connect_timeout": "3"}), poolclass=NullPool
    )
    name = f"netbus_hard_{secrets.token_hex(6)}"
    try:
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        except Exception as exc:
            pytest.skip(f"neither a private mariadbd nor the shared MariaDB: {exc!r}")
        proxy = TcpProxy(base.host or "127.0.0.1", base.port or 3306)
        await proxy.start()
        url = base.set(host="127.0.0.1", port=proxy.port, database=name)
        url = url.update_query_dict({"connect_timeout": "2"})
        try:
            yield Database(url.render_as_string(hide_password=False), None, proxy)
        finally:
            proxy.resume()
            await proxy.stop()
            async with admin.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await admin.dispose()


async def timed_login(client: Client, key: str, timeout: float = 5.0) -> tuple[Any, float]:
    start = time.monotonic()
    reply = await client.guest_login(key, timeout=timeout)
    return reply, time.monotonic() - start


async def test_mariadb_stopped_and_restarted(
    database: Database, cluster_factory: ClusterFactory, clients: Clients
) -> None:
    db = database
    cluster = await cluster_factory(database_url=db.url)
    pids = cluster.pids()
    key = new_key()
    member = await clients.member(cluster.tcp_url, new_name("m"), JSON, key=key)
    uid = member.uid

    await db.stop()  # a clean shutdown: connections closed, port refused
    probe = await clients.open(cluster.ws_url)
    for attempt_key in (key, new_key(), key):
        reply, took = await timed_login(probe, attempt_key)
        assert reply == {"status": AuthStatus.SYSTEM_ERROR}, reply
        assert took < 3.0, f"a login took {took:.1f}s against a stopped database"
    # What does not need the database goes on.
    assert (await member.send_msg("still here"))["0"] == TalkroomStatus.OK

    await db.start()

    async def logged_in() -> dict[str, Any]:
        reply, took = await timed_login(probe, key)
        assert took < 3.0, took
        return reply  # type: ignore[no-any-return]

    reply = await eventually(
        logged_in, lambda r: r.get("status") == AuthStatus.OK, timeout=RECOVERY, interval=0.2
    )
    assert reply["uid"] == uid  # the same account, from the same data directory
    await member.wait_closed()  # ... which kicked the older connection of that account
    fresh = await clients.login(cluster.tcp_url)
    assert fresh.uid not in (0, uid)

    # Frozen (SIGSTOP): a login is bounded by the store's timeout, then SYSTEM_ERROR.
    db.freeze()
    try:
        reply, took = await timed_login(probe, new_key(), timeout=15.0)
        assert reply == {"status": AuthStatus.SYSTEM_ERROR}, reply
        assert took < 12.0, took
    finally:
        db.thaw()
    reply = await eventually(
        lambda: probe.guest_login(new_key(), timeout=15.0),
        lambda r: r.get("status") == AuthStatus.OK,
        timeout=RECOVERY,
        interval=0.2,
    )
    assert cluster.pids() == pids, "a netbus role was restarted"


# --------------------------------------------------------------------- stalled service
@pytest.fixture
async def stalled_service() -> Any:
    stall = StalledService()
    await stall.start()
    try:
        yield stall
    finally:
        await stall.close()


async def test_stalled_service(
    stalled_service: StalledService, cluster_factory: ClusterFactory, clients: Clients
) -> None:
    assert GatewayConfig().heartbeat_interval == 5.0  # production: silent 15 s -> redialled
    stall = stalled_service
    secret = "stalled-service-cluster-secret-" + new_key(8)
    stall.secret = secret.encode()  # it opens the link, then freezes
    cluster = await cluster_factory(
        services=("center",),
        service_addresses={"talkroom": f"127.0.0.1:{stall.port}"},
        gateway={"heartbeat_interval": HEARTBEAT},
        cluster={"secret": secret},
    )
    service = f"talkroom@127.0.0.1:{stall.port}"
    await eventually(lambda: _value(stall.accepted), lambda n: n >= 1, timeout=5)
    health = await cluster.healthz()
    assert health["services"]["talkroom"] == {service: "up"}, health
    reconnects = await cluster.metric("netbus_service_link_reconnects_total", service=service)
    user = await clients.login(cluster.tcp_url)

    # Heartbeats find the silent link: closed after 3 intervals, then redialled.
    await outage_notice(user, GatewayCmd.SERVICE_UNAVAILABLE, Stype.TalkRoom)
    found = time.monotonic() - stall.accept_times[0]
    assert 3 * HEARTBEAT - 0.5 < found < 3 * HEARTBEAT + 1.5, f"silent link found in {found:.1f}s"
    await outage_notice(user, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom)
    await eventually(lambda: _value(stall.accepted), lambda n: n == 2, timeout=5)
    assert await cluster.metric("netbus_service_link_reconnects_total", service=service) >= (
        reconnects + 1
    )

    # The new link is as silent (and has 3 intervals to live): requests to it end in the
    # client's own deadline, not in a hang ...
    for attempt in (
        user.enter(new_name("u"), 0, timeout=0.5),
        user.send_msg("hello?", timeout=0.5),
    ):
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            await attempt
        took = time.monotonic() - start
        assert 0.45 < took < 1.5, took
    # ... while the gateway keeps serving everything else.
    for _ in range(3):
        other = await clients.login(cluster.ws_url)
        await other.heartbeat(timeout=1.0)
        await other.close()
    await outage_notice(user, GatewayCmd.SERVICE_UNAVAILABLE, Stype.TalkRoom)  # and again
    await outage_notice(user, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom)

    heartbeats = [f for f in stall.frames() if f[:2] == (Stype.Gateway, GatewayCmd.HEARTBEAT)]
    assert len(heartbeats) >= 4, stall.frames()  # 2 per silent link at least
    requests = [f for f in stall.frames() if f[0] == Stype.TalkRoom and f[1] != 10000]
    assert requests == [(1, TalkroomCmd.Enter, user.uid), (1, TalkroomCmd.SendMsg, user.uid)]
    left = {f[2] for f in stall.frames() if f[:2] == (Stype.TalkRoom, 10000)}
    assert user.uid not in left and len(left) >= 3, left  # USER_DISCONNECT of the others
    await user.heartbeat(timeout=1.0)  # the user's own connection was never touched
    assert not user.closed.is_set(), user.close_reason
