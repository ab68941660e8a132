"""Fuzzing a live cluster through its gateway: hostile bytes in, nothing lost, nobody let in.

Hypothesis generates connection scenarios, each run over a real socket against real role
processes: valid headers with hostile JSON and BUF bodies for stypes 0, 1, 2 and random
ones, random ctypes (10000 and the rest of the gateway-only range included), forged utags
(the well-behaved clients' uids among them), mutated valid packets, random bytes, random
split points, frame lengths below 12 and above the listener's limit, WebSocket text and
oversized messages, garbage instead of a WebSocket handshake. Some scenarios log in first
(and enter the room), so their hostile talkroom packets reach the talkroom.

Meanwhile two well-behaved clients (TCP/JSON and WS/BUF, logged in, in the room) chat
through the same gateway and must get a correct reply to every request. At the end: every
role is alive, the gateway is back to its baseline connections and logins (/healthz), its
memory is near its start, the room holds exactly the two well-behaved clients, and nothing
they received was addressed to someone else or sent in their name.

The budget is ``NETBUS_FUZZ_SECONDS`` (default 15 s); each scenario is bounded on its own.
Scenarios run one after another in a worker thread (blocking sockets), the well-behaved
clients on the test's event loop. Shrinking is off: the target is a live, stateful cluster,
so a failing scenario is reported as generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from netbus.client import Client
from netbus.protocol import GatewayCmd
from netbus.protocol.header import MAX_CMD_BUF
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.e2e.helpers import Clients, new_key, new_name, room_members

from .harness import (
    BUF,
    JSON,
    HardCluster,
    MiB,
    cmd,
    decode,
    eventually,
    metric_value,
    pack_header,
    vm_rss,
)

FUZZ_SECONDS = float(os.environ.get("NETBUS_FUZZ_SECONDS", "15"))
SMALL_MAX = 1024  #: max_cmd_buf of the fuzz-only listeners, so "too long" is cheap to send
RSS_SLACK = 30 * MiB
EXAMPLES_PER_ROUND = 25
LENGTH = struct.Struct("<H")

pytestmark = pytest.mark.timeout(FUZZ_SECONDS + 120)


@pytest.fixture(scope="module")
def module_cluster_options() -> dict[str, Any]:
    return {
        "listeners": {
            "tcp_small": {"kind": "tcp", "max_cmd_buf": SMALL_MAX},
            "ws_small": {"kind": "ws", "max_cmd_buf": SMALL_MAX},
        }
    }


# --------------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    listener: str  #: "tcp", "ws", "tcp_small", "ws_small", "ws_raw" (no handshake)
    login: int | None  #: index into the fuzzers' key pool
    enter: int | None  #: proto_type of a valid Enter after login
    payload: list[Any]  #: TCP: byte pieces sent one by one; WS: messages (bytes or str)
    pause: bool  #: sleep a millisecond between pieces
    linger: float  #: seconds spent reading replies before closing
    close: str  #: "close", "abort" (RST) or "half" (shutdown write side, then read)


def _json_text(value: Any) -> bytes:
    return orjson.dumps({"0": value})


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)
hostile_names = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.builds(lambda n: "x" * n, st.integers(30, 70)),
)
command_values = st.one_of(
    st.fixed_dictionaries(
        {"uname": hostile_names, "usex": st.one_of(st.integers(-3, 3), st.text(max_size=2))}
    ),
    st.text(alphabet="ABCxyz019_-", min_size=10, max_size=70),  # guest-key-ish strings
    st.builds(lambda n, c: c * n, st.integers(900, 1500), st.sampled_from("a遊😀")),  # msgs
)


def json_bodies() -> st.SearchStrategy[bytes]:
    valid = st.one_of(json_values, command_values).map(_json_text)
    raw_text = st.one_of(
        valid.map(lambda t: t[: len(t) // 2]),  # truncated
        st.binary(max_size=60),
        st.sampled_from(
            [
                b"",
                b"[1]",
                b'"0"',
                b"null",
                b'{"1":2}',
                b'{"0":NaN}',
                b'{"0":1e400}',
                b'{"0":"\\ud800"}',
                b'{"0":123456789012345678901234567890}',
                b'{"0":"\xff"}',
                b'{"0":"\xed\xa0\x80"}',
                b"\xef\xbb\xbf{}",
            ]
        ),
    )
    counted = st.one_of(valid, raw_text).map(lambda t: LENGTH.pack(len(t)) + t)
    miscounted = st.tuples(st.one_of(valid, raw_text), st.integers(-5, 5)).map(
        lambda p: LENGTH.pack((len(p[0]) + p[1]) % 65536) + p[0]
    )
    return st.one_of(counted, counted, miscounted, st.binary(max_size=1))


def _bufstr(data: bytes, lie: int) -> bytes:
    return LENGTH.pack((len(data) + lie) % 65536) + data


buf_bodies = st.one_of(
    st.binary(max_size=48),
    st.builds(
        lambda s, lie, tail: _bufstr(s.encode(), lie) + tail,
        st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
        st.sampled_from([0, 0, 0, -1, 1, 300]),
        st.sampled_from([b"", b"\x00\x00", b"\x01\x00", b"\xff\xff", b"\x01"]),
    ),
    st.builds(
        lambda raw: _bufstr(raw, 0), st.sampled_from([b"\xc3(", b"\xc0\x80", b"\xed\xa0\x80"])
    ),
)
big_bodies = st.builds(
    lambda n, fill, head: head + fill * n,
    st.integers(900, MAX_CMD_BUF),
    st.sampled_from([b"a", b"\x00", b"\xff"]),
    st.sampled_from([b"", b"\xff\xff", b'\x00\x10{"0":"']),
)


def packets(forged_utags: list[int]) -> st.SearchStrategy[bytes]:
    stypes = st.one_of(
        st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 2]), st.integers(0, 0xFFFF)
    )
    ctypes = st.one_of(
        st.integers(0, 8),
        st.sampled_from([10000, 10001, 10500, 10999, 11000, 0xFFFF]),
        st.integers(0, 0xFFFF),
    )
    utags = st.one_of(
        st.just(0),
        st.sampled_from([*forged_utags, 1, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF]),
        st.integers(0, 2**32 - 1),
    )
    protos = st.one_of(st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.integers(0, 0xFFFF))
    header = st.builds(pack_header, stypes, ctypes, utags, protos)
    body = st.one_of(json_bodies(), buf_bodies, st.just(b""), big_bodies)
    generated = st.builds(lambda h, b: (h + b)[:MAX_CMD_BUF], header, body)
    return st.one_of(generated, generated, mutated(forged_utags), st.binary(max_size=12))


def service_packets(forged_utags: list[int]) -> st.SearchStrategy[bytes]:
    """Valid headers for the real services (and stype 0) with hostile bodies: these pass
    the gateway and reach the talkroom and the center, which must answer or drop them."""
    header = st.builds(
        pack_header,
        st.sampled_from([0, 1, 1, 1, 2]),
        st.one_of(st.integers(0, 8), st.just(10000)),
        st.one_of(st.just(0), st.sampled_from(forged_utags)),
        st.sampled_from([1, 2]),
    )
    body = st.one_of(json_bodies(), json_bodies(), buf_bodies, st.just(b""), big_bodies)
    return st.builds(lambda h, b: (h + b)[:MAX_CMD_BUF], header, body)


TEMPLATES = [
    cmd(Stype.Auth, AuthCmd.GUEST_LOGIN, "0123456789abcdefABCDEF_-ghijklmn"),
    cmd(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": "遊客", "usex": 1}),
    cmd(Stype.TalkRoom, TalkroomCmd.Enter, {"uname": "遊客", "usex": 1}, BUF),
    cmd(Stype.TalkRoom, TalkroomCmd.Exit, None),
    cmd(Stype.TalkRoom, TalkroomCmd.Exit, None, BUF),
    cmd(Stype.TalkRoom, TalkroomCmd.SendMsg, "hi 😀"),
    cmd(Stype.TalkRoom, TalkroomCmd.SendMsg, "hi 😀", BUF),
    cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None),
    cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None, BUF),
    cmd(Stype.TalkRoom, 10000, None),
]


def mutated(forged_utags: list[int]) -> st.SearchStrategy[bytes]:
    """A valid packet with a few byte-level edits."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        buf = bytearray(draw(st.sampled_from(TEMPLATES)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "append", "insert", "utag", "u16"]))
            pos = draw(st.integers(0, max(0, len(buf) - 1)))
            if op == "flip" and buf:
                buf[pos] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del buf[pos:]
            elif op == "append":
                buf += draw(st.binary(min_size=1, max_size=8))
            elif op == "insert":
                buf[pos:pos] = draw(st.binary(min_size=1, max_size=4))
            elif op == "utag" and len(buf) >= 8:
                utag = draw(st.sampled_from([*forged_utags, 0x80000001, 0xFFFFFFFF]))
                buf[4:8] = struct.pack("<I", utag)
            elif op == "u16" and len(buf) >= pos + 2:
                buf[pos : pos + 2] = LENGTH.pack(draw(st.integers(0, 0xFFFF)))
        return bytes(buf)

    return build()


