"""The talkroom behind a gateway link: many users per TCP link, told apart by utag (§4.3, §5).

The test plays the gateway with a real `TcpLink` to the service port: it tags packets with
uids, sends USER_DISCONNECT, and drops the link, and checks that replies and pushes come back
tagged with each recipient's own utag.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from netbus.errors import ProtocolError
from netbus.protocol import USER_DISCONNECT, Direction
from netbus.protocol.header import unpack_header
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink
from tests.helpers import BUF, CODECS, JSON, talkroom_server

T = Stype.TalkRoom


class Packet(NamedTuple):
    stype: int
    ctype: int
    utag: int
    proto_type: int
    body: Any


class FakeGateway:
    """A real TCP link to a service, driven by hand like a gateway would."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[Packet] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.link: TcpLink | None = None

    @classmethod
    async def connect(cls, port: int) -> FakeGateway:
        gw = cls()
        link = TcpLink(gw)
        await asyncio.get_running_loop().create_connection(lambda: link, "127.0.0.1", port)
        gw.link = link
        return gw

    # LinkHandler
    def link_opened(self, link: Link) -> None:
        pass

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        stype, ctype, utag, proto = unpack_header(cmd_buf)
        body = CODECS.decode_body(cmd_buf, stype, ctype, proto, Direction.TO_CLIENT)
        self.packets.put_nowait(Packet(stype, ctype, utag, proto, body))

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        raise AssertionError(f"service sent a malformed frame: {exc}")

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.closed.set()

    def send(self, ctype: int, body: Any, utag: int, proto: int = JSON, stype: int = T) -> None:
        assert self.link is not None
        cmd = CODECS.encode(stype, ctype, body, utag=utag, proto_type=proto, direction=0)
        self.link.send_raw(cmd)

    async def until_reply(self, ctype: int, utag: int) -> tuple[Packet, list[Packet]]:
        """Wait for the packet (ctype, utag); return it and every packet that came before."""
        before = []
        async with asyncio.timeout(5):
            while True:
                packet = await self.packets.get()
                if packet.ctype == ctype and packet.utag == utag:
                    return packet, before
                before.append(packet)

    async def request(
        self, ctype: int, body: Any, utag: int, proto: int = JSON
    ) -> tuple[Any, list[Packet]]:
        self.send(ctype, body, utag, proto)
        reply, before = await self.until_reply(ctype, utag)
        assert reply.proto_type == proto
        return reply.body, before

    async def sync(self, utag: int) -> list[Packet]:
        """Every packet queued before an INVALID_OPT round trip for ``utag``."""
        status, before = await self.request(TalkroomCmd.Enter, {"uname": ""}, utag)
        assert status == -100
        return before

    async def close(self) -> None:
        if self.link is not None:
            self.link.close(CloseReason.NORMAL)
            await self.link.wait_closed()


def arrived(utag: int, proto: int, name: str, sex: int) -> Packet:
    return Packet(T, TalkroomCmd.UserArrived, utag, proto, {"uname": name, "usex": sex})


def left(utag: int, proto: int, name: str, sex: int) -> Packet:
    return Packet(T, TalkroomCmd.UserExit, utag, proto, {"uname": name, "usex": sex})


async def test_users_behind_gateway_links_are_routed_by_utag() -> None:
    async with talkroom_server(()) as h:
        gw1 = await FakeGateway.connect(h.server.port)
        gw2 = await FakeGateway.connect(h.server.port)
        try:
            assert (await gw1.request(TalkroomCmd.Enter, {"uname": "u7", "usex": 0}, 7))[0] == 1
            body = {"uname": "u8", "usex": 1}
            assert (await gw1.request(TalkroomCmd.Enter, body, 8, BUF))[0] == 1
            # Another gateway link carries other users.
            assert (await gw2.request(TalkroomCmd.Enter, {"uname": "g2u17", "usex": 0}, 17))[0] == 1

            # Each push carries its recipient's utag and proto_type.
            assert await gw1.sync(9) == [
                arrived(7, JSON, "u8", 1),
                arrived(8, BUF, "u7", 0),
                arrived(7, JSON, "g2u17", 0),
                arrived(8, BUF, "g2u17", 0),
            ]
            assert await gw2.sync(19) == [arrived(17, JSON, "u7", 0), arrived(17, JSON, "u8", 1)]

            reply, _ = await gw2.request(TalkroomCmd.SendMsg, "hi 🎮", 17)
            assert reply == {"0": 1, "1": "g2u17", "2": 0, "3": "hi 🎮"}
            msg = {"0": "g2u17", "1": 0, "2": "hi 🎮"}
            assert await gw1.sync(9) == [
                Packet(T, TalkroomCmd.UserMsg, 7, JSON, msg),
                Packet(T, TalkroomCmd.UserMsg, 8, BUF, msg),
            ]

            # USER_DISCONNECT (gateway -> service) for utag 8 removes that user only.
            gw1.send(USER_DISCONNECT, None, 8)
            assert await gw1.sync(9) == [left(7, JSON, "u8", 1)]
            assert await gw2.sync(19) == [left(17, JSON, "u8", 1)]
            assert len(h.service.room) == 2

            # A heartbeat on the gateway link is echoed (liveness probe).
            gw1.send(1, None, 0, stype=Stype.Gateway)
            packet, before = await gw1.until_reply(1, 0)
            assert (packet.stype, before) == (Stype.Gateway, [])

            # The link drops: every user that came through it leaves, once.
            await gw1.close()
            push, before = await gw2.until_reply(TalkroomCmd.UserExit, 17)
            assert (push.body, before) == ({"uname": "u7", "usex": 0}, [])
            assert await gw2.sync(19) == []
            assert [m.uname for m in h.service.room.members.values()] == ["g2u17"]
        finally:
            await gw1.close()
            await gw2.close()


