"""`netbus.client.Client` against real servers: the standalone talkroom and scripted raw peers.

The scripted peers are plain asyncio / websockets servers on loopback that answer with exact
bytes, so the client's handling of replies, notices and malformed input is checked without
any fake transport.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from netbus.client import Client
from netbus.errors import (
    ConnectionClosed,
    LoginRequired,
    RequestFailed,
    RequestTimeout,
    ServiceUnavailable,
)
from netbus.protocol import GatewayCmd, RequestStatus
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.guard import ListenerLimits
from netbus.transport.listener import ListenerSpec
from netbus.transport.reasons import CloseReason
from tests.helpers import BUF, CODECS, JSON, cmd_buf, frame, json_body, metric, talkroom_server

T = Stype.TalkRoom

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack("<H", await reader.readexactly(2))
    return await reader.readexactly(size - 2)


@asynccontextmanager
async def scripted_tcp_server(script: Script) -> AsyncIterator[str]:
    """A TCP server running ``script`` for each connection; yields its tcp:// URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        # The scripts end when their client hangs up; cancel only what a failure left behind.
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2)
            for task in stuck:
                task.cancel()
        await server.wait_closed()


def reply_frame(stype: int, ctype: int, body: object, proto: int = JSON) -> bytes:
    return frame(CODECS.encode(stype, ctype, body, proto_type=proto, direction=1))


# -------------------------------------------------------------- against the real server
@pytest.mark.parametrize("index", [0, 1], ids=["tcp", "ws"])
async def test_requests_are_matched_in_order_and_heartbeat_echoes(index: int) -> None:
    async with talkroom_server() as h:
        client = await h.connect(index, BUF)
        await client.heartbeat()  # the standalone host echoes gateway heartbeats
        assert await client.enter("fifo", 1) == 1
        texts = [f"n°{i} ✓" for i in range(10)]
        replies = await asyncio.gather(*(client.send_msg(t) for t in texts))
        assert [r["3"] for r in replies] == texts
        assert client.drain_pushes() == []


@pytest.mark.parametrize("index", [0, 1], ids=["tcp", "ws"])
async def test_unserved_requests_fail_and_a_server_close_fails_the_rest(index: int) -> None:
    async with talkroom_server() as h:
        client = await h.connect(index, JSON)
        # stype 99 is served by nobody here: answered REQUEST_FAILED, never left hanging.
        with pytest.raises(RequestFailed) as info:
            await client.request(99, 1, None)
        assert (info.value.stype, info.value.ctype) == (99, 1)
        assert info.value.status == RequestStatus.UNKNOWN_COMMAND
        with pytest.raises(RequestFailed) as info:
            await client.request(T, TalkroomCmd.UserMsg, None)  # a push, not a command
        assert info.value.status == RequestStatus.UNKNOWN_COMMAND
        assert all(not queue for queue in client._pending.values())
        assert client.drain_pushes() == []

        assert await client.enter("doomed", 0) == 1
        for link in h.server.client_host.links:
            link.close(CloseReason.NORMAL)
        await client.wait_closed()
        assert client.closed.is_set()
        with pytest.raises(ConnectionClosed):
            client.send(T, TalkroomCmd.Exit, None)
        with pytest.raises(ConnectionClosed):
            await client.exit()
        await client.close()  # idempotent
        await client.close()


@pytest.mark.parametrize("index", [0, 1], ids=["tcp", "ws"])
async def test_client_close_tells_the_room(index: int) -> None:
    async with talkroom_server() as h:
        stay = await h.connect(0, JSON)
        assert await stay.enter("stay", 0) == 1
        async with await Client.connect(h.url(index), proto_type=BUF, codecs=CODECS) as leaving:
            assert await leaving.enter("leaving", 1) == 1
        assert leaving.closed.is_set()
        assert (await stay.next_push(T, TalkroomCmd.UserArrived)).body["uname"] == "leaving"
        assert (await stay.next_push(T, TalkroomCmd.UserExit)).body["uname"] == "leaving"


async def test_unsupported_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        await Client.connect("http://127.0.0.1:1")


