"""Run one benchmark phase: spawn workers, start them together, watch, measure, merge.

The parent never generates load. It starts the worker processes (``multiprocessing`` spawn),
waits until each reports READY, snapshots the servers' CPU time and RSS from /proc, releases
every worker at once, samples shared counters and /proc four times a second for the live view
and the timeline, snapshots again when the workers are done, and merges their latency samples
(exact percentiles over the concatenated samples).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from netbus.bench.procs import BenchError, cpu_seconds, rss_kib
from netbus.bench.worker import (
    CONNS,
    COUNT,
    ERRORS,
    EXTRA,
    SENT,
    SLOTS,
    STATE,
    State,
    WorkerSpec,
    worker_main,
)

__all__ = ["BenchError", "latency_summary", "run_phase", "split"]

_STATE_NAMES = {
    State.SETUP: "setup",
    State.READY: "ready",
    State.RUNNING: "running",
    State.RAMPED: "ramped",
    State.DONE: "done",
    State.FAILED: "failed",
}
_TICK = 0.25


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def latency_summary(samples_ns: np.ndarray) -> dict[str, float | int | None]:
    """p50/p90/p99/p99.9/max/mean in milliseconds over raw nanosecond samples."""
    if samples_ns.size == 0:
        return dict.fromkeys(("p50", "p90", "p99", "p999", "max", "mean"), None) | {"samples": 0}
    ms = samples_ns / 1e6
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    return {
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "p999": round(float(p999), 4),
        "max": round(float(ms.max()), 4),
        "mean": round(float(ms.mean()), 4),
        "samples": int(ms.size),
    }


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
) -> dict[str, Any]:
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
    results: dict[int, dict[str, Any]] = {}

    def collect(block_until: float | None = None) -> None:
        while True:
            timeout = None if block_until is None else max(0.0, block_until - time.monotonic())
            try:
                item = out.get(timeout=timeout) if timeout else out.get_nowait()
            except queue.Empty:
                return
            results[item["wid"]] = item
            if block_until is not None and len(results) == n:
                return

    def states() -> list[int]:
        return [counters[i * SLOTS + STATE] for i in range(n)]

    def total(slot: int, who: Sequence[int] | None = None) -> int:
        return sum(counters[i * SLOTS + slot] for i in (range(n) if who is None else who))

    for proc in procs:
        proc.start()
    timeline: dict[str, Any] = {"t": [], "count": [], "conns": [], "extra": [], "rss_kib": {}}
    for role in servers:
        timeline["rss_kib"][role] = []
    rss_peak = {role: 0 for role in servers}
    status = "setup"
    measured: dict[str, Any] = {}
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            # ---- setup: every worker READY
            t_setup = time.monotonic()
            while True:
                st = states()
                collect()
                failed = [r for r in results.values() if "error" in r]
                if failed:
                    raise BenchError(f"{name}: worker failed during setup:\n{failed[0]['error']}")
                dead = [p for p in procs if p.exitcode is not None]
                if dead:
                    raise BenchError(f"{name}: worker {dead[0].name} exited ({dead[0].exitcode})")
                if all(s == State.READY for s in st):
                    break
                if time.monotonic() - t_setup > setup_timeout:
                    raise BenchError(f"{name}: workers not ready in {setup_timeout:.0f}s")
                live.update(
                    _view(
                        name,
                        {
                            "stage": "setup",
                            "ready": f"{st.count(State.READY)}/{n}",
                            "conns": total(CONNS),
                            "errors": total(ERRORS),
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
                count = total(COUNT)
                rate = (count - last_count) / max(now - last_t, 1e-6)
                last_count, last_t = count, now
                t_rel = (time.monotonic_ns() - t_go) / 1e9
                timeline["t"].append(round(t_rel, 3))
                timeline["count"].append(count)
                timeline["conns"].append(total(CONNS))
                timeline["extra"].append(total(EXTRA))
                for role, pid in servers.items():
                    rss = rss_kib(pid)
                    timeline["rss_kib"][role].append(rss)
                    rss_peak[role] = max(rss_peak[role], rss)
                if ramp and ramped is None:
                    status = "ramp"
                    if all(s in (State.RAMPED, State.DONE, State.FAILED) for s in st):
                        ramped = _server_snapshot(servers)
                        t_hold = time.monotonic_ns()
                        hold.set()
                elif ramp:
                    status = "hold"
                else:
                    status = "running"
                live.update(
                    _view(
                        name,
                        {
                            "stage": status,
                            "elapsed s": f"{t_rel:.1f}",
                            unit: f"{count:,}",
                            "rate /s": f"{rate:,.0f}",
                            "sent": f"{total(SENT):,}",
                            "extra": f"{total(EXTRA):,}",
                            "conns": f"{total(CONNS):,}",
                            "errors": total(ERRORS),
                        },
                    )
                )
                if any(st[i] == State.FAILED for i in range(n)):
                    break
                if all(st[i] in (State.DONE, State.FAILED) for i in senders):
                    if len(senders) == n:
                        break
                    # Receivers: wait until deliveries stop growing (bounded).
                    extra = total(COUNT, [i for i in range(n) if i not in senders])
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
            measured = {
                "setup_s": setup_s,
                "before": before,
                "after": after,
                "ramped": ramped,
                "t_go": t_go,
                "t_end": t_end,
                "t_hold": t_hold,
            }
    finally:
        stop.set()
        go.set()
        hold.set()
        for proc in procs:
            proc.join(timeout=15)
            if proc.exitcode is None:
                proc.kill()
                proc.join(timeout=5)
    failed = [r for r in results.values() if "error" in r]
    if failed:
        raise BenchError(f"{name}: worker failed:\n{failed[0]['error']}")
    if len(results) < n:
        raise BenchError(f"{name}: only {len(results)} of {n} workers reported")
    return _merge(name, specs, results, servers, measured, timeline, rss_peak, unit, senders)


def _merge(
    name: str,
    specs: Sequence[WorkerSpec],
    results: dict[int, dict[str, Any]],
    servers: dict[str, int],
    measured: dict[str, Any],
    timeline: dict[str, Any],
    rss_peak: dict[str, int],
    unit: str,
    senders: set[int],
) -> dict[str, Any]:
    rs = [results[i] for i in range(len(specs))]
    fanout = any(r["job"] == "fanout-recv" for r in rs)
    counted = [r for r in rs if r["job"] != "fanout-send"] if fanout else rs
    count = sum(r["count"] for r in counted)
    errors = sum(r["errors"] for r in rs)
    kinds: Counter[str] = Counter()
    for r in rs:
        kinds.update(r["error_kinds"])
    samples = np.concatenate(
        [np.frombuffer(r["samples"], dtype=np.int64) for r in counted] or [np.empty(0, np.int64)]
    )
    t_go = measured["t_go"]
    ccu = any(r["job"] == "ccu" for r in rs)
    start = (measured["t_hold"] or t_go) if ccu else t_go
    last = max((r["t_last"] for r in counted if r["count"]), default=0)
    window = max((last - start) / 1e9, 1e-9) if last else 0.0
    throughput = count / window if window else 0.0
    server_stats: dict[str, Any] = {}
    for role, pid in servers.items():
        cpu0, rss0 = measured["before"][role]
        cpu1, rss1 = measured["after"][role]
        cpu = max(0.0, cpu1 - cpu0)
        entry = {
            "pid": pid,
            "cpu_s": round(cpu, 3),
            "cpu_s_per_1k": round(cpu / count * 1000, 5) if count else None,
            "cpu_util": round(cpu / ((measured["t_end"] - t_go) / 1e9), 3),
            "rss_kib_before": rss0,
            "rss_kib_after": rss1,
            "rss_kib_peak": rss_peak.get(role, rss1),
        }
        if measured.get("ramped"):
            entry["rss_kib_ramped"] = measured["ramped"][role][1]
            entry["cpu_s_ramp"] = round(measured["ramped"][role][0] - cpu0, 3)
        server_stats[role] = entry
    t = timeline["t"]
    counts = timeline["count"]
    rates = [
        round((counts[i] - (counts[i - 1] if i else 0)) / (t[i] - (t[i - 1] if i else 0)), 1)
        if t[i] > (t[i - 1] if i else 0)
        else 0.0
        for i in range(len(t))
    ]
    phase: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "workers": len(specs),
        "connections": sum(s.conns for s in specs),
        "setup_s": round(measured["setup_s"], 3),
        "duration_s": round(window, 3),
        "count": count,
        "sent": sum(r["sent"] for r in rs),
        "errors": errors,
        "error_kinds": dict(kinds),
        "throughput_per_s": round(throughput, 1),
        "latency_ms": latency_summary(samples),
        "servers": server_stats,
        "timeline": {
            "t": t,
            "rate": rates,
            "conns": timeline["conns"],
            "extra": timeline["extra"],
            "rss_kib": timeline["rss_kib"],
        },
    }
    if fanout:
        send = [r for r in rs if r["job"] == "fanout-send"]
        sender_rtt = np.concatenate(
            [np.frombuffer(r["extra_samples"], dtype=np.int64) for r in send]
        )
        phase["messages_sent"] = sum(r["count"] for r in send)
        phase["sender_rtt_ms"] = latency_summary(sender_rtt)
    else:
        phase["pushes_received"] = sum(r["extra"] for r in rs)
    if ccu:
        phase["connections_logged_in"] = sum(r["extra"] for r in rs)  # at the end of the ramp
        phase["connections_reached"] = sum(r["conns"] for r in rs)  # still open after the hold
        ramp_end = max((r["t_ramped"] for r in rs), default=t_go)
        phase["ramp_s"] = round((ramp_end - t_go) / 1e9, 3)
    return phase
