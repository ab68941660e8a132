"""Hostile clients against a real gateway, with witnesses (issue 10 items 1, 2, 16, 18, 25, 26).

One cluster serves the module, on default limits except: the login limit applies to loopback
clients too (the default: ``login_exempt_loopback = false``), a WS listener ``rate_ws`` with
a small packet budget (20/s, burst 10, closed after 30 drops) and ``idle_ws`` (idle timeout
1 s). Each attack runs while `Witnesses` chat; they must all be served on time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode

from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from tests.e2e.helpers import Clients, new_key

from .harness import (
    HardCluster,
    MiB,
    RawTcp,
    cmd,
    decode,
    frame,
    raw_ws_handshake,
    vm_rss,
)
from .witness import Witnesses

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

RATE, BURST, MAX_DROPPED = 20.0, 10, 30


@pytest.fixture(scope="module")
def module_cluster_options() -> dict[str, Any]:
    return {
        "listeners": {
            "rate_ws": {"kind": "ws", "rate": RATE, "burst": BURST, "max_dropped": MAX_DROPPED},
            "idle_ws": {"kind": "ws", "idle_timeout": 1.0},
        },
        "limits": {"login_exempt_loopback": False},
    }


async def dropped(cluster: HardCluster, reason: str) -> float:
    return await cluster.metric("netbus_dropped_total", reason=reason)


# ------------------------------------------------------------ items 1 and 2: ping floods
def masked_ping(payload: bytes) -> bytes:
    return Frame(Opcode.PING, payload).serialize(mask=True, extensions=[])


async def test_ws_ping_flood_is_cut_and_starves_nobody(
    cluster: HardCluster, clients: Clients
) -> None:
    """A WS client sending pings as fast as it can and never reading: it used to get every
    ping answered (the pongs escaped the slow-reader cap: 1.2 GB of RSS in 26 s) and to
    starve everyone else (a witness lost 130 of 152 messages). Now its pings have a budget
    and it is closed after a burst; its pongs could never pass max_buffered_out anyway."""
    pid = cluster.pid("gateway")
    before = vm_rss(pid)
    flood = masked_ping(b"p" * 125) * 4000  # 0.5 MB of pings per write
    async with Witnesses(clients, cluster.tcp_url) as witnesses:
        flooder = await raw_ws_handshake(cluster.ports["ws"])
        sock = flooder.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
        start = time.monotonic()
        cut_after = None
        while time.monotonic() - start < 5.0:
            try:
                flooder.send(flood)
                await asyncio.wait_for(flooder.writer.drain(), 1.0)
            except (ConnectionError, TimeoutError):
                pass
            if flooder.writer.transport.is_closing() or flooder.reader.at_eof():
                cut_after = time.monotonic() - start
                break
            await asyncio.sleep(0.05)  # pacing the attacker, not waiting for an event
        grown = vm_rss(pid) - before
        await asyncio.sleep(0.5)  # the witnesses keep chatting a little after the attack
    assert cut_after is not None, "a ping flood was not cut within 5 s"
    assert grown < 24 * MiB, f"gateway RSS grew {grown / MiB:.0f} MiB during a ping flood"
    assert await dropped(cluster, "ws_control_flood") >= 1
    print(f"ping flood cut after {cut_after:.2f} s; gateway RSS grew {grown / MiB:.1f} MiB")
    print(witnesses.report)
    witnesses.check()


# ------------------------------------------------------- item 16: unfinished frames' memory
def burst_of_partial_frames(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each holding a frame of 65533 bytes with one byte missing,
    from five loopback addresses (the per-IP cap is 512).

    Blocking sockets, run in a thread: the attacker must not slow down the witnesses, who
    share this process's event loop.
    """
    payload = (65535).to_bytes(2, "little") + bytes(65533 - 1)
    held: list[socket.socket] = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.bind((f"127.0.0.{1 + i % 5}", 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(payload)
        except OSError:
            sock.close()  # cut by the gateway while sending: the budget at work
            continue
        held.append(sock)
    return held


async def test_unfinished_frames_are_bounded_across_the_process(
    cluster: HardCluster, clients: Clients
) -> None:
    """2,000 connections each holding an unfinished 64 KB frame raised gateway RSS from 55
    to 184 MB, and repeated bursts ratcheted it to 418 MB. Now unfinished input has a
    process-wide budget (32 MiB by default; the connections holding theirs the longest are
    cut) and frames are kept without regrowth, so RSS stays bounded burst after burst."""
    pid = cluster.pid("gateway")
    port = cluster.ports["tcp"]
    base = vm_rss(pid)
    peaks = []
    async with Witnesses(clients, cluster.tcp_url) as witnesses:
        for _ in range(3):
            socks = await asyncio.to_thread(burst_of_partial_frames, port, 2000)
            # The bytes are in the gateway's socket buffers; a few round trips on a fresh
            # connection let its loop go over every readable socket (1,024 per epoll call).
            probe = await RawTcp.connect(port)
            for _ in range(5):
                await probe.heartbeat()
            await probe.close()
            peaks.append(vm_rss(pid) - base)
            for sock in socks:
                sock.close()
            await asyncio.sleep(0.3)  # the gateway sees the closes
    cut = await dropped(cluster, "input_budget")
    growth = [f"{p / MiB:.0f}" for p in peaks]
    print(f"gateway RSS growth after each burst: {growth} MiB; {cut:.0f} connections cut")
    print(witnesses.report)
    assert max(peaks) < 80 * MiB, f"gateway RSS grew by {growth} MiB over 3 bursts"
    assert peaks[-1] - peaks[0] < 16 * MiB, f"RSS ratchets up burst after burst: {growth} MiB"
    assert cut >= 3 * (2000 - 32 * MiB // 65536), f"only {cut} connections cut over the budget"
    witnesses.check()


# -------------------------------------------------------------------- item 18: Origin
async def test_ws_origin_is_checked(cluster: HardCluster) -> None:
    """Any web site could make its visitors' browsers open gateway connections (and create
    accounts). By default only the web role's own origin may; non-browser clients (no
    Origin header) always may."""
    url = cluster.ws_url
    refused = await dropped(cluster, "forbidden_origin")
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    page = f"http://127.0.0.1:{cluster.ports['web']}"  # the web role of this config
    for origin in (page, f"http://localhost:{cluster.ports['web']}", None):
        async with ws_connect(url, origin=origin) as conn:  # type: ignore[arg-type]
            await conn.send(cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None))
            assert decode(await conn.recv())[:2] == (Stype.Gateway, GatewayCmd.HEARTBEAT)
    assert await dropped(cluster, "forbidden_origin") == refused + 1


# ------------------------------------------------------------- item 25: WS close codes
async def ws_login(conn: ClientConnection, key: str) -> dict[str, Any]:
    await conn.send(cmd(Stype.Auth, AuthCmd.GUEST_LOGIN, key))
    while True:
        stype, ctype, body, _ = decode(await conn.recv())
        if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
            return body  # type: ignore[no-any-return]


async def close_code(conn: ClientConnection) -> int | None:
    try:
        async with asyncio.timeout(5):
            async for _ in conn:
                pass
    except ConnectionClosed:
        pass
    await conn.wait_closed()
    return conn.close_code


async def test_ws_close_codes(cluster: HardCluster) -> None:
    """Server-side reasons reach browsers as documented close codes (docs/protocol.md §2.2):
    4000 relogin, 4001 idle, 4002 rate limit (it used to be a reset: 1006)."""
    key = new_key()
    first = await ws_connect(cluster.ws_url)
    assert (await ws_login(first, key))["status"] == 1
    async with ws_connect(cluster.ws_url) as second:
        assert (await ws_login(second, key))["status"] == 1
        assert await close_code(first) == 4000

    async with ws_connect(cluster.listener_url("rate_ws")) as flooder:
        beat = cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None)
        for _ in range(BURST + MAX_DROPPED + 10):
            await flooder.send(beat)
        assert await close_code(flooder) == 4002

    mute = await raw_ws_handshake(cluster.listener_ports["idle_ws"])  # no pongs, no packets
    received = await mute.closed_by_peer(5.0)
    assert received is not None
    at = received.index(b"\x88")  # the close frame after the pings
    assert Close.parse(received[at + 2 : at + 2 + received[at + 1]]).code == 4001


# ------------------------------------------------- item 26: RATE_LIMITED, the real count
async def test_rate_limited_reports_the_real_count_once_a_second(cluster: HardCluster) -> None:
    """RATE_LIMITED said {"dropped": 1} while 1,099 packets were dropped: only the first
    drop of a streak was told at once, the rest only if another packet came a second later.
    Refused logins got one notice each. Now the notices add up to every dropped packet, at
    most one a second, whether or not the client sends anything more."""
    async with ws_connect(cluster.listener_url("rate_ws")) as conn:
        beat = cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None)
        sent = BURST + MAX_DROPPED - 5  # under max_dropped: it stays connected
        for _ in range(sent):
            await conn.send(beat)
        echoes, notices = 0, []
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                while True:
                    stype, ctype, body, _ = decode(await conn.recv())
                    if ctype == GatewayCmd.HEARTBEAT:
                        echoes += 1
                    else:
                        assert ctype == GatewayCmd.RATE_LIMITED
                        notices.append((time.monotonic() - start, body["dropped"]))
    assert sum(n for _, n in notices) == sent - echoes, (echoes, notices)
    assert len(notices) == 2 and notices[1][0] - notices[0][0] >= 0.9, notices

    # The login limit: one client (an address of its own) far over its burst of 20.
    raw = await RawTcp.connect(cluster.ports["tcp"], source="127.0.0.9")
    logins = 30
    raw.send(b"".join(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()) for _ in range(logins)))
    replies, notices = 0, []
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2.5):
            while True:
                stype, ctype, body, _ = await raw.read_frame(5)
                if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
                    replies += 1
                else:
                    assert (stype, ctype) == (Stype.Gateway, GatewayCmd.RATE_LIMITED)
                    notices.append((time.monotonic() - start, body["dropped"]))
    assert replies < logins and replies + sum(n for _, n in notices) == logins, notices
    assert len(notices) == 2 and notices[1][0] - notices[0][0] >= 0.9, notices
    await raw.close()