# -------------------------------------------------------------- against scripted peers
async def test_timeout_and_server_close_fail_pending_requests() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)  # never answered
        await read_frame(reader)
        writer.close()  # hang up with that request pending

    async with scripted_tcp_server(script) as url:
        client = await Client.connect(url)
        try:
            with pytest.raises(RequestTimeout):
                await client.request(99, 1, None, timeout=0.05)
            assert all(not queue for queue in client._pending.values())
            with pytest.raises(ConnectionClosed, match="connection closed"):
                await client.request(99, 1, None, timeout=10)
            assert isinstance(ConnectionClosed("x"), ConnectionError)  # documented family
        finally:
            await client.close()


async def test_gateway_refusals_fail_the_matching_request() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)  # SendMsg
        await read_frame(reader)  # Enter
        writer.write(reply_frame(0, GatewayCmd.SERVICE_UNAVAILABLE, {"stype": T, "ctype": 1}))
        writer.write(reply_frame(0, GatewayCmd.LOGIN_REQUIRED, {"stype": T, "ctype": 5}))
        await read_frame(reader)  # GUEST_LOGIN
        login = {"status": 1, "uid": 4242, "unick": "遊客123456", "usex": 0, "uface": 0}
        writer.write(reply_frame(Stype.Auth, AuthCmd.GUEST_LOGIN, login))
        await reader.read()

    async with scripted_tcp_server(script) as url:
        client = await Client.connect(url)
        try:
            send = asyncio.ensure_future(client.send_msg("x"))
            enter = asyncio.ensure_future(client.enter("x", 0))
            with pytest.raises(ServiceUnavailable) as unavailable:
                await enter
            assert (unavailable.value.stype, unavailable.value.ctype) == (T, 1)
            with pytest.raises(LoginRequired):
                await send
            reply = await client.guest_login("K" * 32)
            assert reply["uid"] == 4242
            assert client.uid == 4242
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00", "malformed frame"),
        (b"\x0b\x00" + bytes(9), "malformed frame"),
        (frame(cmd_buf(T, 6, JSON, json_body("{not json"))), "malformed packet"),
        (frame(cmd_buf(T, 6, 7, json_body('{"0":1}'))), "malformed packet"),
        (frame(cmd_buf(T, 6, BUF, b"\x01")), "malformed packet"),
    ],
    ids=["frame-length-0", "frame-length-11", "bad-json", "proto-type-7", "short-buf"],
)
async def test_malformed_input_from_the_server_closes_the_client(data: bytes, reason: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(reply_frame(T, TalkroomCmd.UserMsg, {"0": "ok", "1": 0, "2": "first"}))
        writer.write(data)
        await reader.read()

    async with scripted_tcp_server(script) as url:
        client = await Client.connect(url)
        try:
            pending = asyncio.ensure_future(client.exit())
            with pytest.raises(ConnectionError, match=reason):
                await pending
            assert reason in await client.wait_closed()
            # The push before the bad bytes is kept if it came in an earlier read (a read
            # that ends in bad bytes is dropped whole by FrameDecoder).
            pushes = client.drain_pushes()
            assert [p.body for p in pushes] in ([], [{"0": "ok", "1": 0, "2": "first"}])
        finally:
            await client.close()


async def test_ws_text_message_from_the_server_closes_the_client() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("surprise")
        await ws.wait_closed()

    async with ws_serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await Client.connect(f"ws://127.0.0.1:{port}/ws")
        try:
            with pytest.raises(ConnectionError, match="text message"):
                await client.exit()
            assert "text message" in await client.wait_closed()
        finally:
            await client.close()


async def test_ws_send_while_the_close_handshake_runs_raises_connection_error() -> None:
    """The server has sent its close frame but the TCP connection is still up.

    The client is closing, not closed: sending must still raise ConnectionError (the
    documented error), not websockets' InvalidState.
    """
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    async def half_closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = ServerProtocol()
        while ws.state is State.CONNECTING:
            ws.receive_data(await reader.read(4096))
            for event in ws.events_received():
                ws.send_response(ws.accept(event))  # type: ignore[arg-type]
        ws.send_close(1001, "going away")
        for data in ws.data_to_send():
            writer.write(data)
        await reader.read()  # keeps TCP open; ignores the client's close echo

    async with scripted_tcp_server(half_closer) as url:
        client = await Client.connect(url.replace("tcp://", "ws://") + "/ws")
        await _send_while_closing(client)


async def _send_while_closing(client: Client) -> None:
    from websockets.frames import Close
    from websockets.protocol import State

    try:
        assert client._ws is not None
        async with asyncio.timeout(5):
            while client._ws.protocol.state is State.OPEN:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        assert client._ws.protocol.close_rcvd == Close(1001, "going away")
        with pytest.raises(ConnectionError):
            client.send(T, TalkroomCmd.Exit, None)
        with pytest.raises(ConnectionError):
            await client.exit()
    finally:
        client._abort()
        await client.close()


# ------------------------------------------------------------------------------ heartbeats
async def test_heartbeats_are_sent_while_idle_and_echoes_are_not_pushes() -> None:
    beats = asyncio.Queue[bytes]()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await read_frame(reader)
            beats.put_nowait(data)
            writer.write(frame(data))  # echo, as a gateway does

    async with scripted_tcp_server(script) as url:
        client = await Client.connect(url, heartbeat=0.01)
        try:
            for _ in range(3):
                data = await asyncio.wait_for(beats.get(), 5)
                assert data == CODECS.encode(0, GatewayCmd.HEARTBEAT, None, direction=0)
            await client.heartbeat()  # an explicit round trip still resolves
            assert client.heartbeats_sent >= 3
            assert client.drain_pushes() == []
        finally:
            await client.close()
        assert client._beat is None  # no timer left behind


async def test_heartbeats_can_be_turned_off() -> None:
    async with talkroom_server() as h:
        client = await Client.connect(h.url(0), heartbeat=None)
        assert client._beat is None and client.heartbeat_interval is None
        await client.close()


async def test_a_silent_peer_is_found_dead_by_the_heartbeat_clock() -> None:
    """After the peer has echoed once, 2.5 intervals of silence close the connection. The
    clock is injected, so no test time passes waiting for it."""
    now = [1000.0]
    echoed = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(await read_frame(reader)))  # echo the first heartbeat only
        echoed.set()
        await reader.read()

    async with scripted_tcp_server(script) as url:
        client = await Client.connect(url, heartbeat=0.01, clock=lambda: now[0])
        try:
            await asyncio.wait_for(echoed.wait(), 5)
            async with asyncio.timeout(5):
                while not client._echo_seen:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            assert not client.closed.is_set()
            now[0] += 0.026  # more than 2.5 intervals without a byte
            reason = await client.wait_closed()
            assert "heartbeat timeout" in reason
        finally:
            await client.close()


