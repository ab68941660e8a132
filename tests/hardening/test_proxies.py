"""Clients behind a proxy (issue 10 item 9): limits and logs see the real client.

Behind the same-host TLS proxy that docs/security.md recommends every client used to be
127.0.0.1, and the loopback exemption switched the login limit off: one address created 792
accounts a second. Here the test plays the proxy at 127.0.0.1: on ``pp`` (TCP) it speaks the
PROXY protocol, on ``xff`` (WS) it sets X-Forwarded-For, and 127.0.0.2 plays a peer that is
not a trusted proxy. Per-IP limits count IPv4 clients by /24 in this cluster.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from netbus.protocol import GatewayCmd
from netbus.protocol.proxy import encode_v1, encode_v2
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from tests.e2e.helpers import new_key

from .harness import HardCluster, RawTcp, cmd, decode, frame

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def module_cluster_options() -> dict[str, Any]:
    proxy = {"trusted_proxies": ["127.0.0.1"]}
    return {
        "listeners": {
            "pp": {"kind": "tcp", "proxy_protocol": True, "max_per_ip": 2, **proxy},
            "xff": {"kind": "ws", "max_per_ip": 1, **proxy},
        },
        "limits": {"login_exempt_loopback": False, "ipv4_prefix": 24},
    }


async def behind_proxy(cluster: HardCluster, client: str, *, v2: bool = False) -> RawTcp:
    """A connection from the proxy (127.0.0.1) on behalf of ``client``."""
    port = cluster.listener_ports["pp"]
    raw = await RawTcp.connect(port)
    encode = encode_v2 if v2 else encode_v1
    raw.send(encode((client, 50000), ("127.0.0.1", port)))
    return raw


async def login_flood(raw: RawTcp, count: int) -> tuple[int, int]:
    """Send ``count`` GUEST_LOGINs at once; (replies, packets reported dropped) in 2.5 s."""
    raw.send(b"".join(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()) for _ in range(count)))
    replies = dropped = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2.5):
            while True:
                stype, ctype, body, _ = await raw.read_frame(5)
                if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
                    replies += body["status"] == 1
                elif (stype, ctype) == (Stype.Gateway, GatewayCmd.RATE_LIMITED):
                    dropped += body["dropped"]
    return replies, dropped


async def test_the_login_limit_sees_each_client_behind_the_proxy(cluster: HardCluster) -> None:
    flooder = await behind_proxy(cluster, "203.0.113.7")
    neighbour = await behind_proxy(cluster, "203.0.113.200")  # the same /24
    other = await behind_proxy(cluster, "198.51.100.1", v2=True)
    for raw in (neighbour, other):
        await raw.heartbeat()
    flooder.send(b"".join(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()) for _ in range(30)))
    await flooder.read_until(Stype.Gateway, GatewayCmd.RATE_LIMITED, timeout=10)  # empty now
    # The neighbour shares the flooder's bucket; the other client of the proxy does not.
    assert await login_flood(neighbour, 3) in ((0, 3), (1, 2)), "the /24 is one client"
    assert await login_flood(other, 3) == (3, 0)
    for raw in (flooder, other, neighbour):
        await raw.close()


async def test_per_ip_cap_and_logs_see_the_client(cluster: HardCluster) -> None:
    held = [await behind_proxy(cluster, f"203.0.113.{i}") for i in (10, 11)]
    for raw in held:
        await raw.heartbeat()
    third = await behind_proxy(cluster, "203.0.113.12")  # the same /24: over max_per_ip 2
    assert await third.closed_by_peer(5.0) == b""
    elsewhere = await behind_proxy(cluster, "192.0.2.10")
    await elsewhere.heartbeat()
    # A protocol error from behind the proxy is logged with the client's address.
    mark = len(cluster.procs["gateway"].output())
    elsewhere.send(b"\x05\x00")  # a frame length under 12
    assert await elsewhere.closed_by_peer(5.0) is not None
    line = await cluster.procs["gateway"].await_line(
        lambda text: "frame_length" in text, start=mark, timeout=5
    )
    assert "192.0.2.10" in line and "127.0.0.1" not in line, line
    for raw in held:
        await raw.close()


async def test_proxy_headers_only_from_trusted_proxies(cluster: HardCluster) -> None:
    port = cluster.listener_ports["pp"]
    untrusted_before = await cluster.metric("netbus_protocol_errors_total", kind="proxy_untrusted")
    missing_before = await cluster.metric("netbus_protocol_errors_total", kind="proxy_header")
    # A peer that is not a trusted proxy names an address: protocol error, closed.
    liar = await RawTcp.connect(port, source="127.0.0.2")
    liar.send(encode_v1(("203.0.113.99", 1), ("127.0.0.1", port)))
    assert await liar.closed_by_peer(5.0) == b""
    # The trusted proxy must send its header: a connection without one is refused.
    bare = await RawTcp.connect(port)
    bare.send(frame(Stype.Gateway, GatewayCmd.HEARTBEAT, None))
    assert await bare.closed_by_peer(5.0) == b""
    # Anyone else is served as themselves.
    plain = await RawTcp.connect(port, source="127.0.0.2")
    await plain.heartbeat()
    await plain.close()
    assert (
        await cluster.metric("netbus_protocol_errors_total", kind="proxy_untrusted")
        == untrusted_before + 1
    )
    assert (
        await cluster.metric("netbus_protocol_errors_total", kind="proxy_header")
        == missing_before + 1
    )


async def ws_logins(conn: ClientConnection, count: int) -> tuple[int, int]:
    for _ in range(count):
        await conn.send(cmd(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key()))
    replies = dropped = 0
    deadline = time.monotonic() + 2.5
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(deadline - time.monotonic()):
            while True:
                stype, ctype, body, _ = decode(await conn.recv())
                if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
                    replies += body["status"] == 1
                elif (stype, ctype) == (Stype.Gateway, GatewayCmd.RATE_LIMITED):
                    dropped += body["dropped"]
    return replies, dropped


async def test_x_forwarded_for_from_the_trusted_proxy_only(cluster: HardCluster) -> None:
    url = cluster.listener_url("xff")

    def via(source: str, client: str) -> Any:
        headers = {"X-Forwarded-For": f"10.9.9.9, {client}"}  # the leftmost is the client's own
        return ws_connect(url, additional_headers=headers, local_addr=(source, 0))

    # From the proxy: two clients in different /24s each get their own slot (max_per_ip 1).
    async with via("127.0.0.1", "192.0.2.77") as a, via("127.0.0.1", "198.51.100.77") as b:
        replies, refused = await ws_logins(a, 25)  # and the login limit is per client
        assert replies <= 21 and replies + refused == 25, (replies, refused)
        assert await ws_logins(b, 1) == (1, 0)
    # From a peer that is not a trusted proxy the header means nothing: one slot, its own.
    async with via("127.0.0.2", "192.0.2.1") as first:
        await first.send(cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None))
        assert decode(await first.recv())[1] == GatewayCmd.HEARTBEAT
        with pytest.raises(Exception):  # noqa: B017 - refused at once, however it surfaces
            async with via("127.0.0.2", "198.51.100.1") as second:
                await second.send(cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None))
                await second.recv()
