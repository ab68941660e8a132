"""Load-generating worker processes: one event loop (uvloop) and many connections each.

The parent (`netbus_bench.runner`) spawns workers with ``multiprocessing`` (spawn), each with a
`WorkerSpec`. A worker connects and logs its connections in, reports READY through a shared
counter array, waits for the parent's ``go`` event, then drives load until its deadline or its
message budget, whichever comes first; it flushes its counters every 100 ms (the parent's live
view) and finally puts a `WorkerResult` (counts, error kinds, latency samples) on a queue.
The jobs themselves are in `netbus_bench.jobs`; this module keeps the bookkeeping they share.

Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on the host),
so a timestamp written by the fanout sender is comparable with a receiver's clock.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from netbus.runtime import LoopName, loop_factory

from netbus_bench.kinds import Loop, WorkerState
from netbus_bench.spec import FanoutRecvJob, WorkerFailure, WorkerResult, WorkerSpec

__all__ = ["SLOTS", "Slot", "Worker", "poll_until", "worker_main"]

#: per-worker slots in the shared counter array
SLOTS = 6


class Slot:
    """Offsets of one worker's counters in the shared array (``wid * SLOTS + offset``)."""

    STATE, COUNT, ERRORS, CONNS, EXTRA, SENT = range(SLOTS)


#: latency samples kept per worker (8 bytes each); later ones are counted, not kept
SAMPLE_CAP = 4_000_000


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


async def wait_event(event: Any, timeout: float | None = None) -> bool:
    """Wait for a ``multiprocessing.Event`` without blocking the loop; False on timeout."""
    return await poll_until(event.is_set, 0.005, timeout)


class Worker:
    """The counters, samples and clock of one worker process, shared by its job."""

    def __init__(self, spec: WorkerSpec, counters: Any, go: Any, stop: Any, hold: Any) -> None:
        self.spec = spec
        self.counters = counters
        self.base = spec.wid * SLOTS
        self.go, self.stop, self.hold = go, stop, hold
        self.samples = array("q")
        self.extra_samples = array("q")  # fanout sender: its own SendMsg round trips
        self.count = self.errors = self.conns = self.extra = self.sent = 0
        self.error_kinds: Counter[str] = Counter()
        self.running = False
        self.closed_loop = spec.budget.rate <= 0
        #: a fanout receiver: its UserMsg pushes are the deliveries it times, and a lost
        #: connection is an error even outside the run (a listener must stay in the room)
        self.listener = isinstance(spec.job, FanoutRecvJob)
        self.deadline_ns = 0
        self.t_go = self.t_last = self.t_first = self.t_ramped = 0
        self.setup_s = 0.0
        self.unanswered = 0

    # ----------------------------------------------------------------- bookkeeping
    def set_state(self, state: WorkerState) -> None:
        self.counters[self.base + Slot.STATE] = state

    def flush(self) -> None:
        c, b = self.counters, self.base
        c[b + Slot.COUNT] = self.count
        c[b + Slot.ERRORS] = self.errors
        c[b + Slot.CONNS] = self.conns
        c[b + Slot.EXTRA] = self.extra
        c[b + Slot.SENT] = self.sent

    async def flusher(self) -> None:
        while True:
            self.flush()
            await asyncio.sleep(0.1)

    def record(self, now: int, t0: int) -> None:
        """One unit done at ``now`` that started at ``t0`` (ns)."""
        if len(self.samples) < SAMPLE_CAP:
            self.samples.append(now - t0)
        self.count += 1
        self.t_last = now

    def error(self, kind: str, n: int = 1) -> None:
        self.errors += n
        self.error_kinds[kind] += n

    def conn_lost(self) -> None:
        self.conns -= 1
        if self.running or self.listener:
            self.error("connection_lost")

    def may_send(self, now: int) -> bool:
        return self.running and self.sent < self.spec.budget.max_messages and now < self.deadline_ns

    def local_addr(self, i: int) -> tuple[str, int] | None:
        """The source address of connection ``i`` (round robin), or None for the default."""
        addrs = self.spec.connect.local_addrs
        return (addrs[(self.spec.wid + i) % len(addrs)], 0) if addrs else None

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

    async def pace(self, send_one: Callable[[], None]) -> None:
        """Open loop: ``rate`` sends per second, in 1 ms ticks, whatever the replies do."""
        rate = self.spec.budget.rate
        start = time.monotonic()
        sent = 0
        while self.may_send(time.monotonic_ns()):
            due = int((time.monotonic() - start) * rate)
            while sent < due and self.may_send(time.monotonic_ns()):
                send_one()
                sent += 1
            await asyncio.sleep(0.001)

    # ----------------------------------------------------------------------- stages
    def start(self) -> None:
        """The go: the run's clock and deadline start now."""
        self.t_go = time.monotonic_ns()
        self.deadline_ns = self.t_go + int(self.spec.budget.duration * 1e9)
        self.running = True
        self.set_state(WorkerState.RUNNING)

    async def ready_and_go(self, t_setup: float) -> None:
        """Report READY (setup took since ``t_setup``), wait for the parent's go, start."""
        self.setup_s = time.monotonic() - t_setup
        self.flush()
        self.set_state(WorkerState.READY)
        await wait_event(self.go)
        self.start()

    def result(self) -> WorkerResult:
        return WorkerResult(
            wid=self.spec.wid,
            job=self.spec.job.kind,
            count=self.count,
            errors=self.errors,
            error_kinds=dict(self.error_kinds),
            sent=self.sent,
            extra=self.extra,
            conns=self.conns,
            unanswered=self.unanswered,
            t_go=self.t_go,
            t_first=self.t_first,
            t_last=self.t_last,
            t_ramped=self.t_ramped,
            setup_s=self.setup_s,
            samples=self.samples.tobytes(),
            extra_samples=self.extra_samples.tobytes(),
        )

    async def main(self) -> WorkerResult:
        from netbus_bench.jobs import run_job

        flusher = asyncio.create_task(self.flusher())
        try:
            await run_job(self)
        finally:
            flusher.cancel()
            self.flush()
        return self.result()


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_main(spec: WorkerSpec, counters: Any, go: Any, stop: Any, hold: Any, out: Any) -> None:
    """Process entry point (multiprocessing spawn)."""
    _raise_nofile()
    worker = Worker(spec, counters, go, stop, hold)

    async def run() -> None:
        result = await worker.main()
        worker.set_state(WorkerState.DONE)
        out.put(result)
        # Keep connections open until the parent has taken its last measurements.
        await wait_event(stop, timeout=120)

    loop: LoopName = "asyncio" if spec.loop is Loop.ASYNCIO else "uvloop"
    try:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(run())
    except BaseException as exc:
        worker.set_state(WorkerState.FAILED)
        out.put(WorkerFailure(spec.wid, f"{exc!r}\n{traceback.format_exc()}"))
    finally:
        out.close()
        out.join_thread()
        os._exit(0)  # skip closing thousands of sockets one by one; the kernel does it