def tcp_stream(
    pkts: st.SearchStrategy[bytes], max_cmd_buf: int, *, clean: bool = False
) -> st.SearchStrategy[bytes]:
    """Frames of ``pkts`` (``clean``: only those), else mixed with bad lengths and noise."""
    framed = pkts.map(lambda p: LENGTH.pack(len(p) + 2) + p)
    if clean:
        return st.lists(framed, min_size=1, max_size=12).map(b"".join)
    too_short = st.builds(
        lambda n, b: LENGTH.pack(n) + b, st.integers(0, 11), st.binary(max_size=12)
    )
    too_long = st.builds(
        lambda n, b: LENGTH.pack(n) + b,
        st.integers(min(max_cmd_buf + 3, 65535), 65535),
        st.binary(max_size=16),
    )
    chunk = st.one_of(
        framed, framed, framed, too_short, too_long, st.binary(min_size=1, max_size=64)
    )
    return st.lists(chunk, min_size=1, max_size=8).map(b"".join)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    if len(data) < 2 or draw(st.booleans()):
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=6))))
    if draw(st.booleans()):
        cuts = sorted({1, *cuts})  # a first read of one byte
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def scenarios(forged_utags: list[int], key_pool: int) -> st.SearchStrategy[Scenario]:
    hostile = packets(forged_utags)
    to_services = service_packets(forged_utags)

    @st.composite
    def build(draw: st.DrawFn) -> Scenario:
        listener = draw(st.sampled_from(["tcp", "ws", "tcp_small", "ws_small", "tcp", "ws_raw"]))
        login = draw(st.one_of(st.none(), st.integers(0, key_pool - 1)))
        enter = draw(st.sampled_from([None, JSON, BUF])) if login is not None else None
        pkts = st.one_of(hostile, to_services, to_services) if login is not None else hostile
        if listener.startswith("tcp"):
            limit = SMALL_MAX if listener == "tcp_small" else MAX_CMD_BUF
            clean = login is not None and draw(st.booleans())
            payload: list[Any] = draw(split(draw(tcp_stream(pkts, limit, clean=clean))))
        elif listener == "ws_raw":
            handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            payload = [draw(st.one_of(st.binary(min_size=1, max_size=200), st.just(handshake)))]
        else:
            special = st.one_of(
                st.text(max_size=20),  # a text message: a protocol error
                st.builds(lambda n: b"\x00" * n, st.integers(MAX_CMD_BUF + 1, MAX_CMD_BUF + 64)),
                st.builds(lambda n: b"\x01" * n, st.integers(SMALL_MAX + 1, SMALL_MAX + 64)),
                st.binary(max_size=9),  # shorter than a header
            )
            payload = draw(st.lists(st.one_of(pkts, pkts, pkts, special), min_size=1, max_size=6))
        return Scenario(
            listener=listener,
            login=login,
            enter=enter,
            payload=payload,
            pause=draw(st.booleans()),
            linger=draw(st.sampled_from([0.0, 0.0, 0.02, 0.1])),
            close=draw(st.sampled_from(["close", "abort", "half"])),
        )

    return build()


