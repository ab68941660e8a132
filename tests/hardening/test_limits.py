"""Listener limits over real sockets, against a real gateway process (docs/security.md).

One real-process test per limit: the limits' logic is tested in milliseconds with a fake
clock in tests/transport/test_guard.py; here each is checked end to end, once. One cluster
serves the module; each limit gets a gateway listener of its own, so the tests cannot disturb
each other: ``per_ip`` (max_per_ip 5), ``full`` (max_connections 3), ``idle_tcp`` /
``idle_ws`` (idle_timeout 0.5 s), ``rate`` (20 packets/s, burst 10, closed after 30 drops),
``trickle`` (frame_timeout 1 s). ``gateway.limits.max_buffered_out`` is 64 KiB for the
slow-consumer test. The SIGTERM test stops a gateway, so it runs a cluster of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from netbus.client import Client
from netbus.errors import ConnectionClosed
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.e2e.helpers import Clients, new_key, new_name

from .conftest import ClusterFactory
from .harness import (
    BUF,
    HEARTBEAT_FRAME,
    JSON,
    HardCluster,
    MiB,
    RawTcp,
    eventually,
    frame,
    raw_ws_handshake,
    vm_rss,
)

IDLE = 0.5
RATE, BURST, MAX_DROPPED = 20.0, 10, 30
FRAME_TIMEOUT = 1.0
MAX_BUFFERED_OUT = 64 * 1024
MAX_MSG_LEN = 16000

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def module_cluster_options() -> dict[str, Any]:
    return {
        "listeners": {
            "per_ip": {"kind": "tcp", "max_per_ip": 5},
            "per_ip_ws": {"kind": "ws", "max_per_ip": 3, "max_connections": 5},
            "full": {"kind": "tcp", "max_connections": 3},
            "idle_tcp": {"kind": "tcp", "idle_timeout": IDLE},
            "idle_ws": {"kind": "ws", "idle_timeout": IDLE},
            "rate": {"kind": "tcp", "rate": RATE, "burst": BURST, "max_dropped": MAX_DROPPED},
            "trickle": {"kind": "tcp", "frame_timeout": FRAME_TIMEOUT},
        },
        "limits": {"max_buffered_out": MAX_BUFFERED_OUT},
        "talkroom": {"max_msg_len": MAX_MSG_LEN},
    }


async def dropped(cluster: HardCluster, reason: str) -> float:
    return await cluster.metric("netbus_dropped_total", reason=reason)


async def assert_refused(raw: RawTcp) -> None:
    """Closed at once, before it could exchange a single packet."""
    raw.send(HEARTBEAT_FRAME)
    received = await raw.closed_by_peer(1.0)
    assert received is not None, "a connection over the limit was not closed at once"
    assert received == b"", f"a refused connection got an answer: {received!r}"


async def assert_closed_at_once(raw: RawTcp) -> None:
    """Closed without a word (and without being sent anything) right after the accept."""
    received = await raw.closed_by_peer(1.0)
    assert received == b"", f"not closed at once (received {received!r})"


async def connections(cluster: HardCluster) -> int:
    return int((await cluster.healthz())["connections"])


# -------------------------------------------------------------------- connection caps
async def test_per_ip_cap(cluster: HardCluster) -> None:
    port = cluster.listener_ports["per_ip"]
    refused_before = await dropped(cluster, "too_many_per_ip")
    base = await connections(cluster)
    held = [await RawTcp.connect(port) for _ in range(5)]
    for raw in held:
        await raw.heartbeat()

    sixth = await RawTcp.connect(port)
    await assert_refused(sixth)
    for raw in held:  # the five keep working
        await raw.heartbeat()
    other_ip = await RawTcp.connect(port, source="127.0.0.2")  # another address: its own cap
    await other_ip.heartbeat()
    assert await dropped(cluster, "too_many_per_ip") == refused_before + 1

    # A slot freed is a slot again.
    await held.pop().close()
    await eventually(lambda: connections(cluster), lambda n: n == base + 5, timeout=5)
    again = await RawTcp.connect(port)
    await again.heartbeat()
    for raw in [*held, other_ip, again]:
        await raw.close()


async def test_max_connections(cluster: HardCluster) -> None:
    port = cluster.listener_ports["full"]
    refused_before = await dropped(cluster, "listener_full")
    held = [await RawTcp.connect(port, source=f"127.0.0.{i + 1}") for i in range(3)]
    for raw in held:
        await raw.heartbeat()
    await assert_refused(await RawTcp.connect(port, source="127.0.0.9"))  # whatever the address
    await assert_refused(await RawTcp.connect(port))
    for raw in held:
        await raw.heartbeat()
    assert await dropped(cluster, "listener_full") == refused_before + 2
    # Other listeners are not affected by this one being full.
    probe = await Client.connect(cluster.tcp_url)
    await probe.heartbeat()
    await probe.close()
    for raw in held:
        await raw.close()


async def test_ws_caps_count_unfinished_upgrades(cluster: HardCluster) -> None:
    """A WebSocket connection counts from its first byte, not from a finished upgrade:
    otherwise connections that never finish the handshake would slip past both caps (and
    the idle timeout) for the whole 10 s handshake deadline."""
    port = cluster.listener_ports["per_ip_ws"]
    url = cluster.listener_url("per_ip_ws")
    refused_before = await dropped(cluster, "too_many_per_ip")
    stalled = [await RawTcp.connect(port) for _ in range(3)]  # TCP open, no HTTP upgrade
    await asyncio.sleep(0.2)
    for raw in stalled:
        assert await raw.closed_by_peer(0.1) is None  # still open: within the cap
    await assert_closed_at_once(await RawTcp.connect(port))  # the 4th from this address
    with pytest.raises(ConnectionClosed):  # the client's one documented connect error
        await Client.connect(url, timeout=2.0)  # the 5th, a real client: refused too
    assert await dropped(cluster, "too_many_per_ip") == refused_before + 2
    others = [await RawTcp.connect(port, source=f"127.0.0.{i}") for i in (2, 3)]  # 5 in all
    await assert_closed_at_once(await RawTcp.connect(port, source="127.0.0.4"))  # full
    for raw in [*stalled, *others]:
        await raw.close()
    await eventually(lambda: connections(cluster), lambda n: n == 0, timeout=5)
    client = await Client.connect(url)  # room again
    await client.heartbeat()
    await client.close()


async def test_short_ws_connections_are_released(cluster: HardCluster) -> None:
    """Each WebSocket connection used to stay in memory for the 10 s handshake deadline
    after it closed (the pending timer held the link): ~3 KB each, so a connect/close flood
    grew the gateway by megabytes a second. Now the timer goes with the handshake."""
    pid = cluster.pid("gateway")
    port = cluster.ports["ws"]

    async def churn(count: int) -> None:
        for _ in range(count):
            raw = await raw_ws_handshake(port)
            await raw.close()

    await churn(200)  # warm-up: allocator arenas, first-time code paths
    before = vm_rss(pid)
    await churn(2000)
    grown = vm_rss(pid) - before
    assert grown < 3 * MiB, f"gateway grew {grown / MiB:.1f} MiB over 2000 closed WS connections"


# ---------------------------------------------------------------------------- idleness
async def keep_beating(client: Client, seconds: float, every: float) -> int:
    beats = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await client.heartbeat(timeout=2.0)
        beats += 1
        await asyncio.sleep(every)
    return beats


async def test_idle_timeout(cluster: HardCluster) -> None:
    """A TCP client that sends nothing is closed after the idle timeout, and so is a WS
    client that ignores pings or never upgrades; one that heartbeats, or only answers pings
    (websockets does so by itself), stays."""
    beating = await Client.connect(cluster.listener_url("idle_tcp"))
    ponging = await Client.connect(cluster.listener_url("idle_ws"))
    silent = await RawTcp.connect(cluster.listener_ports["idle_tcp"])
    mute = await raw_ws_handshake(cluster.listener_ports["idle_ws"])
    never_upgraded = await RawTcp.connect(cluster.listener_ports["idle_ws"])
    closed_before = await dropped(cluster, "idle_timeout")
    beats, *ends = await asyncio.gather(
        keep_beating(beating, 6 * IDLE, every=0.3 * IDLE),
        silent.closed_within(6 * IDLE),
        mute.closed_within(6 * IDLE),
        never_upgraded.closed_within(6 * IDLE),
    )
    (silent_got, t1), (mute_got, t2), (never_got, t3) = ends
    assert silent_got == b"" and never_got == b"", (silent_got, never_got)
    assert mute_got is not None and b"\x89" in mute_got, "the idle WS client was not pinged"
    for elapsed in (t1, t2, t3):
        assert IDLE * 0.9 <= elapsed <= IDLE * 3, (t1, t2, t3)
    assert beats >= 10 and not beating.closed.is_set(), beating.close_reason
    assert not ponging.closed.is_set(), ponging.close_reason  # silent 3 s, kept by its pongs
    await ponging.heartbeat()
    assert await dropped(cluster, "idle_timeout") >= closed_before + 3
    await beating.close()
    await ponging.close()


# -------------------------------------------------------------------------- rate limit
async def read_frames(raw: RawTcp, seconds: float) -> list[tuple[int, int, Any, int]]:
    """Frames that arrive within ``seconds`` (or until the connection ends)."""
    frames = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(await raw.read_frame(left))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            break
    return frames


def split_notices(frames: list[tuple[int, int, Any, int]]) -> tuple[int, list[int]]:
    """(HEARTBEAT echoes, the ``dropped`` of each RATE_LIMITED notice); nothing else allowed."""
    echoes, notices = 0, []
    for stype, ctype, body, _proto in frames:
        assert stype == Stype.Gateway, frames
        if ctype == GatewayCmd.HEARTBEAT:
            echoes += 1
        else:
            assert ctype == GatewayCmd.RATE_LIMITED, frames
            notices.append(body["dropped"])
    return echoes, notices


async def test_rate_limit(cluster: HardCluster) -> None:
    """Packets over the bucket are dropped, and the client is told how many (RATE_LIMITED,
    at most once a second, adding up to every drop); past max_dropped the flooder is
    disconnected; a client within the rate on the same listener gets every answer."""
    port = cluster.listener_ports["rate"]
    dropped_before = await dropped(cluster, "rate_limited")
    normal = await Client.connect(cluster.listener_url("rate"))
    normal_beats = asyncio.create_task(keep_beating(normal, 2.5, every=0.2))  # 5/s < 20/s

    burst = await RawTcp.connect(port)  # a fresh connection: a full bucket
    burst.send(HEARTBEAT_FRAME * 25)  # 10 pass, 15 dropped: below max_dropped, kept
    echoes, notices = split_notices(await read_frames(burst, 1.6))
    # One notice at once, one for the rest of that second (no further packet needed).
    assert BURST <= echoes <= BURST + 1 and notices == [1, 25 - echoes - 1], (echoes, notices)
    await burst.heartbeat()  # still connected and served

    flood = await RawTcp.connect(port)
    flood.send(HEARTBEAT_FRAME * 200)  # 10 pass, then the 30th drop closes it
    echoes, notices = split_notices(await read_frames(flood, 1.0))
    assert BURST <= echoes <= BURST + 1 and notices == [1], (echoes, notices)
    assert await flood.closed_by_peer(1.0) is not None, "a flooding client was not disconnected"

    assert await normal_beats >= 5 and not normal.closed.is_set(), normal.close_reason
    assert normal.drain_pushes() == []  # never rate limited, never told so
    assert await dropped(cluster, "rate_limited") >= dropped_before + 15 + MAX_DROPPED
    await normal.close()
    await burst.close()


# -------------------------------------------------------------------- frame deadline
async def test_a_trickled_frame_is_cut_at_its_deadline(cluster: HardCluster) -> None:
    """A connection trickling the bytes of one frame (so never idle) used to be kept for
    ever; now a frame must be complete within frame_timeout."""
    port = cluster.listener_ports["trickle"]
    before = await dropped(cluster, "frame_timeout")
    steady = await RawTcp.connect(port)
    trickler = await RawTcp.connect(port)
    trickler.send((1002).to_bytes(2, "little"))  # a 1,000-byte cmd_buf, a byte at a time
    start = time.monotonic()
    while time.monotonic() - start < 4 * FRAME_TIMEOUT:
        trickler.send(b"\0")  # never idle, never a whole frame ...
        await steady.heartbeat()  # ... while its neighbour is served
        try:
            async with asyncio.timeout(0.1):  # paces the trickler; the cut is an EOF/reset
                await trickler.reader.read(1)
            break
        except TimeoutError:
            continue
        except ConnectionError:
            break
    cut_after = time.monotonic() - start
    assert FRAME_TIMEOUT * 0.9 < cut_after < FRAME_TIMEOUT * 2 + 0.5, cut_after
    assert await dropped(cluster, "frame_timeout") == before + 1
    await steady.heartbeat()
    await steady.close()


# ------------------------------------------------------------------------ slow consumer
async def test_slow_consumer_is_disconnected(cluster: HardCluster, clients: Clients) -> None:
    """A member that stops reading while the room floods it is cut off once its queue at the
    gateway passes max_buffered_out; everyone else gets every reply.

    The gateway's kernel send buffer comes first: on loopback Linux autotunes it up to
    tcp_wmem's maximum (4 MiB) before the transport's own queue starts to grow, so the room
    sends ~6 MB (big messages keep that to a few hundred packets).
    """
    slow_name = new_name("slow")
    # asyncio stops reading this socket past 2 KiB; its kernel buffer is ~4 KiB.
    slow = await RawTcp.connect(cluster.ports["tcp"], rcvbuf=4096, limit=1024)
    slow.send(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()))
    _, reply = await slow.read_until(Stype.Auth, AuthCmd.GUEST_LOGIN)
    assert reply["status"] == 1, reply
    slow.send(frame(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": slow_name, "usex": 0}))
    _, status = await slow.read_until(Stype.TalkRoom, TalkroomCmd.Enter)
    assert status == TalkroomStatus.OK
    flooders = [await clients.member(cluster.tcp_url, new_name("flood"), p) for p in (JSON, BUF)]
    base = await connections(cluster)
    text = "x" * MAX_MSG_LEN
    per_flooder = 200  # 2 x 200 x 16 KB = 6.4 MB of UserMsg pushes towards the slow member

    async def flood(client: Client) -> list[Any]:
        # In waves of 10: the flooders read their own 16 KB echoes and each other's pushes,
        # and must stay well within their own 64 KiB cap while the slow member overflows.
        replies: list[Any] = []
        for _ in range(per_flooder // 10):
            replies += await asyncio.gather(*(client.send_msg(text) for _ in range(10)))
        return replies

    results = await asyncio.gather(*(flood(c) for c in flooders))
    for flooder, replies in zip(flooders, results, strict=True):
        assert len(replies) == per_flooder
        assert all(r["0"] == TalkroomStatus.OK for r in replies), replies[:3]
        assert not flooder.closed.is_set(), flooder.close_reason

    # The slow member is gone: the room hears it left, the gateway dropped its connection.
    for flooder in flooders:
        while True:
            push = await flooder.next_push(Stype.TalkRoom, TalkroomCmd.UserExit, timeout=10)
            if push.body["uname"] == slow_name:
                break
    await eventually(lambda: connections(cluster), lambda n: n <= base - 1, timeout=5)
    assert await slow.closed_by_peer(5.0) is not None
    for flooder in flooders:
        await flooder.heartbeat()


# ---------------------------------------------------------------------------- SIGTERM
def tcp_wmem_max() -> int:
    """The most a TCP socket's kernel send buffer may autotune to (Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MiB


