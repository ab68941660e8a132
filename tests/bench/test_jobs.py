"""Worker jobs in-process: the raw request loop against the bare echo, closed and paced."""

from __future__ import annotations

import asyncio
import threading
from array import array

import pytest
from netbus_bench.baseline_relay import Framed
from netbus_bench.echo import ECHO_CTYPE, ECHO_STYPE
from netbus_bench.kinds import ClientKind, JobKind, WorkerState
from netbus_bench.spec import Budget, Connect, RequestJob, WorkerResult, WorkerSpec
from netbus_bench.worker import SLOTS, Slot, Worker

from netbus.protocol.header import ProtoType


def _worker(port: int, budget: Budget, conns: int = 3) -> tuple[Worker, array[int]]:
    job = RequestJob(ECHO_STYPE, ECHO_CTYPE, ProtoType.BUF, {"seq": 1, "data": "x"}, inflight=2)
    connect = Connect(f"tcp://127.0.0.1:{port}", conns, ClientKind.RAW, login=False)
    counters = array("q", [0] * SLOTS)
    go = threading.Event()
    go.set()  # the parent's go, already given
    return Worker(WorkerSpec(0, job, connect, budget), counters, go, None, None), counters


async def _run(budget: Budget) -> tuple[WorkerResult, array[int]]:
    loop = asyncio.get_running_loop()
    accepted: list[Framed] = []

    def echo() -> Framed:  # writes every frame back
        accepted.append(Framed())
        return accepted[-1]

    server = await loop.create_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        worker, counters = _worker(port, budget)
        try:
            result = await worker.main()
        finally:  # a worker process leaves its connections to the kernel: close them here
            for side in accepted:
                side.transport.abort()
            await asyncio.sleep(0)
    return result, counters


@pytest.mark.parametrize("rate", [0.0, 2000.0], ids=["closed-loop", "paced"])
async def test_request_job_counts_every_round_trip(rate: float) -> None:
    result, counters = await _run(Budget(duration=5.0, max_messages=300, rate=rate))
    assert result.job is JobKind.REQUEST
    assert result.errors == 0 and result.unanswered == 0, result.error_kinds
    assert result.sent == result.count == 300  # the message budget ends the run
    assert len(result.samples) == 8 * result.count  # one int64 latency per round trip
    assert result.conns == 3
    assert counters[Slot.COUNT] == 300 and counters[Slot.SENT] == 300
    assert counters[Slot.STATE] == WorkerState.RUNNING  # DONE is set by worker_main


async def test_request_job_stops_at_its_deadline() -> None:
    result, _ = await _run(Budget(duration=0.05, max_messages=10**9))
    assert result.errors == 0
    assert 0 < result.count == result.sent < 10**9
