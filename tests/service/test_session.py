"""`Session` and `SessionTable`: sid/uid bookkeeping (no sockets) and utag handling on send.

The send tests use a `socket.socketpair()`: a real connected link with no port.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from netbus.protocol import Direction
from netbus.protocol.header import ProtoType, read_utag, unpack_header
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.session import Session, SessionTable
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink
from tests.helpers import CODECS


def unconnected() -> TcpLink:
    return TcpLink(None)  # type: ignore[arg-type]


def test_add_assigns_unique_sids_and_owner() -> None:
    table = SessionTable()
    links = [unconnected() for _ in range(3)]
    sessions = [table.add(link, is_client=True) for link in links]
    assert [s.sid for s in sessions] == [1, 2, 3]
    assert all(link.owner is s for link, s in zip(links, sessions, strict=True))
    assert len(table) == 3 and list(table) == sessions
    assert table.get(2) is sessions[1] and table.get(9) is None
    table.remove(sessions[1])
    table.remove(sessions[1])  # twice is harmless
    assert [s.sid for s in table] == [1, 3]
    assert table.add(unconnected(), is_client=True).sid == 4  # sids are never reused


def test_bind_uid_returns_the_displaced_session() -> None:
    table = SessionTable()
    old = table.add(unconnected(), is_client=True)
    new = table.add(unconnected(), is_client=True)
    assert table.bind_uid(old, 42) is None
    assert table.bind_uid(old, 42) is None  # same session again: nothing displaced
    assert table.bind_uid(new, 42) is old
    assert table.by_uid(42) is new
    assert table.logged_in == 1


def test_unbind_only_if_the_uid_still_points_at_that_session() -> None:
    table = SessionTable()
    old = table.add(unconnected(), is_client=True)
    new = table.add(unconnected(), is_client=True)
    table.bind_uid(old, 42)
    table.bind_uid(new, 42)
    # The kicked session closes later; its cleanup must not unbind the newer login.
    table.unbind_uid(old)
    table.remove(old)
    assert table.by_uid(42) is new
    table.remove(new)
    assert table.by_uid(42) is None and table.logged_in == 0


def test_rebinding_a_session_to_another_uid_drops_the_old_entry() -> None:
    table = SessionTable()
    session = table.add(unconnected(), is_client=True)
    table.bind_uid(session, 1)
    table.bind_uid(session, 2)
    assert table.by_uid(1) is None and table.by_uid(2) is session
    assert session.uid == 2 and table.logged_in == 1


def test_sending_on_an_unconnected_or_closed_link_returns_false() -> None:
    session = SessionTable().add(unconnected(), is_client=True)
    assert session.send_cmd(1, 1, 1) is False
    assert session.send_raw(b"\x00" * 10) is False
    session.close(CloseReason.SHUTDOWN)
    assert session.closed and session.link.close_reason is CloseReason.SHUTDOWN


class Sink:
    """LinkHandler that only records whether it was opened."""

    def link_opened(self, link: object) -> None:
        pass

    def packet_received(self, link: object, cmd_buf: bytearray) -> None:
        pass

    def link_closed(self, link: object, reason: str) -> None:
        pass

    def protocol_error(self, link: object, exc: object) -> None:
        pass


@pytest.fixture
async def wired() -> AsyncIterator[tuple[TcpLink, socket.socket]]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    link = TcpLink(Sink())
    await asyncio.get_running_loop().connect_accepted_socket(lambda: link, ours)
    yield link, theirs
    link.close()
    await link.wait_closed()
    theirs.close()


async def recv_cmd(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(5):
        while len(data) < 2 or len(data) < struct.unpack_from("<H", data)[0]:
            data += await loop.sock_recv(sock, 65536)
    (size,) = struct.unpack_from("<H", data)
    assert len(data) == size, "one frame expected"
    return data[2:]


async def test_towards_a_player_the_utag_is_always_zero(
    wired: tuple[TcpLink, socket.socket],
) -> None:
    link, peer = wired
    session = Session(1, link, is_client=True)
    tagged = CODECS.encode(1, TalkroomCmd.Enter, 1, utag=99, direction=Direction.TO_CLIENT)
    assert session.send_raw(tagged)
    assert read_utag(await recv_cmd(peer)) == 0
    assert session.send_cmd(1, TalkroomCmd.Enter, 1, utag=99)
    assert read_utag(await recv_cmd(peer)) == 0
    assert session.send_template(CODECS.encode(1, 3, {"uname": "x", "usex": 0}, direction=1), 99)
    assert read_utag(await recv_cmd(peer)) == 0
    assert link.stats.packets_out == 3


async def test_towards_a_gateway_the_utag_is_kept_and_templates_tagged(
    wired: tuple[TcpLink, socket.socket],
) -> None:
    link, peer = wired
    session = Session(1, link, is_client=False)
    template = CODECS.encode(
        1, TalkroomCmd.UserMsg, {"0": "a", "1": 0, "2": "m"}, proto_type=ProtoType.BUF, direction=1
    )
    assert session.send_template(template, 0xDEADBEEF)
    got = await recv_cmd(peer)
    assert unpack_header(got) == (1, TalkroomCmd.UserMsg, 0xDEADBEEF, ProtoType.BUF)
    assert got[10:] == template[10:]
    assert read_utag(template) == 0  # the shared template itself is untouched
    assert session.send_cmd(1, TalkroomCmd.Exit, 1, utag=7)
    assert read_utag(await recv_cmd(peer)) == 7
