"""Run one benchmark phase: spawn workers, start them together, watch, measure, merge.

The parent never generates load. It starts the worker processes (``multiprocessing`` spawn),
waits until each reports READY, snapshots the servers' CPU time and RSS from /proc, releases
every worker at once, samples shared counters and /proc four times a second for the live view
and the timeline, snapshots again when the workers are done, and merges their latency samples
(`netbus_bench.stats`).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from netbus_bench.kinds import PhaseStage, WorkerState
from netbus_bench.procs import BenchError, cpu_seconds, rss_kib
from netbus_bench.spec import WorkerFailure, WorkerResult, WorkerSpec
from netbus_bench.stats import Measured, Phase, merge_phase
from netbus_bench.worker import SLOTS, Slot, worker_main

__all__ = ["run_phase"]

_TICK = 0.25


def _server_snapshot(servers: dict[str, int]) -> dict[str, tuple[float, int]]:
    return {role: (cpu_seconds(pid), rss_kib(pid)) for role, pid in servers.items()}


def _view(name: str, rows: dict[str, Any]) -> Table:
    table = Table(title=f"netbus bench · {name}", title_justify="left", expand=False)
    for key in rows:
        table.add_column(key, justify="right")
    table.add_row(*(str(v) for v in rows.values()))
    return table


def run_phase(
    name: str,
    specs: Sequence[WorkerSpec],
    servers: dict[str, int],
    *,
    console: Console,
    unit: str,
    duration: float,
    senders: set[int] | None = None,
    ramp: bool = False,
    setup_timeout: float = 120.0,
) -> Phase:
    """Run the workers of one phase and return its measurements.

    Args:
        servers: role name -> pid of the server processes to measure.
        unit: what one counted message is ("round trips", "deliveries", ...).
        senders: worker ids whose completion ends the phase (fanout: the sender; the
            receivers then get until their counts go quiet). Default: every worker.
        ramp: ccu: workers ramp after ``go`` and report RAMPED; the parent measures the
            servers then and releases the hold (heartbeat) stage.

    Raises:
        BenchError: a worker failed before the phase could start.
    """
    ctx = mp.get_context("spawn")
    specs = [replace(spec, wid=i) for i, spec in enumerate(specs)]
    n = len(specs)
    counters = ctx.RawArray("q", n * SLOTS)
    go, stop, hold = ctx.Event(), ctx.Event(), ctx.Event()
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_main,
            args=(spec, counters, go, stop, hold, out),
            name=f"bench-{name}-{spec.wid}",
            daemon=True,
        )
        for spec in specs
    ]
    senders = set(range(n)) if senders is None else senders
    results: dict[int, WorkerResult | WorkerFailure] = {}

    def collect(block_until: float | None = None) -> None:
        while True:
            timeout = None if block_until is None else max(0.0, block_until - time.monotonic())
            try:
                item = out.get(timeout=timeout) if timeout else out.get_nowait()
            except queue.Empty:
                return
            results[item.wid] = item
            if block_until is not None and len(results) == n:
                return

    def states() -> list[int]:
        return [counters[i * SLOTS + Slot.STATE] for i in range(n)]

    def total(slot: int, who: Sequence[int] | None = None) -> int:
        return sum(counters[i * SLOTS + slot] for i in (range(n) if who is None else who))

    for proc in procs:
        proc.start()
    timeline: dict[str, Any] = {"t": [], "count": [], "conns": [], "extra": [], "rss_kib": {}}
    for role in servers:
        timeline["rss_kib"][role] = []
    rss_peak = {role: 0 for role in servers}
    measured: Measured | None = None
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            # ---- setup: every worker READY
            t_setup = time.monotonic()
            while True:
                st = states()
                collect()
                failed = [r for r in results.values() if isinstance(r, WorkerFailure)]
                if failed:
                    raise BenchError(f"{name}: worker failed during setup:\n{failed[0].error}")
                dead = [p for p in procs if p.exitcode is not None]
                if dead:
                    raise BenchError(f"{name}: worker {dead[0].name} exited ({dead[0].exitcode})")
                if all(s == WorkerState.READY for s in st):
                    break
                if time.monotonic() - t_setup > setup_timeout:
                    raise BenchError(f"{name}: workers not ready in {setup_timeout:.0f}s")
                live.update(
                    _view(
                        name,
                        {
                            "stage": PhaseStage.SETUP.value,
                            "ready": f"{st.count(WorkerState.READY)}/{n}",
                            "conns": total(Slot.CONNS),
                            "errors": total(Slot.ERRORS),
                            "elapsed s": f"{time.monotonic() - t_setup:.1f}",
                        },
                    )
                )
                time.sleep(0.1)
            setup_s = time.monotonic() - t_setup
            before = _server_snapshot(servers)
            t_go = time.monotonic_ns()
            go.set()
            last_count, last_t = 0, time.monotonic()
            rate = 0.0
            hard_end = time.monotonic() + duration + (setup_timeout if ramp else 0) + 30
            quiet_since: float | None = None
            last_extra = -1
            ramped: dict[str, tuple[float, int]] | None = None
            t_hold = 0
            # ---- run
            while True:
                time.sleep(_TICK)
                st = states()
                now = time.monotonic()
                count = total(Slot.COUNT)
                rate = (count - last_count) / max(now - last_t, 1e-6)
                last_count, last_t = count, now
                t_rel = (time.monotonic_ns() - t_go) / 1e9
                timeline["t"].append(round(t_rel, 3))
                timeline["count"].append(count)
                timeline["conns"].append(total(Slot.CONNS))
                timeline["extra"].append(total(Slot.EXTRA))
                for role, pid in servers.items():
                    rss = rss_kib(pid)
                    timeline["rss_kib"][role].append(rss)
                    rss_peak[role] = max(rss_peak[role], rss)
                if ramp and ramped is None:
                    stage = PhaseStage.RAMP
                    if all(
                        s in (WorkerState.RAMPED, WorkerState.DONE, WorkerState.FAILED) for s in st
                    ):
                        ramped = _server_snapshot(servers)
                        t_hold = time.monotonic_ns()
                        hold.set()
                elif ramp:
                    stage = PhaseStage.HOLD
                else:
                    stage = PhaseStage.RUNNING
                live.update(
                    _view(
                        name,
                        {
                            "stage": stage.value,
                            "elapsed s": f"{t_rel:.1f}",
                            unit: f"{count:,}",
                            "rate /s": f"{rate:,.0f}",
                            "sent": f"{total(Slot.SENT):,}",
                            "extra": f"{total(Slot.EXTRA):,}",
                            "conns": f"{total(Slot.CONNS):,}",
                            "errors": total(Slot.ERRORS),
                        },
                    )
                )
                if any(st[i] == WorkerState.FAILED for i in range(n)):
                    break
                if all(st[i] in (WorkerState.DONE, WorkerState.FAILED) for i in senders):
                    if len(senders) == n:
                        break
                    # Receivers: wait until deliveries stop growing (bounded).
                    extra = total(Slot.COUNT, [i for i in range(n) if i not in senders])
                    if extra != last_extra:
                        last_extra, quiet_since = extra, now
                    elif quiet_since is not None and now - quiet_since >= 1.0:
                        break
                    if quiet_since is not None and now - quiet_since > 10:
                        break
                if now > hard_end:
                    console.print(f"[yellow]{name}: hard time limit reached; stopping workers")
                    break
            after = _server_snapshot(servers)
            t_end = time.monotonic_ns()
            stop.set()
            collect(block_until=time.monotonic() + 60)
            measured = Measured(setup_s, before, after, ramped, t_go, t_end, t_hold)
    finally:
        stop.set()
        go.set()
        hold.set()
        for proc in procs:
            proc.join(timeout=15)
            if proc.exitcode is None:
                proc.kill()
                proc.join(timeout=5)
    done = [r for r in results.values() if isinstance(r, WorkerResult)]
    failed = [r for r in results.values() if isinstance(r, WorkerFailure)]
    if failed:
        raise BenchError(f"{name}: worker failed:\n{failed[0].error}")
    if len(done) < n or measured is None:
        raise BenchError(f"{name}: only {len(done)} of {n} workers reported")
    done.sort(key=lambda r: r.wid)
    return merge_phase(name, specs, done, servers, measured, timeline, rss_peak, unit)