async def test_idle_connection_survives_the_idle_timeout_with_heartbeats() -> None:
    """Issue 10 item 24: an idle client used to be cut at the listener's idle timeout."""
    limits = ListenerLimits(idle_timeout=0.4)
    async with talkroom_server([ListenerSpec("tcp", limits=limits)]) as h:
        beating = await Client.connect(h.url(0), heartbeat=0.08)
        silent = await Client.connect(h.url(0), heartbeat=None)
        try:
            await silent.wait_closed(timeout=5)
            assert metric(h.server, "netbus_dropped_total", reason="idle_timeout") == 1
            assert not beating.closed.is_set()
            assert await beating.enter("still here", 0) == 1
        finally:
            await beating.close()
            await silent.close()


# -------------------------------------------------------------------------- connect errors
async def test_connect_failures_raise_connection_closed_with_the_cause() -> None:
    async with talkroom_server() as h:
        port = h.port("tcp")
    with pytest.raises(ConnectionClosed, match="could not connect") as refused:
        await Client.connect(f"tcp://127.0.0.1:{port}")  # nobody listens any more
    assert isinstance(refused.value.__cause__, OSError)
    with pytest.raises(ConnectionClosed) as refused:
        await Client.connect(f"ws://127.0.0.1:{port}/ws")
    assert isinstance(refused.value.__cause__, OSError)

    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async with scripted_tcp_server(not_websocket) as url:
        with pytest.raises(ConnectionClosed) as refused:
            await Client.connect(url.replace("tcp://", "ws://") + "/ws")
        assert "websockets" in type(refused.value.__cause__).__module__

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the upgrade request, then close: no response at all

    async with scripted_tcp_server(hang_up) as url:
        with pytest.raises(ConnectionClosed):
            await Client.connect(url.replace("tcp://", "ws://") + "/ws")

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the upgrade

    async with scripted_tcp_server(stall) as url:
        with pytest.raises(ConnectionClosed, match="timed out") as slow:
            await Client.connect(url.replace("tcp://", "ws://") + "/ws", timeout=0.1)
        assert isinstance(slow.value.__cause__, TimeoutError)
