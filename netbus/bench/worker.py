"""Load-generating worker processes: one event loop (uvloop) and many connections each.

The parent (`netbus.bench.runner`) spawns workers with ``multiprocessing`` (spawn), each with a
`WorkerSpec`. A worker connects and logs its connections in, reports READY through a shared
counter array, waits for the parent's ``go`` event, then drives load until its deadline or its
message budget, whichever comes first; it flushes its counters every 100 ms (the parent's live
view) and finally puts its result (counts, error kinds, latency samples) on a queue.

Two client modes:

* ``sdk``: `netbus.client.Client`, the framework's own client library (futures matched by
  (stype, ctype), decoded bodies, a push queue). Used for login, ccu (WebSocket), talkroom and
  the fanout sender.
* ``raw``: a `TcpLink` from netbus' transport with a minimal handler that sends one
  pre-encoded cmd_buf and matches replies FIFO on (stype, ctype) without decoding them. Used
  where the client side would otherwise eat the CPU the servers need on a small box: relay
  round trips at tens of thousands per second, and fanout receivers taking 100k pushes/s.
  Setup (guest login, Enter) goes through the same link with the netbus codecs.

Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on the host),
so a timestamp written by the fanout sender is comparable with a receiver's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import time
import traceback
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from netbus.bench.codecs import BENCH_CODECS as CODECS
from netbus.client import Client
from netbus.errors import ProtocolError, RequestTimeout, ServiceUnavailable
from netbus.protocol.codec import decode_json_body
from netbus.protocol.control import GatewayCmd
from netbus.protocol.header import MAX_CMD_BUF, ProtoType
from netbus.protocol.registry import Direction
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink

__all__ = ["SLOTS", "State", "WorkerSpec", "worker_main"]

#: per-worker slots in the shared counter array
SLOTS = 6
STATE, COUNT, ERRORS, CONNS, EXTRA, SENT = range(SLOTS)
#: latency samples kept per worker (8 bytes each); later ones are counted, not kept
SAMPLE_CAP = 4_000_000


class State:
    SETUP = 0
    READY = 1
    RUNNING = 2
    RAMPED = 3
    DONE = 4
    FAILED = 5


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process does. ``job`` is one of:

    ``request``: closed-loop (or paced) request/reply on every connection (relay, talkroom);
    ``fanout-recv``: room members that time every UserMsg push;
    ``fanout-send``: the one member that sends;
    ``ccu``: ramp WebSocket logins, then hold them with heartbeats;
    ``login``: connect, log in as a new guest, close, repeat.
    """

    wid: int
    job: str
    url: str
    conns: int
    duration: float
    max_messages: int
    client: str = "raw"
    inflight: int = 1
    rate: float = 0.0  #: requests/s of this worker; 0 = closed loop
    login: bool = True
    enter: bool = False
    stype: int = 0
    ctype: int = 0
    proto_type: int = ProtoType.JSON
    body: Any = None
    room_size: int = 0
    payload: int = 32
    hb_interval: float = 5.0
    local_addrs: tuple[str, ...] = ()
    setup_timeout: float = 60.0
    concurrency: int = 64
    loop: str = "uvloop"
    tag: str = ""


class SetupError(Exception):
    pass


