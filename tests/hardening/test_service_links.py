"""Service ports against outsiders (issue 10 item 7): links must prove the cluster secret.

Direct TCP to the talkroom port used to inject members and messages under any utag, and the
center port answered 349 logins/s on one connection. Now a connection that does not pass the
mutual HMAC handshake (docs/security.md) is closed before a single frame is read, and a
process that grabbed a service's port cannot prove itself to the gateway either. The roles
here find their cluster secret where `netbus up` puts it by default (``.netbus/`` of their
working directory), created by the first one to start.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from netbus.errors import ServiceUnavailable
from netbus.protocol.header import HEADER
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from tests.e2e.helpers import Clients, new_key, new_name, settled

from .conftest import ClusterFactory
from .harness import HardCluster, RawTcp, eventually, frame

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


async def auth_failures(cluster: HardCluster, role: str) -> float:
    return await cluster.metric("netbus_protocol_errors_total", role, kind="link_auth")


async def test_direct_tcp_to_the_talkroom_port_is_useless(
    cluster: HardCluster, clients: Clients
) -> None:
    """Forged Enter/SendMsg frames under a member's utag reach nobody."""
    witness = await clients.member(cluster.tcp_url, new_name("wit"))
    victim = await clients.member(cluster.tcp_url, new_name("victim"))
    await settled(witness)  # it heard the victim arrive
    before = await auth_failures(cluster, "talkroom")
    raw = await RawTcp.connect(cluster.ports["talkroom"])
    forged = frame(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": "intruder", "usex": 0}, utag=77)
    forged += frame(Stype.TalkRoom, TalkroomCmd.SendMsg, "owned", utag=victim.uid)
    raw.send(forged * 20)
    received = await raw.closed_by_peer(5.0)
    pushes = await settled(witness)
    assert pushes == [[]], pushes  # no intruder arrived, no forged message
    assert received is not None, "the talkroom kept a connection that proved nothing"
    assert received[:5] == b"NBLA\x01" and len(received) == 37, received  # its HELLO only
    assert await auth_failures(cluster, "talkroom") == before + 1
    await witness.heartbeat()


async def test_direct_tcp_to_the_center_port_logs_nobody_in(cluster: HardCluster) -> None:
    before = await auth_failures(cluster, "center")
    raw = await RawTcp.connect(cluster.ports["center"])
    raw.send(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key(), utag=0x80000001) * 50)
    received = await raw.closed_by_peer(5.0)
    assert received is not None, "the center kept serving a connection that proved nothing"
    assert received[:5] == b"NBLA\x01" and len(received) == 37, received  # no login reply
    assert await auth_failures(cluster, "center") == before + 1


class PortGrabber:
    """Sits on a service's address and answers every GUEST_LOGIN it is sent with a forged
    success for a victim's uid, as the process that grabbed a service port did."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.links = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.links += 1
        self._writers.append(writer)
        reply: dict[str, Any] = {"status": 1, "uid": self.uid, "unick": "v", "usex": 0}
        reply |= {"uface": 0, "uvip": 0, "guest_key": "x" * 32}
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                size = int.from_bytes(await reader.readexactly(2), "little")
                stype, ctype, utag, _proto = HEADER.unpack_from(await reader.readexactly(size - 2))
                if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
                    writer.write(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, reply, utag=utag))
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            await self._server.wait_closed()


async def test_a_process_on_the_center_port_cannot_log_users_in(
    cluster_factory: ClusterFactory, clients: Clients
) -> None:
    grabber = PortGrabber(uid=4242)
    await grabber.start()
    try:
        cluster = await cluster_factory(
            services=("talkroom",),
            service_addresses={"auth": f"127.0.0.1:{grabber.port}"},
            wait=False,
        )
        client = await clients.open(cluster.tcp_url)
        for _ in range(3):  # it stays unusable however often the user tries
            try:
                reply: dict[str, Any] | None = await client.guest_login(new_key(), timeout=3.0)
            except ServiceUnavailable:
                reply = None
            assert reply is None and client.uid == 0, f"logged in by a port grabber: {reply}"
        health = await cluster.healthz()
        assert "up" not in health["services"]["auth"].values(), health
        # It never says HELLO: each link dies at the 5 s handshake deadline, counted.
        failures = await eventually(
            lambda: cluster.metric("netbus_protocol_errors_total", kind="service_link_auth"),
            lambda n: n >= 1,
            timeout=15,
            what="a counted link-auth failure",
        )
        assert failures >= 1 and grabber.links >= 1
    finally:
        await grabber.close()