# -------------------------------------------------------------------- blocking clients
class BlockingTcp:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_frame(self, deadline: float) -> tuple[int, int, Any, int] | None:
        while True:
            if len(self.buf) >= 2:
                (length,) = LENGTH.unpack_from(self.buf)
                if len(self.buf) >= length:
                    cmd_buf, self.buf = self.buf[2:length], self.buf[length:]
                    return decode(cmd_buf)
            if not self._fill(deadline):
                return None

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.read_frame(deadline) is not None:
            pass

    def close(self, how: str) -> None:
        with contextlib.suppress(OSError):
            if how == "abort":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "half":
                self.sock.shutdown(socket.SHUT_WR)
                self.drain(1.0)
        self.sock.close()


def await_reply(read: Any, stype: int, ctype: int, what: str) -> Any:
    """Read until the (stype, ctype) packet; fail if the gateway never sends it."""
    deadline = time.monotonic() + 5.0
    while True:
        got = read(deadline)
        assert got is not None, f"no {what} reply within 5 s (connection closed or silent)"
        if got[:2] == (stype, ctype):
            return got[2]


@dataclass
class FuzzStats:
    scenarios: int = 0
    logins: int = 0
    entered: int = 0
    by_listener: Counter[str] = field(default_factory=Counter)


class Fuzzer:
    """Runs scenarios against the cluster (in a worker thread, blocking sockets)."""

    def __init__(self, cluster: HardCluster, keys: list[str]) -> None:
        self.cluster = cluster
        self.keys = keys
        self.stats = FuzzStats()

    def run(self, scenario: Scenario) -> None:
        self.stats.scenarios += 1
        self.stats.by_listener[scenario.listener] += 1
        if scenario.listener.startswith("tcp"):
            self._tcp(scenario)
        elif scenario.listener == "ws_raw":
            self._ws_raw(scenario)
        else:
            self._ws(scenario)
        dead = self.cluster.dead_roles()
        assert not dead, f"a role died: {dead}\n{self.cluster.logs()}"

    def _tcp(self, sc: Scenario) -> None:
        conn = BlockingTcp(self.cluster.listener_ports[sc.listener])
        try:
            if sc.login is not None:
                conn.send(_frame(cmd(Stype.Auth, AuthCmd.GUEST_LOGIN, self.keys[sc.login])))
                reply = await_reply(conn.read_frame, Stype.Auth, AuthCmd.GUEST_LOGIN, "login")
                assert reply.get("status") == 1, reply
                self.stats.logins += 1
                if sc.enter is not None:
                    body = {"uname": new_name("fz"), "usex": 0}
                    conn.send(_frame(cmd(Stype.TalkRoom, TalkroomCmd.Enter, body, sc.enter)))
                    status = await_reply(
                        conn.read_frame, Stype.TalkRoom, TalkroomCmd.Enter, "Enter"
                    )
                    assert status == TalkroomStatus.OK, status
                    self.stats.entered += 1
            for piece in sc.payload:
                if not conn.send(piece):
                    break
                if sc.pause:
                    time.sleep(0.001)
            if sc.linger:
                conn.drain(sc.linger)
        finally:
            conn.close(sc.close)

    def _ws(self, sc: Scenario) -> None:
        port = self.cluster.listener_ports[sc.listener]
        url = f"ws://127.0.0.1:{port}/ws"
        with ws_connect(
            url, compression=None, max_size=None, open_timeout=5, close_timeout=1
        ) as ws:

            def read(deadline: float) -> tuple[int, int, Any, int] | None:
                try:
                    message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                except (TimeoutError, ConnectionClosed):
                    return None
                assert isinstance(message, bytes), f"the gateway sent text: {message!r}"
                return decode(message)

            try:
                if sc.login is not None:
                    ws.send(cmd(Stype.Auth, AuthCmd.GUEST_LOGIN, self.keys[sc.login]))
                    reply = await_reply(read, Stype.Auth, AuthCmd.GUEST_LOGIN, "login")
                    assert reply.get("status") == 1, reply
                    self.stats.logins += 1
                    if sc.enter is not None:
                        body = {"uname": new_name("fz"), "usex": 1}
                        ws.send(cmd(Stype.TalkRoom, TalkroomCmd.Enter, body, sc.enter))
                        status = await_reply(read, Stype.TalkRoom, 1, "Enter")
                        assert status == TalkroomStatus.OK, status
                        self.stats.entered += 1
                for message in sc.payload:
                    try:
                        ws.send(message)
                    except ConnectionClosed:
                        break
                    if sc.pause:
                        time.sleep(0.001)
                if sc.linger:
                    deadline = time.monotonic() + sc.linger
                    while read(deadline) is not None:
                        pass
            finally:
                if sc.close == "abort":
                    with contextlib.suppress(OSError):
                        ws.socket.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        ws.socket.shutdown(socket.SHUT_RDWR)

    def _ws_raw(self, sc: Scenario) -> None:
        conn = BlockingTcp(self.cluster.listener_ports["ws"])
        try:
            for piece in sc.payload:
                conn.send(piece)
            if sc.linger:
                conn.drain(sc.linger)
        finally:
            conn.close(sc.close if sc.close != "half" else "close")


