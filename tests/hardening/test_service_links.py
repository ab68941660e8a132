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
import os
from typing import Any

import pytest

from netbus.protocol.commands import AuthCmd, GatewayCmd, Stype, TalkroomCmd
from netbus.protocol.header import HEADER
from netbus.protocol.linkauth import MAGIC, PROOF_SIZE, VERSION
from tests.e2e.helpers import Clients, new_key, new_name, settled

from .conftest import ClusterFactory
from .harness import HardCluster, RawTcp, frame

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


async def auth_failures(cluster: HardCluster, role: str) -> float:
    return await cluster.metric("netbus_protocol_errors_total", role, kind="link_auth")


async def outsider(port: int) -> tuple[RawTcp, bytes]:
    """A raw connection to a service port; what the service said first (its HELLO)."""
    raw = await RawTcp.connect(port)
    async with asyncio.timeout(5):
        hello = await raw.reader.readexactly(37)
    return raw, hello


async def test_direct_tcp_to_the_talkroom_port_is_useless(
    cluster: HardCluster, clients: Clients
) -> None:
    """Forged Enter/SendMsg frames under a member's utag reach nobody."""
    witness = await clients.member(cluster.tcp_url, new_name("wit"))
    victim = await clients.member(cluster.tcp_url, new_name("victim"))
    await settled(witness)  # it heard the victim arrive
    before = await auth_failures(cluster, "talkroom")
    raw, hello = await outsider(cluster.ports["talkroom"])
    assert hello[:5] == b"NBLA\x01"  # the handshake, and nothing else
    forged = frame(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": "intruder", "usex": 0}, utag=77)
    forged += frame(Stype.TalkRoom, TalkroomCmd.SendMsg, "owned", utag=victim.uid)
    raw.send(forged * 20)
    assert await raw.closed_by_peer(5.0) == b""  # closed, nothing answered
    pushes = await settled(witness)
    assert pushes == [[]], pushes  # no intruder arrived, no forged message
    assert await auth_failures(cluster, "talkroom") == before + 1
    await witness.heartbeat()


async def test_direct_tcp_to_the_center_port_logs_nobody_in(cluster: HardCluster) -> None:
    before = await auth_failures(cluster, "center")
    raw, _hello = await outsider(cluster.ports["center"])
    raw.send(frame(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key(), utag=0x80000001) * 50)
    assert await raw.closed_by_peer(5.0) == b""  # no login reply
    assert await auth_failures(cluster, "center") == before + 1


class PortGrabber:
    """Sits on a service's address and answers every GUEST_LOGIN it is sent with a forged
    success for a victim's uid, as the process that grabbed a service port did."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.links = 0
        self.dialled = asyncio.Event()  #: the gateway dialled it twice (it keeps retrying)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.links += 1
        if self.links >= 2:
            self.dialled.set()
        self._writers.append(writer)
        reply: dict[str, Any] = {"status": 1, "uid": self.uid, "unick": "v", "usex": 0}
        reply |= {"uface": 0, "uvip": 0, "guest_key": "x" * 32}
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            # It plays the handshake as far as it can without the secret: a HELLO, then a
            # made-up proof once the gateway has proved itself.
            writer.write(MAGIC + bytes((VERSION,)) + os.urandom(32))
            await reader.readexactly(PROOF_SIZE)
            writer.write(MAGIC + bytes((VERSION,)) + os.urandom(32))
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
            gateway={"heartbeat_interval": 0.5},
            wait=False,
        )
        async with asyncio.timeout(10):
            await grabber.dialled.wait()  # the gateway keeps dialling it, in vain
        client = await clients.open(cluster.tcp_url)
        client.send(Stype.Auth, AuthCmd.GUEST_LOGIN, new_key())
        push = await client.next_push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE)
        assert push.body["stype"] == Stype.Auth
        assert client.uid == 0 and client.drain_pushes() == []
        health = await cluster.healthz()
        assert "up" not in health["services"]["auth"].values(), health
        failures = await cluster.metric("netbus_protocol_errors_total", kind="service_link_auth")
        assert failures >= 2  # each attempt counted (and logged, without the secret)
    finally:
        await grabber.close()