async def test_a_uid_arriving_through_another_link_replaces_its_old_presence() -> None:
    """A logged-in user is its uid, whatever gateway link carries it (docs/services.md,
    "Users"). When the uid shows up on another link (it logged in again through another
    gateway before the old gateway's USER_DISCONNECT arrived), the old presence leaves at
    once, and the late USER_DISCONNECT from the old link no longer touches the new one."""
    async with talkroom_server(()) as h:
        gw1 = await FakeGateway.connect(h.server.port)
        gw2 = await FakeGateway.connect(h.server.port)
        try:
            assert (await gw1.request(TalkroomCmd.Enter, {"uname": "old", "usex": 0}, 7))[0] == 1
            assert (await gw1.request(TalkroomCmd.Enter, {"uname": "w", "usex": 1}, 8))[0] == 1
            assert await gw1.sync(9) == [arrived(7, JSON, "w", 1), arrived(8, JSON, "old", 0)]
            # uid 7 again, through gw2: "old" leaves first, then the newcomer enters.
            assert (await gw2.request(TalkroomCmd.Enter, {"uname": "new", "usex": 1}, 7))[0] == 1
            assert await gw1.sync(9) == [left(8, JSON, "old", 0), arrived(8, JSON, "new", 1)]
            assert await gw2.sync(7) == [arrived(7, JSON, "w", 1)]
            # The old gateway's late USER_DISCONNECT(7) is about a presence already gone.
            gw1.send(USER_DISCONNECT, None, 7)
            assert await gw1.sync(9) == []
            assert [m.uname for m in h.service.room.members.values()] == ["w", "new"]
            # The same notice from the link that carries uid 7 now does remove it.
            gw2.send(USER_DISCONNECT, None, 7)
            assert await gw1.sync(9) == [left(8, JSON, "new", 1)]
        finally:
            await gw1.close()
            await gw2.close()


async def test_bad_body_from_gateway_link_keeps_the_link() -> None:
    """A malformed body on a gateway link is answered in kind (the talkroom's INVALID_OPT,
    so FIFO reply matching never slips) and counted; the link stays up (§6). A bad
    proto_type, which no gateway forwards, cannot be answered in it: counted only."""
    async with talkroom_server(()) as h:
        gw = await FakeGateway.connect(h.server.port)
        try:
            assert (await gw.request(TalkroomCmd.Enter, {"uname": "a", "usex": 0}, 5))[0] == 1
            assert gw.link is not None
            good = CODECS.encode(T, TalkroomCmd.SendMsg, "x", utag=5, direction=0)
            gw.link.send_raw(good[:-1] + b"]")  # {"0":"x"] is invalid JSON
            gw.link.send_raw(good[:-1] + b"\xff")  # invalid UTF-8
            gw.link.send_raw(b"\x01\x00\x05\x00\x05\x00\x00\x00\x03\x00")  # proto_type 3
            invalid = Packet(T, TalkroomCmd.SendMsg, 5, JSON, {"0": -100})
            assert await gw.sync(6) == [invalid, invalid]
            reply, _ = await gw.request(TalkroomCmd.SendMsg, "still up", 5)
            assert reply["0"] == 1
            assert not gw.link.closed
            errors = h.server.metrics.registry.get_sample_value
            assert errors("netbus_protocol_errors_total", {"kind": "bad_json"}) == 1
            assert errors("netbus_protocol_errors_total", {"kind": "bad_utf8"}) == 1
            assert errors("netbus_protocol_errors_total", {"kind": "bad_proto_type"}) == 1
            assert errors("netbus_dropped_total", {"reason": "bad_request"}) == 2
        finally:
            await gw.close()