def _frame(cmd_buf: bytes) -> bytes:
    return LENGTH.pack(len(cmd_buf) + 2) + cmd_buf


def explicit_scenarios(forged: list[int]) -> list[Scenario]:
    """Hand-written hostile cases run first, every time."""
    disconnect = [cmd(Stype.TalkRoom, 10000, None, utag=u) for u in forged]
    exits = [cmd(Stype.TalkRoom, TalkroomCmd.Exit, None, utag=u) for u in forged]
    steal = [cmd(Stype.TalkRoom, TalkroomCmd.SendMsg, "stolen", utag=u) for u in forged]
    to_services = [
        pack_header(Stype.TalkRoom, TalkroomCmd.Enter, 0, BUF) + b"\x07\x00ab",  # short_body
        pack_header(Stype.Auth, AuthCmd.GUEST_LOGIN, 0, BUF) + b"\x00\x00",  # no BUF layout
        pack_header(Stype.TalkRoom, TalkroomCmd.SendMsg, 0, JSON) + b'\x05\x00{"0":',  # bad_json
    ]
    bad_proto = pack_header(Stype.Auth, AuthCmd.GUEST_LOGIN, 0, 3) + b"\x00\x00"
    return [
        Scenario("tcp", None, None, [b"\x00\x00"], False, 0.1, "close"),
        Scenario("tcp", None, None, [b"\x0b\x00" + b"\x01" * 9], False, 0.1, "close"),
        Scenario("tcp", None, None, [b"\xff\xff", b"\x01" * 100], True, 0.05, "abort"),
        Scenario("tcp_small", None, None, [LENGTH.pack(SMALL_MAX + 3)], False, 0.1, "close"),
        Scenario("tcp", None, None, [_frame(bad_proto)], False, 0.1, "close"),
        Scenario("tcp", None, None, [_frame(c) for c in disconnect + exits], False, 0.1, "close"),
        Scenario("tcp", 2, None, [_frame(c) for c in to_services], True, 0.1, "close"),
        Scenario(
            "tcp", 0, JSON, [_frame(c) for c in steal + disconnect + exits], True, 0.1, "half"
        ),
        Scenario("ws", 1, BUF, steal + disconnect + exits, False, 0.1, "close"),
        Scenario("ws", None, None, ["text"], False, 0.1, "close"),
        Scenario("ws", None, None, [b"\x01\x00\x01"], False, 0.1, "close"),
        Scenario("ws_small", None, None, [b"\x00" * (SMALL_MAX + 1)], False, 0.1, "close"),
        Scenario("ws_raw", None, None, [b"GET / HTTP/1.1\r\n\r\n"], False, 0.1, "close"),
    ]


