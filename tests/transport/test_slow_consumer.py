"""Bounded output (STYLE.md §2.6): a member that never reads is cut off, nobody else notices.

The slow member is a raw socket with a tiny receive buffer that joins the room and then never
calls recv. The room gets busy; once the server's queue for that socket passes the listener's
``max_buffered_out`` the server closes that link. The test waits for that event (the link's
``wait_closed`` and the UserExit push), bounded by a deadline, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket

import pytest
from websockets.frames import Frame, Opcode

from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.listener import ListenerSpec
from netbus.transport.reasons import CloseReason
from tests.helpers import BUF, CODECS, JSON, frame, metric, sync, talkroom_server

T = Stype.TalkRoom
CAP = 64 * 1024
MSG = "z" * 8000


def enter_cmd(name: str) -> bytes:
    return CODECS.encode(T, TalkroomCmd.Enter, {"uname": name, "usex": 0}, direction=0)


def ws_handshake_and_enter(name: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    enter = Frame(Opcode.BINARY, enter_cmd(name)).serialize(
        mask=True, extensions=[]
    )  # a client's frames are masked
    return request + enter


async def open_non_reader(port: int, payload: bytes) -> socket.socket:
    """A connected socket with a tiny receive window that sends ``payload`` and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, payload)
    return sock


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_non_reading_member_is_disconnected_others_unaffected(kind: str) -> None:
    specs = [ListenerSpec("tcp", max_buffered_out=CAP), ListenerSpec("ws", max_buffered_out=CAP)]
    async with talkroom_server(specs, max_msg_len=len(MSG) + 16) as h:
        a = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        assert await a.enter("talker", 0) == 1
        assert await b.enter("listener", 1) == 1
        for client in (a, b):
            await sync(client)
            client.drain_pushes()

        port = h.port(kind)
        payload = (
            frame(enter_cmd("sloth")) if kind == "tcp" else ws_handshake_and_enter("sloth", port)
        )
        sock = await open_non_reader(port, payload)
        try:
            arrived = await a.next_push(T, TalkroomCmd.UserArrived)
            assert arrived.body["uname"] == "sloth"
            link = await h.tap.link_for(sock.getsockname())

            sent = 0
            async with asyncio.timeout(30):
                while not link.closed:
                    reply = await a.send_msg(f"{sent:05d}{MSG}")
                    assert reply["0"] == 1
                    sent += 1
                    # The cap is a ceiling: the queue never grew far past it.
                    assert link.buffered_out <= CAP + 2 * len(MSG)
                await link.wait_closed()
            assert link.close_reason is CloseReason.SLOW_CONSUMER
            assert metric(h.server, "netbus_dropped_total", reason="slow_consumer") == 1

            # Everyone else got every message exactly once, and the UserExit.
            gone = await a.next_push(T, TalkroomCmd.UserExit)
            assert gone.body == {"uname": "sloth", "usex": 0}
            await sync(b)
            pushes = b.drain_pushes()
            msgs = [p.body["2"][:5] for p in pushes if p.ctype == TalkroomCmd.UserMsg]
            assert msgs == [f"{i:05d}" for i in range(sent)]
            assert [p.body["uname"] for p in pushes if p.ctype != TalkroomCmd.UserMsg] == [
                "sloth",
                "sloth",
            ]
            assert [m.uname for m in h.service.room.members.values()] == ["talker", "listener"]
            assert (await b.send_msg("still fine"))["0"] == 1
            assert (await a.next_push(T, TalkroomCmd.UserMsg)).body["2"] == "still fine"
        finally:
            sock.close()