async def test_sigterm_sends_shutdown_then_exits(
    cluster_factory: ClusterFactory, clients: Clients
) -> None:
    """SIGTERM: every client hears SHUTDOWN before its connection closes, and the gateway
    exits 0 within its 5 s drain deadline even though one client stopped reading with
    megabytes queued for it (more than the kernel takes, less than max_buffered_out)."""
    backlog = tcp_wmem_max() + 2 * MiB
    cluster = await cluster_factory(
        talkroom={"max_msg_len": MAX_MSG_LEN}, limits={"max_buffered_out": backlog + 4 * MiB}
    )
    members = [
        await clients.member(cluster.tcp_url, new_name("a"), JSON),
        await clients.member(cluster.ws_url, new_name("b"), BUF),
    ]
    anonymous = await clients.open(cluster.ws_url)  # connected, never logged in
    await anonymous.heartbeat()
    browser = await ws_connect(cluster.ws_url)  # a plain WebSocket: what a page's code sees
    lazy = await RawTcp.connect(cluster.ports["tcp"], rcvbuf=4096, limit=1024)  # never reads
    await lazy.heartbeat()

    # A member that stops reading while the others chat: its queue at the gateway fills.
    stuck = await RawTcp.connect(cluster.ports["tcp"], rcvbuf=4096, limit=1024)
    stuck.send(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()))
    await stuck.read_until(Stype.Auth, AuthCmd.GUEST_LOGIN)
    stuck.send(frame(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": new_name("stuck"), "usex": 0}))
    await stuck.read_until(Stype.TalkRoom, TalkroomCmd.Enter)
    text = "y" * MAX_MSG_LEN
    for member in members:
        for _ in range(backlog // MAX_MSG_LEN // len(members) // 10 + 1):
            await asyncio.gather(*(member.send_msg(text) for _ in range(10)))
    await asyncio.gather(*(member.heartbeat() for member in members))
    for member in members:
        member.drain_pushes()
    assert (await cluster.healthz())["connections"] == 6  # the stuck member is still there

    closed_after: dict[int, float] = {}

    async def watch(i: int, client: Client) -> None:
        await client.closed.wait()
        closed_after[i] = time.monotonic() - start

    gateway = cluster.procs["gateway"]
    start = time.monotonic()
    watchers = [asyncio.create_task(watch(i, c)) for i, c in enumerate((*members, anonymous))]
    gateway.signal(signal.SIGTERM)
    code = await asyncio.to_thread(gateway.wait, 15)
    elapsed = time.monotonic() - start
    await asyncio.gather(*watchers)
    assert code == 0, gateway.text()
    assert 4.5 < elapsed < 5.0 + 2.5, f"gateway exited after {elapsed:.1f}s (drain deadline 5 s)"
    # The stuck member held nobody else back.
    assert max(closed_after.values()) < 2.0, closed_after

    for client in (*members, anonymous):
        pushes = client.drain_pushes()
        assert pushes, "no SHUTDOWN notice before the close"
        last = pushes[-1]  # the notice is the last thing before the close
        assert (last.stype, last.ctype) == (Stype.Gateway, GatewayCmd.SHUTDOWN), pushes
        assert set(last.body) == {"reason"} and isinstance(last.body["reason"], str), last
        assert last.body["reason"], last
    received = await lazy.closed_by_peer(2.0)
    assert received is not None
    assert received[2:6] == bytes([Stype.Gateway, 0, GatewayCmd.SHUTDOWN, 0]), received
    # A browser learns it from the close code too: 1001 going away (docs/protocol.md §2.2).
    with contextlib.suppress(WsConnectionClosed):
        async with asyncio.timeout(2):
            async for _ in browser:
                pass
    assert browser.close_code == 1001, browser.close_code
    assert await stuck.closed_by_peer(2.0) is not None
    # The services saw the gateway go, and are still up.
    assert not {"center", "talkroom"} & set(cluster.dead_roles())
    health = await eventually(
        lambda: cluster.healthz("talkroom"),
        lambda h: h["gateway_links"] == 0,
        timeout=5,
        what="talkroom without gateway links",
    )
    assert health["status"] == "ok"
