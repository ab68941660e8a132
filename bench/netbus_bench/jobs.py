"""The five jobs a worker can run, one function per job type of `netbus_bench.spec`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from typing import assert_never

from netbus.client import Client
from netbus.errors import RequestTimeout, ServiceUnavailable
from netbus.protocol.control import GatewayCmd
from netbus.protocol.registry import Direction
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd

from netbus_bench.codecs import BENCH_CODECS
from netbus_bench.conns import RawConn, SetupError, guest_key, open_all, raw_conn, sdk_conn
from netbus_bench.kinds import ClientKind, WorkerState
from netbus_bench.spec import CcuJob, FanoutRecvJob, FanoutSendJob, LoginJob, RequestJob
from netbus_bench.worker import Worker, poll_until, wait_event

__all__ = ["run_job"]

#: what a failed SDK request raises; counted by type, never fatal to the run
_REQUEST_ERRORS = (RequestTimeout, ServiceUnavailable, ConnectionError)


async def run_job(w: Worker) -> None:
    """Run the worker's job to its end (its budget spent, or its deadline passed)."""
    job = w.spec.job
    match job:
        case RequestJob():
            await request(w, job)
        case FanoutRecvJob():
            await fanout_recv(w, job)
        case FanoutSendJob():
            await fanout_send(w, job)
        case CcuJob():
            await ccu(w, job)
        case LoginJob():
            await login(w)
        case _:
            assert_never(job)


# ------------------------------------------------------------------------ request
async def request(w: Worker, job: RequestJob) -> None:
    t_setup = time.monotonic()
    if w.spec.connect.client is ClientKind.RAW:
        conns: list[RawConn] = await open_all(w, raw_conn)
        frame = BENCH_CODECS.encode(
            job.stype, job.ctype, job.body, proto_type=job.proto_type, direction=Direction.TO_SERVER
        )
        for conn in conns:
            conn.arm(frame, job.stype, job.ctype)
        await w.ready_and_go(t_setup)
        await _run_raw(w, job, conns)
    else:
        clients: list[Client] = await open_all(w, sdk_conn)
        await w.ready_and_go(t_setup)
        await _run_sdk(w, job, clients)


async def _run_raw(w: Worker, job: RequestJob, conns: list[RawConn]) -> None:
    if w.closed_loop:
        for _ in range(job.inflight):
            for conn in conns:
                if w.may_send(time.monotonic_ns()):
                    conn.send()
        await poll_until(lambda: not w.may_send(time.monotonic_ns()), 0.02)
    else:
        next_conn = itertools.cycle(conns).__next__

        def send_one() -> None:
            conn = next_conn()
            if not conn.closed:
                conn.send()

        await w.pace(send_one)
    w.running = False
    # Let in-flight replies land (bounded), then count what never came back.
    await poll_until(lambda: not any(c.sent_at and not c.closed for c in conns), 0.01, 3.0)
    w.unanswered = sum(len(c.sent_at) for c in conns)
    if w.unanswered:
        w.error("unanswered", w.unanswered)


async def _sdk_request(w: Worker, job: RequestJob, client: Client) -> None:
    w.sent += 1
    t0 = time.monotonic_ns()
    try:
        await client.request(job.stype, job.ctype, job.body, proto_type=job.proto_type, timeout=10)
    except _REQUEST_ERRORS as exc:
        w.error(type(exc).__name__)
        return
    w.record(time.monotonic_ns(), t0)


