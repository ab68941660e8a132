"""Hostile input over real sockets costs at most that one connection (PROTOCOL.md §6).

Each test runs a room where two well-behaved clients (TCP+JSON and WS+BUF) chat, lets a
hostile peer join the room over a raw socket, makes it misbehave, and then checks that: the
hostile connection (and only it) is closed, the others were told it left, the others still
chat both ways, and the rejection was counted on the link and in the metrics by kind.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from netbus.client import Client
from netbus.protocol import USER_DISCONNECT, Direction
from netbus.protocol.header import unpack_header
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.listener import ListenerSpec
from tests.helpers import (
    BUF,
    CODECS,
    JSON,
    TalkroomHarness,
    buf_str,
    cmd_buf,
    expect_reset_or_eof,
    frame,
    json_body,
    metric,
    sync,
    talkroom_server,
)

T = Stype.TalkRoom
MAX = 1024  #: the listeners' lowered max_cmd_buf
ERRORS = "netbus_protocol_errors_total"


def enter_cmd(name: str, proto: int = JSON) -> bytes:
    return CODECS.encode(
        T, TalkroomCmd.Enter, {"uname": name, "usex": 0}, proto_type=proto, direction=0
    )


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack("<H", await reader.readexactly(2))
    return await reader.readexactly(size - 2)


async def read_reply(reader: asyncio.StreamReader, ctype: int) -> object:
    """Skip pushes until the reply with ``ctype``; return its decoded body."""
    async with asyncio.timeout(5):
        while True:
            data = await read_frame(reader)
            stype, got, _, proto = unpack_header(data)
            if got == ctype:
                return CODECS.decode_body(data, stype, got, proto, Direction.TO_CLIENT)


@asynccontextmanager
async def chatting_room() -> AsyncIterator[tuple[TalkroomHarness, Client, Client]]:
    specs = (ListenerSpec("tcp", max_cmd_buf=MAX), ListenerSpec("ws", max_cmd_buf=MAX))
    async with talkroom_server(specs) as h:
        a = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        assert await a.enter("alice", 0) == 1
        assert await b.enter("bob", 1) == 1
        await sync(a)
        await sync(b)
        a.drain_pushes()
        b.drain_pushes()
        yield h, a, b


async def still_chatting(a: Client, b: Client, tag: str) -> None:
    """a and b exchange one message each way; each gets exactly that one push."""
    assert (await a.send_msg(f"{tag}: a→b ✓"))["0"] == 1
    assert (await b.send_msg(f"{tag}: b→a ✓"))["0"] == 1
    for client, sender, name, sex in ((b, "a→b", "alice", 0), (a, "b→a", "bob", 1)):
        await sync(client)
        got = [(p.ctype, p.body) for p in client.drain_pushes()]
        assert got == [(TalkroomCmd.UserMsg, {"0": name, "1": sex, "2": f"{tag}: {sender} ✓"})]


async def saw(a: Client, b: Client, *pushes: tuple[int, str]) -> None:
    """a and b got exactly these (ctype, uname) pushes, in order."""
    for client in (a, b):
        for ctype, name in pushes:
            push = await client.next_push()
            assert (push.ctype, push.body) == (ctype, {"uname": name, "usex": 0})


async def saw_arrive_and_leave(a: Client, b: Client, name: str) -> None:
    await saw(a, b, (TalkroomCmd.UserArrived, name), (TalkroomCmd.UserExit, name))


async def raw_tcp_member(
    h: TalkroomHarness, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Link]:
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port("tcp"))
    writer.write(frame(enter_cmd(name)))
    assert await read_reply(reader, TalkroomCmd.Enter) == 1
    link = await h.tap.link_for(writer.get_extra_info("sockname"))
    return reader, writer, link


def body_cmd(ctype: int, proto: int, body: bytes) -> bytes:
    return frame(cmd_buf(T, ctype, proto, body))


TCP_CASES = [
    pytest.param(b"\x00\x00", "frame_length", id="frame-length-0"),
    pytest.param(b"\x01\x00", "frame_length", id="frame-length-1"),
    pytest.param(b"\x0b\x00" + bytes(9), "frame_length", id="frame-length-11-below-header"),
    pytest.param(struct.pack("<H", MAX + 3), "frame_length", id="oversize-before-body"),
    pytest.param(b"\xff\xff", "frame_length", id="frame-length-65535-over-listener-max"),
    pytest.param(frame(cmd_buf(T, 5, JSON)), "short_body", id="json-header-only"),
    pytest.param(
        body_cmd(5, JSON, json_body('{"0":"hello"}', count=50)), "json_length", id="json-count"
    ),
    pytest.param(body_cmd(1, JSON, json_body('{"0":{"uname":')), "bad_json", id="json-truncated"),
    pytest.param(body_cmd(5, JSON, json_body("{0:1}")), "bad_json", id="json-invalid"),
    pytest.param(body_cmd(5, JSON, json_body("[1, 2]")), "bad_json", id="json-not-object"),
    pytest.param(body_cmd(5, JSON, json_body('"0"')), "bad_json", id="json-string-not-object"),
    pytest.param(body_cmd(5, JSON, json_body('{"1": "x"}')), "bad_json", id="json-no-key-0"),
    pytest.param(body_cmd(5, JSON, json_body(b'{"0":"\xff"}')), "bad_utf8", id="json-bad-utf8"),
    pytest.param(body_cmd(5, BUF, buf_str(b"\xc3\x28")), "bad_utf8", id="buf-str-bad-utf8"),
    pytest.param(body_cmd(5, BUF, buf_str(b"\xed\xa0\x80")), "bad_utf8", id="buf-surrogate"),
    pytest.param(body_cmd(5, BUF, b"\x09\x00abc"), "short_body", id="buf-str-overruns"),
    pytest.param(body_cmd(1, BUF, b"\x05"), "short_body", id="buf-too-short"),
    pytest.param(body_cmd(2, BUF, b"\x00"), "long_body", id="buf-too-long"),
    pytest.param(body_cmd(1, 3, json_body('{"0":null}')), "bad_proto_type", id="proto-type-3"),
    pytest.param(body_cmd(1, 0, json_body('{"0":null}')), "bad_proto_type", id="proto-type-0"),
]


@pytest.mark.parametrize(("payload", "kind"), TCP_CASES)
async def test_tcp_hostile_packet_costs_only_its_connection(payload: bytes, kind: str) -> None:
    async with chatting_room() as (h, a, b):
        reader, writer, link = await raw_tcp_member(h, "mallory")
        writer.write(payload)
        await expect_reset_or_eof(reader)
        await link.wait_closed()
        writer.close()

        assert link.stats.protocol_errors == 1
        assert metric(h.server, ERRORS, kind=kind) == 1
        await saw_arrive_and_leave(a, b, "mallory")
        await still_chatting(a, b, kind)
        assert [m.uname for m in h.service.room.members.values()] == ["alice", "bob"]


async def test_tcp_good_frame_then_bad_frame_in_one_write() -> None:
    """A bad frame after a good one in the same write: the connection goes, nothing else.

    Whether the good frame is served depends on how the kernel cuts the stream (FrameDecoder
    drops the frames it completed in the read that also holds the bad length), so both
    outcomes are accepted; frames after the bad one are never served.
    """
    async with chatting_room() as (h, a, b):
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port("tcp"))
        writer.write(frame(enter_cmd("eve")) + b"\x00\x00" + frame(enter_cmd("never")))
        await expect_reset_or_eof(reader)
        writer.close()
        assert metric(h.server, ERRORS, kind="frame_length") == 1
        await still_chatting(a, b, "after eve")  # a and b had no pushes but the chat
        for client in (a, b):
            await sync(client)
            pushes = [(p.ctype, p.body["uname"]) for p in client.drain_pushes()]
            assert pushes in ([], [(3, "eve"), (4, "eve")]), pushes
        assert [m.uname for m in h.service.room.members.values()] == ["alice", "bob"]


async def test_tcp_unknown_stype_and_forged_control_keep_the_connection() -> None:
    """Packets that are well-formed but undeliverable are answered REQUEST_FAILED (or, for a
    forged gateway notice, refused) and counted, not fatal."""
    async with chatting_room() as (h, a, b):
        reader, writer, link = await raw_tcp_member(h, "curious")
        await saw(a, b, (TalkroomCmd.UserArrived, "curious"))
        writer.write(frame(cmd_buf(99, 1, JSON, json_body('{"0":null}'))))
        writer.write(frame(cmd_buf(T, USER_DISCONNECT, JSON, json_body('{"0":null}'))))
        writer.write(frame(cmd_buf(T, 77, JSON, json_body('{"0":null}'))))  # unknown ctype
        writer.write(body_cmd(3, BUF, b""))  # a push's ctype: not a command either
        writer.write(frame(enter_cmd("")))  # a round trip: INVALID_OPT
        assert await read_reply(reader, TalkroomCmd.Enter) == -100
        assert not link.closed
        assert link.stats.protocol_errors == 0
        assert metric(h.server, "netbus_dropped_total", reason="unknown_stype") == 1
        assert metric(h.server, "netbus_dropped_total", reason="forged_control") == 1
        assert metric(h.server, "netbus_dropped_total", reason="unknown_command") == 2
        # The forged USER_DISCONNECT did not remove anybody.
        assert len(h.service.room) == 3
        await still_chatting(a, b, "after curious")
        writer.close()
        await link.wait_closed()
        await saw(a, b, (TalkroomCmd.UserExit, "curious"))


async def test_tcp_stalled_half_frame_does_not_block_others() -> None:
    async with chatting_room() as (h, a, b):
        reader, writer, link = await raw_tcp_member(h, "staller")
        await saw(a, b, (TalkroomCmd.UserArrived, "staller"))
        whole = frame(CODECS.encode(T, TalkroomCmd.SendMsg, "finally 🐢", direction=0))
        writer.write(whole[:1])  # a first read of a single byte
        await writer.drain()
        for i in range(3):
            await still_chatting(a, b, f"stall {i}")
        writer.write(whole[1:9])
        await writer.drain()
        await still_chatting(a, b, "stall 3")
        assert not link.closed
        writer.write(whole[9:])
        assert await read_reply(reader, TalkroomCmd.SendMsg) == {
            "0": 1,
            "1": "staller",
            "2": 0,
            "3": "finally 🐢",
        }
        for client in (a, b):
            push = await client.next_push(T, TalkroomCmd.UserMsg)
            assert push.body == {"0": "staller", "1": 0, "2": "finally 🐢"}
        assert link.stats.protocol_errors == 0
        writer.close()
        await link.wait_closed()
        await saw(a, b, (TalkroomCmd.UserExit, "staller"))


async def test_tcp_frames_split_and_coalesced_anyhow() -> None:
    """Frames cut at every byte boundary and many frames per write all decode."""
    async with chatting_room() as (h, a, b):
        reader, writer, link = await raw_tcp_member(h, "splitter")
        stream = b"".join(
            frame(CODECS.encode(T, TalkroomCmd.SendMsg, f"part {i} ✂", direction=0))
            for i in range(6)
        )
        for i in range(0, len(stream), 7):
            writer.write(stream[i : i + 7])
            await writer.drain()
        for i in range(6):
            reply = await read_reply(reader, TalkroomCmd.SendMsg)
            assert reply == {"0": 1, "1": "splitter", "2": 0, "3": f"part {i} ✂"}
        for client in (a, b):
            await sync(client)
            got = [p.body["2"] for p in client.drain_pushes() if p.ctype == TalkroomCmd.UserMsg]
            assert got == [f"part {i} ✂" for i in range(6)]
        writer.close()
        await link.wait_closed()


async def test_many_hostile_tcp_peers_at_once() -> None:
    """Every TCP case at the same time, while the room keeps chatting."""
    async with chatting_room() as (h, a, b):
        peers = [await raw_tcp_member(h, f"m{i}") for i in range(len(TCP_CASES))]
        await saw(a, b, *((TalkroomCmd.UserArrived, f"m{i}") for i in range(len(TCP_CASES))))
        for (_, writer, _), case in zip(peers, TCP_CASES, strict=True):
            writer.write(case.values[0])
        assert (await a.send_msg("under attack"))["0"] == 1
        for reader, writer, link in peers:
            await expect_reset_or_eof(reader)
            await link.wait_closed()
            writer.close()
        everyone = sorted((TalkroomCmd.UserExit, f"m{i}") for i in range(len(TCP_CASES)))
        for client, chat in ((a, []), (b, [(TalkroomCmd.UserMsg, "under attack")])):
            await sync(client)
            got = [
                (p.ctype, p.body["uname"] if p.ctype == TalkroomCmd.UserExit else p.body["2"])
                for p in client.drain_pushes()
            ]
            assert sorted(got) == sorted(everyone + chat)
        await still_chatting(a, b, "after attack")
        assert [m.uname for m in h.service.room.members.values()] == ["alice", "bob"]
        total = sum(
            s.value
            for m in h.server.metrics.registry.collect()
            if m.name == "netbus_protocol_errors"
            for s in m.samples
            if s.name == ERRORS
        )
        assert total == len(TCP_CASES)


# ----------------------------------------------------------------------------- WebSocket
async def raw_ws_member(h: TalkroomHarness, name: str) -> tuple[ClientConnection, Link]:
    ws = await ws_connect(
        f"ws://127.0.0.1:{h.port('ws')}/ws", compression=None, max_size=None, ping_interval=None
    )
    await ws.send(enter_cmd(name, BUF))
    reply = await ws.recv()
    assert isinstance(reply, bytes)
    assert reply == CODECS.encode(T, 1, 1, proto_type=BUF, direction=1)
    link = await h.tap.link_for(ws.local_address)
    return ws, link


async def closed_with(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    async with asyncio.timeout(5):
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


WS_CASES = [
    pytest.param("a text message", 1003, "ws_text", id="text-message"),
    pytest.param(bytes(MAX + 1), 1009, "ws_too_big", id="message-over-max"),
    pytest.param([bytes(600), bytes(600)], 1009, "ws_too_big", id="fragments-over-max"),
    pytest.param(bytes(5), 1008, "short_header", id="message-below-header"),
    pytest.param(cmd_buf(T, 5, JSON, json_body("{0:1}")), 1008, "bad_json", id="json-invalid"),
    pytest.param(cmd_buf(T, 5, JSON, json_body("[]")), 1008, "bad_json", id="json-not-object"),
    pytest.param(cmd_buf(T, 5, BUF, buf_str(b"\xff\xfe")), 1008, "bad_utf8", id="buf-str-bad-utf8"),
    pytest.param(cmd_buf(T, 1, 3, json_body('{"0":1}')), 1008, "bad_proto_type", id="proto-3"),
]


@pytest.mark.parametrize(("message", "code", "kind"), WS_CASES)
async def test_ws_hostile_message_costs_only_its_connection(
    message: str | bytes | list[bytes], code: int, kind: str
) -> None:
    async with chatting_room() as (h, a, b):
        ws, link = await raw_ws_member(h, "wsmallory")
        await ws.send(message)
        assert await closed_with(ws) == code
        await link.wait_closed()
        await ws.close()

        assert link.stats.protocol_errors == 1
        assert metric(h.server, ERRORS, kind=kind) == 1
        await saw_arrive_and_leave(a, b, "wsmallory")
        await still_chatting(a, b, kind)


async def test_ws_fragmented_message_within_max_is_one_cmd_buf() -> None:
    async with chatting_room() as (h, a, b):
        ws, link = await raw_ws_member(h, "fragger")
        cmd = CODECS.encode(T, TalkroomCmd.SendMsg, "frag 🧩", proto_type=BUF, direction=0)
        await ws.send([cmd[:3], cmd[3:11], cmd[11:]])
        async with asyncio.timeout(5):
            while True:
                data = await ws.recv()
                assert isinstance(data, bytes)
                if data[2] == TalkroomCmd.SendMsg:
                    break
        assert CODECS.decode_body(data, T, 5, BUF, Direction.TO_CLIENT)["3"] == "frag 🧩"
        for client in (a, b):
            assert (await client.next_push(T, TalkroomCmd.UserMsg)).body["2"] == "frag 🧩"
        await ws.close()
        await link.wait_closed()
        assert link.stats.protocol_errors == 0


async def test_ws_garbage_instead_of_handshake() -> None:
    async with chatting_room() as (h, a, b):
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port("ws"))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no Upgrade headers
        data = await expect_reset_or_eof(reader)
        assert data.startswith(b"HTTP/1.1 4")
        writer.close()
        await still_chatting(a, b, "after bad handshake")