def fuzz(cluster: HardCluster, forged: list[int], deadline: float) -> FuzzStats:
    keys = [new_key() for _ in range(6)]
    fuzzer = Fuzzer(cluster, keys)
    for scenario in explicit_scenarios(forged):
        fuzzer.run(scenario)

    @settings(
        max_examples=EXAMPLES_PER_ROUND,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(scenarios(forged, len(keys)))
    def one_round(scenario: Scenario) -> None:
        if time.monotonic() < deadline:
            fuzzer.run(scenario)

    while time.monotonic() < deadline:
        one_round()
    return fuzzer.stats


# ---------------------------------------------------------------- well-behaved clients
@dataclass
class GoodClient:
    client: Client
    name: str
    usex: int
    sent: list[str] = field(default_factory=list)
    answered: int = 0
    heartbeats: int = 0
    errors: list[str] = field(default_factory=list)

    async def chat(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            msg = f"{self.name} #{n}"
            n += 1
            self.sent.append(msg)
            try:
                reply = await self.client.send_msg(msg, timeout=5.0)
                await self.client.heartbeat(timeout=5.0)
            except Exception as exc:
                self.errors.append(f"{msg}: {exc!r}")
                if self.client.closed.is_set():
                    return
                continue
            if reply != {"0": 1, "1": self.name, "2": self.usex, "3": msg}:
                self.errors.append(f"{msg}: wrong reply {reply!r}")
            else:
                self.answered += 1
                self.heartbeats += 1
            await asyncio.sleep(0.01)


def anomalies(good: GoodClient, everyone: list[GoodClient]) -> list[str]:
    """Pushes a well-behaved client should never have received."""
    sent_by = {g.name: set(g.sent) for g in everyone}
    out = []
    for push in good.client.drain_pushes():
        body = push.body
        if push.stype == Stype.TalkRoom and push.ctype == TalkroomCmd.UserMsg:
            sender, msg = body["0"], body["2"]
            if sender in sent_by and msg not in sent_by[sender]:
                out.append(f"message in {sender}'s name it never sent: {push}")
        elif push.stype == Stype.TalkRoom and push.ctype in (
            TalkroomCmd.UserArrived,
            TalkroomCmd.UserExit,
        ):
            if body["uname"] in sent_by:
                out.append(f"a well-behaved client's name arrived/left: {push}")
        else:
            out.append(f"unexpected push {push}")
    return out


async def test_fuzz_gateway(cluster: HardCluster, clients: Clients) -> None:
    gateway_pid = cluster.pid("gateway")
    a = GoodClient(await clients.login(cluster.tcp_url, JSON), new_name("good-a"), 0)
    b = GoodClient(await clients.login(cluster.ws_url, BUF), new_name("good-b"), 1)
    for good in (a, b):
        assert await good.client.enter(good.name, good.usex) == TalkroomStatus.OK
    for good in (a, b):
        # A second Enter's IN_ROOM reply comes after every push queued before it.
        assert await good.client.enter(good.name, good.usex) == TalkroomStatus.IN_ROOM
        good.client.drain_pushes()
    forged = [a.client.uid, b.client.uid]

    baseline = await cluster.healthz()
    assert (baseline["connections"], baseline["logged_in"]) == (2, 2), baseline
    rss_start = vm_rss(gateway_pid)

    stop = asyncio.Event()
    chatters = [asyncio.create_task(g.chat(stop)) for g in (a, b)]
    deadline = time.monotonic() + FUZZ_SECONDS
    try:
        stats = await asyncio.to_thread(fuzz, cluster, forged, deadline)
    finally:
        stop.set()
        await asyncio.gather(*chatters)
    print(f"fuzz: {stats}; good clients answered {a.answered} + {b.answered}")

    # Every role alive; the gateway back to its baseline; memory near its start.
    assert not cluster.dead_roles(), cluster.logs()
    health = await eventually(
        cluster.healthz,
        lambda h: (h["connections"], h["logged_in"]) == (2, 2),
        timeout=10,
        what="gateway connections back to the 2 well-behaved clients",
    )
    assert all(s == "up" for svc in health["services"].values() for s in svc.values()), health
    rss_end = vm_rss(gateway_pid)
    assert rss_end < rss_start + RSS_SLACK, (rss_start, rss_end)
    print(f"gateway VmRSS {rss_start / MiB:.1f} -> {rss_end / MiB:.1f} MiB")

    # The well-behaved clients: every request answered correctly, nothing foreign received.
    for good in (a, b):
        assert not good.errors, good.errors[:10]
        assert good.answered == len(good.sent) > 0, (good.answered, len(good.sent))
        assert not good.client.closed.is_set(), good.client.close_reason
    bad = anomalies(a, [a, b]) + anomalies(b, [a, b])
    assert not bad, bad[:10]

    # The room holds exactly the two of them: every fuzzer that entered has been removed.
    members = await room_members(cluster.tcp_url, clients)
    assert members == Counter({a.name: 1, b.name: 1}), members
    assert stats.scenarios > 10 and stats.logins > 0 and stats.entered > 0, stats

    # The hostile input really took the rejection paths (counted by kind, PROTOCOL.md §6),
    # and hostile bodies reached both services, which rejected them without closing a link.
    text = await cluster.metrics_text()
    rejected = {
        kind: metric_value(text, "netbus_protocol_errors_total", kind=kind)
        for kind in ("frame_length", "bad_proto_type", "short_header", "ws_text", "ws_too_big")
    } | {
        reason: metric_value(text, "netbus_dropped_total", reason=reason)
        for reason in ("forged_control", "login_required")
    }
    print(f"gateway rejections: {rejected}")
    assert all(rejected.values()), rejected
    for role in ("center", "talkroom"):
        errors = metric_value(await cluster.metrics_text(role), "netbus_protocol_errors_total")
        assert errors > 0, f"no malformed body reached the {role}"
    for role in ("center", "talkroom"):
        health = await cluster.healthz(role)
        assert health["gateway_links"] == 1, health
    assert threading.active_count() < 50