async def poll_until(
    predicate: Callable[[], bool], interval: float, timeout: float | None = None
) -> bool:
    """Check ``predicate`` every ``interval`` seconds; False if ``timeout`` passed first."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if end is not None and time.monotonic() >= end:
            return False
        await asyncio.sleep(interval)


def _guest_key(tag: str, wid: int, n: int) -> str:
    return f"bench-{tag}-{wid}-{n}-{secrets.token_hex(6)}"[:64]


# ------------------------------------------------------------------------- raw driver
class RawConn:
    """A netbus `TcpLink` with a request/reply loop that never decodes the hot path."""

    __slots__ = (
        "arrivals",
        "closed",
        "frame",
        "link",
        "rc",
        "rs",
        "sent_at",
        "w",
        "waiters",
    )

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.link = TcpLink(self)
        self.link.owner = self
        self.waiters: dict[tuple[int, int], deque[asyncio.Future[bytearray]]] = {}
        self.sent_at: deque[int] = deque()
        self.frame = b""
        self.rs = self.rc = -1
        self.arrivals = 0
        self.closed = False

    async def connect(self, url: str, local_addr: str | None) -> None:
        parts = urlsplit(url)
        await asyncio.get_running_loop().create_connection(
            lambda: self.link,
            parts.hostname or "127.0.0.1",
            parts.port or 0,
            local_addr=(local_addr, 0) if local_addr else None,
        )

    async def call(
        self, stype: int, ctype: int, body: Any, proto_type: int = ProtoType.JSON
    ) -> Any:
        """One request during setup; returns the decoded reply body."""
        fut: asyncio.Future[bytearray] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault((stype, ctype), deque()).append(fut)
        data = CODECS.encode(
            stype, ctype, body, proto_type=proto_type, direction=Direction.TO_SERVER
        )
        if not self.link.send_raw(data):
            raise ConnectionError("link closed")
        async with asyncio.timeout(10):
            cmd_buf = await fut
        return CODECS.decode_body(cmd_buf, stype, ctype, cmd_buf[8], Direction.TO_CLIENT)

    def arm(self, frame: bytes, stype: int, ctype: int) -> None:
        self.frame, self.rs, self.rc = frame, stype, ctype

    def send(self) -> None:
        self.sent_at.append(time.monotonic_ns())
        self.w.sent += 1
        self.link.send_raw(self.frame)

    # LinkHandler
    def link_opened(self, link: Link) -> None:
        pass

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        stype = cmd_buf[0] | cmd_buf[1] << 8
        ctype = cmd_buf[2] | cmd_buf[3] << 8
        if stype == self.rs and ctype == self.rc and self.sent_at:
            now = time.monotonic_ns()
            w = self.w
            w.record(now, self.sent_at.popleft())
            if w.closed_loop and w.may_send(now):
                self.send()
            return
        queue = self.waiters.get((stype, ctype))
        if queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(cmd_buf)
            return
        if stype == Stype.Gateway and ctype in (
            GatewayCmd.SERVICE_UNAVAILABLE,
            GatewayCmd.LOGIN_REQUIRED,
        ):
            self.w.error(f"gateway_notice_{ctype}")
            if self.sent_at:  # the refused request will get no reply: free its slot
                self.sent_at.popleft()
                if self.w.closed_loop and self.w.may_send(time.monotonic_ns()):
                    self.send()
            return
        self.w.on_push(self, stype, ctype, cmd_buf)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.closed = True
        for queue in self.waiters.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(ConnectionError(reason))
        self.waiters.clear()
        self.w.conn_lost(str(reason))

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.w.error(f"protocol_{exc.kind}")


async def connect_ws_client(url: str, local_addr: str | None, timeout: float = 10.0) -> Client:
    """`Client.connect` for ws://, or the same construction with a source address.

    ``Client.connect`` takes no ``local_addr``; spreading tens of thousands of connections
    over several 127.x source addresses needs one, so this builds the client the same way
    (websockets passes extra keyword arguments to ``loop.create_connection``).
    """
    if not local_addr:
        return await Client.connect(url, timeout=timeout, codecs=CODECS, heartbeat=None)
    from websockets.asyncio.client import connect as ws_connect

    client = Client(codecs=CODECS, heartbeat=None)
    client._ws = await ws_connect(
        url,
        compression=None,
        max_size=MAX_CMD_BUF,
        ping_interval=None,
        open_timeout=timeout,
        local_addr=(local_addr, 0),
    )
    client._ws_reader = asyncio.create_task(client._read_ws())
    return client


# ----------------------------------------------------------------------------- worker
class Worker:
    def __init__(self, spec: WorkerSpec, counters: Any, go: Any, stop: Any, hold: Any) -> None:
        self.spec = spec
        self.counters = counters
        self.base = spec.wid * SLOTS
        self.go, self.stop, self.hold = go, stop, hold
        self.samples = array("q")
        self.count = self.errors = self.conns = self.extra = self.sent = 0
        self.error_kinds: Counter[str] = Counter()
        self.running = False
        self.closed_loop = spec.rate <= 0
        self.deadline_ns = 0
        self.t_go = self.t_last = self.t_first = 0
        self.t_ramped = 0
        self.setup_s = 0.0
        self.unanswered = 0
        self.extra_samples = array("q")  # fanout sender: its own SendMsg round trips

    # ---------------------------------------------------------------- bookkeeping
    def set_state(self, state: int) -> None:
        self.counters[self.base + STATE] = state

    def flush(self) -> None:
        c, b = self.counters, self.base
        c[b + COUNT] = self.count
        c[b + ERRORS] = self.errors
        c[b + CONNS] = self.conns
        c[b + EXTRA] = self.extra
        c[b + SENT] = self.sent

    async def flusher(self) -> None:
        while True:
            self.flush()
            await asyncio.sleep(0.1)

    def record(self, now: int, t0: int) -> None:
        if len(self.samples) < SAMPLE_CAP:
            self.samples.append(now - t0)
        self.count += 1
        self.t_last = now

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] += 1

    def conn_lost(self, reason: str) -> None:
        self.conns -= 1
        if self.running or self.spec.job == "fanout-recv":
            self.error("connection_lost")

    def may_send(self, now: int) -> bool:
        return self.running and self.sent < self.spec.max_messages and now < self.deadline_ns

    async def wait_event(self, event: Any, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not event.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def on_push(self, conn: RawConn, stype: int, ctype: int, cmd_buf: bytearray) -> None:
        if stype != Stype.TalkRoom:
            return
        if ctype == TalkroomCmd.UserMsg:
            if self.spec.job == "fanout-recv":
                self._delivery(cmd_buf)
            else:
                self.extra += 1
        elif ctype == TalkroomCmd.UserArrived:
            conn.arrivals += 1

    def _delivery(self, cmd_buf: bytearray) -> None:
        now = time.monotonic_ns()
        try:
            text = decode_json_body(cmd_buf)["2"]
            sent = int(text[: text.index(" ")])
        except (ProtocolError, KeyError, TypeError, ValueError):
            self.error("bad_delivery")
            return
        if not self.count:
            self.t_first = now
        self.record(now, sent)

    async def gather_bounded(
        self, items: range, make: Callable[[int], Awaitable[Any]], limit: int
    ) -> list[Any]:
        """Run ``make(i)`` for every i with at most ``limit`` at once; exceptions returned."""
        sem = asyncio.Semaphore(limit)

        async def one(i: int) -> Any:
            async with sem:
                try:
                    return await make(i)
                except Exception as exc:
                    return exc

        return await asyncio.gather(*(one(i) for i in items))

    def _local_addr(self, i: int) -> str | None:
        addrs = self.spec.local_addrs
        return addrs[(self.spec.wid + i) % len(addrs)] if addrs else None

    # ----------------------------------------------------------------------- main
    async def main(self) -> dict[str, Any]:
        flusher = asyncio.create_task(self.flusher())
        try:
            job = {
                "request": self.job_request,
                "fanout-recv": self.job_fanout_recv,
                "fanout-send": self.job_fanout_send,
                "ccu": self.job_ccu,
                "login": self.job_login,
            }[self.spec.job]
            await job()
        finally:
            flusher.cancel()
            self.flush()
        return self.result()

    def result(self) -> dict[str, Any]:
        return {
            "wid": self.spec.wid,
            "job": self.spec.job,
            "count": self.count,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "sent": self.sent,
            "extra": self.extra,
            "conns": self.conns,
            "unanswered": self.unanswered,
            "t_go": self.t_go,
            "t_first": self.t_first,
            "t_last": self.t_last,
            "t_ramped": self.t_ramped,
            "setup_s": self.setup_s,
            "samples": self.samples.tobytes(),
            "extra_samples": self.extra_samples.tobytes(),
        }

    def _start(self) -> None:
        self.t_go = time.monotonic_ns()
        self.deadline_ns = self.t_go + int(self.spec.duration * 1e9)
        self.running = True
        self.set_state(State.RUNNING)

    async def _ready_and_go(self, t_setup: float) -> None:
        self.setup_s = time.monotonic() - t_setup
        self.flush()
        self.set_state(State.READY)
        await self.wait_event(self.go)
        self._start()

    # ------------------------------------------------------------- connections
    async def _raw_conn(self, i: int) -> RawConn:
        spec = self.spec
        conn = RawConn(self)
        await conn.connect(spec.url, self._local_addr(i))
        self.conns += 1
        try:
            if spec.login:
                key = _guest_key(spec.tag, spec.wid, i)
                reply = await conn.call(Stype.Auth, AuthCmd.GUEST_LOGIN, key)
                if not isinstance(reply, dict) or reply.get("status") != 1:
                    raise SetupError(f"guest login refused: {reply!r}")
            if spec.enter:
                status = await conn.call(
                    Stype.TalkRoom,
                    TalkroomCmd.Enter,
                    {"uname": f"{spec.tag[:8]}{spec.wid}_{i}", "usex": i % 2},
                )
                if status != 1:
                    raise SetupError(f"Enter refused: {status!r}")
        except BaseException:
            conn.link.close(CloseReason.NORMAL, "setup failed", abort=True)
            raise
        return conn

    async def _sdk_conn(self, i: int) -> Client:
        spec = self.spec
        if spec.url.startswith("ws"):
            client = await connect_ws_client(spec.url, self._local_addr(i))
        else:
            client = await Client.connect(spec.url, codecs=CODECS, heartbeat=None)
        self.conns += 1
        try:
            if spec.login:
                reply = await client.guest_login(_guest_key(spec.tag, spec.wid, i), timeout=10)
                if reply.get("status") != 1:
                    raise SetupError(f"guest login refused: {reply!r}")
            if spec.enter:
                status = await client.enter(f"{spec.tag[:8]}{spec.wid}_{i}", i % 2, timeout=10)
                if status != 1:
                    raise SetupError(f"Enter refused: {status!r}")
        except BaseException:
            self.conns -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)
            raise
        return client

    async def _open_all(self, make: Callable[[int], Awaitable[Any]]) -> list[Any]:
        spec = self.spec
        async with asyncio.timeout(spec.setup_timeout):
            made = await self.gather_bounded(range(spec.conns), make, spec.concurrency)
        ok = [m for m in made if not isinstance(m, BaseException)]
        for m in made:
            if isinstance(m, BaseException):
                self.error(f"setup_{type(m).__name__}")
        if not ok:
            first = next(m for m in made if isinstance(m, BaseException))
            raise SetupError(f"no connection could be set up: {first!r}") from first
        return ok

    # -------------------------------------------------------------------- request
    async def job_request(self) -> None:
        spec = self.spec
        t_setup = time.monotonic()
        if spec.client == "raw":
            conns: list[Any] = await self._open_all(self._raw_conn)
            frame = CODECS.encode(
                spec.stype,
                spec.ctype,
                spec.body,
                proto_type=spec.proto_type,
                direction=Direction.TO_SERVER,
            )
            for conn in conns:
                conn.arm(frame, spec.stype, spec.ctype)
        else:
            conns = await self._open_all(self._sdk_conn)
        await self._ready_and_go(t_setup)
        if spec.client == "raw":
            await self._run_raw(conns)
        else:
            await self._run_sdk(conns)
        self.set_state(State.DONE)

    async def _run_raw(self, conns: list[RawConn]) -> None:
        spec = self.spec
        if self.closed_loop:
            for _ in range(spec.inflight):
                for conn in conns:
                    if self.may_send(time.monotonic_ns()):
                        conn.send()
            await poll_until(lambda: not self.may_send(time.monotonic_ns()), 0.02)
        else:
            state = {"i": 0}

            def send_one() -> None:
                conn = conns[state["i"] % len(conns)]
                state["i"] += 1
                if not conn.closed:
                    conn.send()

            await self._pace(send_one)
        self.running = False
        # Let in-flight replies land (bounded), then count what never came back.
        await poll_until(lambda: not any(c.sent_at and not c.closed for c in conns), 0.01, 3.0)
        self.unanswered = sum(len(c.sent_at) for c in conns)
        if self.unanswered:
            self.error_kinds["unanswered"] += self.unanswered
            self.errors += self.unanswered

    async def _pace(self, send_one: Callable[[], None]) -> None:
        """Open loop: ``rate`` sends per second, in 1 ms ticks, whatever the replies do."""
        rate = self.spec.rate
        start = time.monotonic()
        sent = 0
        while self.may_send(time.monotonic_ns()):
            due = int((time.monotonic() - start) * rate)
            while sent < due and self.may_send(time.monotonic_ns()):
                send_one()
                sent += 1
            await asyncio.sleep(0.001)

    async def _sdk_request(self, client: Client) -> None:
        spec = self.spec
        self.sent += 1
        t0 = time.monotonic_ns()
        try:
            await client.request(
                spec.stype, spec.ctype, spec.body, proto_type=spec.proto_type, timeout=10
            )
        except (RequestTimeout, ServiceUnavailable, ConnectionError) as exc:
            self.error(type(exc).__name__)
            return
        self.record(time.monotonic_ns(), t0)

    async def _run_sdk(self, clients: list[Client]) -> None:
        drainer = asyncio.create_task(self._drain_pushes(clients))
        try:
            if self.closed_loop:

                async def loop_one(client: Client) -> None:
                    while self.may_send(time.monotonic_ns()) and not client.closed.is_set():
                        await self._sdk_request(client)

                await asyncio.gather(
                    *(loop_one(c) for c in clients for _ in range(self.spec.inflight))
                )
            else:
                tasks: set[asyncio.Task[None]] = set()
                state = {"i": 0}

                def send_one() -> None:
                    if len(tasks) > 10_000:
                        self.error("overrun")
                        return
                    client = clients[state["i"] % len(clients)]
                    state["i"] += 1
                    task = asyncio.create_task(self._sdk_request(client))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

                await self._pace(send_one)
                self.running = False
                if tasks:
                    await asyncio.wait(tasks, timeout=10)
        finally:
            self.running = False
            drainer.cancel()

    async def _drain_pushes(self, clients: list[Client]) -> None:
        while True:
            await asyncio.sleep(0.05)
            for client in clients:
                for push in client.drain_pushes():
                    if push.stype == Stype.TalkRoom and push.ctype == TalkroomCmd.UserMsg:
                        self.extra += 1

    # --------------------------------------------------------------------- fanout
    async def job_fanout_recv(self) -> None:
        spec = self.spec
        t_setup = time.monotonic()
        conns: list[RawConn] = await self._open_all(self._raw_conn)
        want = spec.room_size - 1
        if not await poll_until(
            lambda: all(c.arrivals >= want for c in conns if not c.closed),
            0.05,
            spec.setup_timeout,
        ):
            raise SetupError(f"room arrivals not complete in {spec.setup_timeout}s")
        keepalive = asyncio.create_task(self._keepalive(conns))
        try:
            await self._ready_and_go(t_setup)
            await self.wait_event(self.stop)
        finally:
            keepalive.cancel()
        self.running = False
        self.set_state(State.DONE)

    async def _keepalive(self, conns: list[RawConn], interval: float = 15.0) -> None:
        """Heartbeats from members that only listen, as a real client would send them."""
        frame = CODECS.encode(
            Stype.Gateway, GatewayCmd.HEARTBEAT, None, direction=Direction.TO_SERVER
        )
        while True:
            await asyncio.sleep(interval)
            for conn in conns:
                if not conn.closed:
                    conn.link.send_raw(frame)

    async def job_fanout_send(self) -> None:
        spec = self.spec
        t_setup = time.monotonic()
        client = await self._sdk_conn(0)
        arrivals = 0
        async with asyncio.timeout(spec.setup_timeout):
            while arrivals < spec.room_size - 1:
                await asyncio.sleep(0.05)
                arrivals += sum(
                    p.stype == Stype.TalkRoom and p.ctype == TalkroomCmd.UserArrived
                    for p in client.drain_pushes()
                )
        pad = "x" * max(0, min(spec.payload, 900))

        async def send_msg() -> None:
            self.sent += 1
            t0 = time.monotonic_ns()
            try:
                reply = await client.send_msg(f"{t0} {pad}", timeout=10)
            except (RequestTimeout, ServiceUnavailable, ConnectionError) as exc:
                self.error(type(exc).__name__)
                return
            now = time.monotonic_ns()
            if not isinstance(reply, dict) or reply.get("0") != 1:
                self.error("send_refused")
                return
            self.count += 1
            self.t_last = now
            self.extra_samples.append(now - t0)

        await self._ready_and_go(t_setup)
        if self.closed_loop:

            async def window() -> None:
                while self.may_send(time.monotonic_ns()) and not client.closed.is_set():
                    await send_msg()

            await asyncio.gather(*(window() for _ in range(spec.inflight)))
        else:
            tasks: set[asyncio.Task[None]] = set()

            def send_one() -> None:
                task = asyncio.create_task(send_msg())
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            await self._pace(send_one)
            if tasks:
                await asyncio.wait(tasks, timeout=10)
        self.running = False
        self.set_state(State.DONE)

    # ------------------------------------------------------------------------ ccu
    async def job_ccu(self) -> None:
        spec = self.spec
        self.flush()
        self.set_state(State.READY)
        await self.wait_event(self.go)
        self.t_go = time.monotonic_ns()
        clients: list[Client] = []

        async def ramp_one(i: int) -> None:
            clients.append(await self._sdk_conn(i))

        try:
            async with asyncio.timeout(spec.setup_timeout):
                made = await self.gather_bounded(range(spec.conns), ramp_one, spec.concurrency)
        except TimeoutError:
            self.error("ramp_timeout")
            made = []
        for m in made:
            if isinstance(m, BaseException):
                self.error(f"ramp_{type(m).__name__}")
        self.t_ramped = time.monotonic_ns()
        self.extra = len(clients)  # logged in at the end of the ramp
        self.set_state(State.RAMPED)
        await self.wait_event(self.hold)
        self.deadline_ns = time.monotonic_ns() + int(spec.duration * 1e9)
        self.running = True
        interval = spec.hb_interval
        rng = secrets.SystemRandom()

        async def heartbeats(client: Client) -> None:
            await asyncio.sleep(rng.uniform(0, interval))
            while self.may_send(time.monotonic_ns()) and not client.closed.is_set():
                self.sent += 1
                t0 = time.monotonic_ns()
                try:
                    await client.heartbeat(timeout=10)
                except (RequestTimeout, ConnectionError) as exc:
                    self.error(type(exc).__name__)
                else:
                    self.record(time.monotonic_ns(), t0)
                await asyncio.sleep(interval)

        await asyncio.gather(*(heartbeats(c) for c in clients))
        self.running = False
        self.conns = sum(not c.closed.is_set() for c in clients)
        lost = len(clients) - self.conns
        if lost:
            self.error_kinds["closed_during_hold"] += lost
            self.errors += lost
        self.set_state(State.DONE)

    # ---------------------------------------------------------------------- login
    async def job_login(self) -> None:
        spec = self.spec
        self.set_state(State.READY)
        await self.wait_event(self.go)
        self._start()
        n = 0

        async def one_bot() -> None:
            nonlocal n
            while self.may_send(time.monotonic_ns()):
                self.sent += 1
                n += 1
                t0 = time.monotonic_ns()
                client = None
                try:
                    client = await Client.connect(
                        spec.url, timeout=10, codecs=CODECS, heartbeat=None
                    )
                    self.conns += 1
                    reply = await client.guest_login(_guest_key(spec.tag, spec.wid, n), timeout=10)
                except (OSError, RequestTimeout, ServiceUnavailable, ConnectionError) as exc:
                    self.error(type(exc).__name__)
                else:
                    if reply.get("status") == 1:
                        self.record(time.monotonic_ns(), t0)
                    else:
                        self.error(f"status_{reply.get('status')}")
                finally:
                    if client is not None:
                        with contextlib.suppress(Exception):
                            await client.close()
                        self.conns -= 1

        await asyncio.gather(*(one_bot() for _ in range(spec.conns)))
        self.running = False
        self.set_state(State.DONE)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_main(spec: WorkerSpec, counters: Any, go: Any, stop: Any, hold: Any, out: Any) -> None:
    """Process entry point (multiprocessing spawn)."""
    _raise_nofile()
    worker = Worker(spec, counters, go, stop, hold)
    factory = None
    if spec.loop != "asyncio":
        import uvloop

        factory = uvloop.new_event_loop

    async def run() -> dict[str, Any]:
        result = await worker.main()
        worker.set_state(State.DONE)
        out.put(result)
        # Keep connections open until the parent has taken its last measurements.
        await worker.wait_event(stop, timeout=120)
        return result

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run())
    except BaseException as exc:
        worker.set_state(State.FAILED)
        out.put({"wid": spec.wid, "error": f"{exc!r}\n{traceback.format_exc()}"})
    finally:
        out.close()
        out.join_thread()
        os._exit(0)  # skip closing thousands of sockets one by one; the kernel does it