async def _run_sdk(w: Worker, job: RequestJob, clients: list[Client]) -> None:
    drainer = asyncio.create_task(_drain_pushes(w, clients))
    try:
        if w.closed_loop:

            async def loop_one(client: Client) -> None:
                while w.may_send(time.monotonic_ns()) and not client.closed.is_set():
                    await _sdk_request(w, job, client)

            await asyncio.gather(*(loop_one(c) for c in clients for _ in range(job.inflight)))
        else:
            tasks: set[asyncio.Task[None]] = set()
            next_client = itertools.cycle(clients).__next__

            def send_one() -> None:
                if len(tasks) > 10_000:
                    w.error("overrun")
                    return
                task = asyncio.create_task(_sdk_request(w, job, next_client()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            await w.pace(send_one)
            w.running = False
            if tasks:
                await asyncio.wait(tasks, timeout=10)
    finally:
        w.running = False
        drainer.cancel()


async def _drain_pushes(w: Worker, clients: list[Client]) -> None:
    """Count the UserMsg pushes a talkroom round trip causes (the room's other members)."""
    while True:
        await asyncio.sleep(0.05)
        for client in clients:
            for push in client.drain_pushes():
                if push.stype == Stype.TalkRoom and push.ctype == TalkroomCmd.UserMsg:
                    w.extra += 1


# ------------------------------------------------------------------------- fanout
async def fanout_recv(w: Worker, job: FanoutRecvJob) -> None:
    t_setup = time.monotonic()
    conns: list[RawConn] = await open_all(w, raw_conn)
    want = job.room_size - 1
    timeout = w.spec.connect.setup_timeout
    if not await poll_until(
        lambda: all(c.arrivals >= want for c in conns if not c.closed), 0.05, timeout
    ):
        raise SetupError(f"room arrivals not complete in {timeout}s")
    keepalive = asyncio.create_task(_keepalive(conns))
    try:
        await w.ready_and_go(t_setup)
        await wait_event(w.stop)
    finally:
        keepalive.cancel()
    w.running = False


async def _keepalive(conns: list[RawConn], interval: float = 15.0) -> None:
    """Heartbeats from members that only listen, as a real client would send them."""
    frame = BENCH_CODECS.encode(
        Stype.Gateway, GatewayCmd.HEARTBEAT, None, direction=Direction.TO_SERVER
    )
    while True:
        await asyncio.sleep(interval)
        for conn in conns:
            if not conn.closed:
                conn.link.send_raw(frame)


async def fanout_send(w: Worker, job: FanoutSendJob) -> None:
    t_setup = time.monotonic()
    client = await sdk_conn(w, 0)
    arrivals = 0
    async with asyncio.timeout(w.spec.connect.setup_timeout):
        while arrivals < job.room_size - 1:
            await asyncio.sleep(0.05)
            arrivals += sum(
                p.stype == Stype.TalkRoom and p.ctype == TalkroomCmd.UserArrived
                for p in client.drain_pushes()
            )
    pad = "x" * max(0, min(job.payload, 900))

    async def send_msg() -> None:
        w.sent += 1
        t0 = time.monotonic_ns()
        try:
            reply = await client.send_msg(f"{t0} {pad}", timeout=10)
        except _REQUEST_ERRORS as exc:
            w.error(type(exc).__name__)
            return
        now = time.monotonic_ns()
        if not isinstance(reply, dict) or reply.get("0") != 1:
            w.error("send_refused")
            return
        w.count += 1
        w.t_last = now
        w.extra_samples.append(now - t0)

    await w.ready_and_go(t_setup)
    if w.closed_loop:

        async def window() -> None:
            while w.may_send(time.monotonic_ns()) and not client.closed.is_set():
                await send_msg()

        await asyncio.gather(*(window() for _ in range(job.inflight)))
    else:
        tasks: set[asyncio.Task[None]] = set()

        def send_one() -> None:
            task = asyncio.create_task(send_msg())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        await w.pace(send_one)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    w.running = False


# ---------------------------------------------------------------------------- ccu
async def ccu(w: Worker, job: CcuJob) -> None:
    spec = w.spec.connect
    w.flush()
    w.set_state(WorkerState.READY)
    await wait_event(w.go)
    w.t_go = time.monotonic_ns()
    clients: list[Client] = []

    async def ramp_one(i: int) -> None:
        clients.append(await sdk_conn(w, i))

    try:
        async with asyncio.timeout(spec.setup_timeout):
            made = await w.gather_bounded(range(spec.conns), ramp_one, spec.concurrency)
    except TimeoutError:
        w.error("ramp_timeout")
        made = []
    for m in made:
        if isinstance(m, BaseException):
            w.error(f"ramp_{type(m).__name__}")
    w.t_ramped = time.monotonic_ns()
    w.extra = len(clients)  # logged in at the end of the ramp
    w.set_state(WorkerState.RAMPED)
    await wait_event(w.hold)
    w.deadline_ns = time.monotonic_ns() + int(w.spec.budget.duration * 1e9)
    w.running = True
    interval = job.hb_interval
    rng = secrets.SystemRandom()

    async def heartbeats(client: Client) -> None:
        await asyncio.sleep(rng.uniform(0, interval))
        while w.may_send(time.monotonic_ns()) and not client.closed.is_set():
            w.sent += 1
            t0 = time.monotonic_ns()
            try:
                await client.heartbeat(timeout=10)
            except (RequestTimeout, ConnectionError) as exc:
                w.error(type(exc).__name__)
            else:
                w.record(time.monotonic_ns(), t0)
            await asyncio.sleep(interval)

    await asyncio.gather(*(heartbeats(c) for c in clients))
    w.running = False
    w.conns = sum(not c.closed.is_set() for c in clients)
    lost = len(clients) - w.conns
    if lost:
        w.error("closed_during_hold", lost)


# -------------------------------------------------------------------------- login
async def login(w: Worker) -> None:
    spec = w.spec.connect
    w.set_state(WorkerState.READY)
    await wait_event(w.go)
    w.start()
    n = 0

    async def one_bot() -> None:
        nonlocal n
        while w.may_send(time.monotonic_ns()):
            w.sent += 1
            n += 1
            t0 = time.monotonic_ns()
            client = None
            try:
                client = await Client.connect(
                    spec.url, timeout=10, codecs=BENCH_CODECS, heartbeat=None
                )
                w.conns += 1
                reply = await client.guest_login(guest_key(spec.tag, w.spec.wid, n), timeout=10)
            except (OSError, *_REQUEST_ERRORS) as exc:
                w.error(type(exc).__name__)
            else:
                if reply.get("status") == 1:
                    w.record(time.monotonic_ns(), t0)
                else:
                    w.error(f"status_{reply.get('status')}")
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.close()
                    w.conns -= 1

    await asyncio.gather(*(one_bot() for _ in range(spec.conns)))
    w.running = False
