"""One phase's numbers from its workers' results and the parent's /proc snapshots.

Percentiles are exact, over every worker's samples concatenated (numpy: a run keeps up to
4 M samples per worker, too many to sort in Python between phases; imported when a phase
ends, so the command line starts without it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netbus_bench.kinds import JobKind
from netbus_bench.spec import WorkerResult, WorkerSpec

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Measured", "Phase", "Snapshot", "latency_summary", "merge_phase"]

#: one phase of ``report.json`` (docs/benchmarks.md, "Report")
Phase = dict[str, Any]
#: role -> (CPU seconds, RSS KiB) of each measured server at one moment
Snapshot = dict[str, tuple[float, int]]


@dataclass(frozen=True, slots=True)
class Measured:
    """What the parent measured around the run (times: monotonic ns)."""

    setup_s: float
    before: Snapshot  #: at the go
    after: Snapshot  #: when the workers were done
    ramped: Snapshot | None  #: ccu: at the end of the ramp
    t_go: int
    t_end: int
    t_hold: int  #: ccu: when the hold started (0 otherwise)


def latency_summary(samples_ns: npt.NDArray[np.int64]) -> dict[str, float | int | None]:
    """p50/p90/p99/p99.9/max/mean in milliseconds over raw nanosecond samples."""
    import numpy as np

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


def _samples(chunks: list[bytes]) -> npt.NDArray[np.int64]:
    import numpy as np

    return np.concatenate(
        [np.frombuffer(c, dtype=np.int64) for c in chunks] or [np.empty(0, np.int64)]
    )


def _server_stats(
    servers: dict[str, int], m: Measured, rss_peak: dict[str, int], count: int
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for role, pid in servers.items():
        cpu0, rss0 = m.before[role]
        cpu1, rss1 = m.after[role]
        cpu = max(0.0, cpu1 - cpu0)
        entry = {
            "pid": pid,
            "cpu_s": round(cpu, 3),
            "cpu_s_per_1k": round(cpu / count * 1000, 5) if count else None,
            "cpu_util": round(cpu / ((m.t_end - m.t_go) / 1e9), 3),
            "rss_kib_before": rss0,
            "rss_kib_after": rss1,
            "rss_kib_peak": rss_peak.get(role, rss1),
        }
        if m.ramped is not None:
            entry["rss_kib_ramped"] = m.ramped[role][1]
            entry["cpu_s_ramp"] = round(m.ramped[role][0] - cpu0, 3)
        stats[role] = entry
    return stats


def _rates(t: list[float], counts: list[int]) -> list[float]:
    """Units per second between consecutive timeline ticks."""
    rates: list[float] = []
    for i in range(len(t)):
        dt = t[i] - (t[i - 1] if i else 0)
        rates.append(round((counts[i] - (counts[i - 1] if i else 0)) / dt, 1) if dt > 0 else 0.0)
    return rates


def merge_phase(
    name: str,
    specs: Sequence[WorkerSpec],
    results: Sequence[WorkerResult],
    servers: dict[str, int],
    m: Measured,
    timeline: dict[str, Any],
    rss_peak: dict[str, int],
    unit: str,
) -> Phase:
    """The phase's entry in ``report.json``: counts, rate, latency, server CPU and RSS."""
    jobs = {r.job for r in results}
    fanout = JobKind.FANOUT_RECV in jobs
    counted = [r for r in results if r.job is not JobKind.FANOUT_SEND] if fanout else results
    count = sum(r.count for r in counted)
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r.error_kinds)
    ccu = JobKind.CCU in jobs
    start = (m.t_hold or m.t_go) if ccu else m.t_go
    last = max((r.t_last for r in counted if r.count), default=0)
    window = max((last - start) / 1e9, 1e-9) if last else 0.0
    phase: Phase = {
        "name": name,
        "unit": unit,
        "workers": len(specs),
        "connections": sum(s.connect.conns for s in specs),
        "setup_s": round(m.setup_s, 3),
        "duration_s": round(window, 3),
        "count": count,
        "sent": sum(r.sent for r in results),
        "errors": sum(r.errors for r in results),
        "error_kinds": dict(kinds),
        "throughput_per_s": round(count / window if window else 0.0, 1),
        "latency_ms": latency_summary(_samples([r.samples for r in counted])),
        "servers": _server_stats(servers, m, rss_peak, count),
        "timeline": {
            "t": timeline["t"],
            "rate": _rates(timeline["t"], timeline["count"]),
            "conns": timeline["conns"],
            "extra": timeline["extra"],
            "rss_kib": timeline["rss_kib"],
        },
    }
    if fanout:
        send = [r for r in results if r.job is JobKind.FANOUT_SEND]
        phase["messages_sent"] = sum(r.count for r in send)
        phase["sender_rtt_ms"] = latency_summary(_samples([r.extra_samples for r in send]))
    else:
        phase["pushes_received"] = sum(r.extra for r in results)
    if ccu:
        phase["connections_logged_in"] = sum(r.extra for r in results)  # at the end of the ramp
        phase["connections_reached"] = sum(r.conns for r in results)  # still open after the hold
        ramp_end = max((r.t_ramped for r in results), default=m.t_go)
        phase["ramp_s"] = round((ramp_end - m.t_go) / 1e9, 3)
    return phase
