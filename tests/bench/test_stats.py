"""A phase's numbers from worker results and /proc snapshots (no processes involved)."""

from __future__ import annotations

from array import array

from netbus_bench.kinds import ClientKind, JobKind
from netbus_bench.spec import (
    Budget,
    Connect,
    FanoutRecvJob,
    FanoutSendJob,
    WorkerResult,
    WorkerSpec,
)
from netbus_bench.stats import Measured, merge_phase

S = 1_000_000_000  # ns


def _samples(*ms: int) -> bytes:
    return array("q", [m * 1_000_000 for m in ms]).tobytes()


def test_fanout_counts_deliveries_not_sends() -> None:
    connect = Connect("tcp://127.0.0.1:1", 2, ClientKind.RAW)
    specs = [
        WorkerSpec(0, FanoutRecvJob(3), connect, Budget(1.0, 10)),
        WorkerSpec(1, FanoutSendJob(3, 32), connect, Budget(1.0, 10)),
    ]
    t_go = 10 * S
    receiver = WorkerResult(0, JobKind.FANOUT_RECV, count=8, t_last=t_go + 2 * S)
    receiver.samples = _samples(*[5] * 8)
    sender = WorkerResult(1, JobKind.FANOUT_SEND, count=4, sent=4, t_last=t_go + S)
    sender.extra_samples = _samples(1, 2, 3, 4)
    results = [receiver, sender]
    m = Measured(
        setup_s=0.5,
        before={"gateway": (1.0, 1000)},
        after={"gateway": (1.8, 1200)},
        ramped=None,
        t_go=t_go,
        t_end=t_go + 4 * S,
        t_hold=0,
    )
    timeline = {"t": [1.0, 2.0], "count": [4, 8], "conns": [3, 3], "extra": [0, 0], "rss_kib": {}}
    phase = merge_phase("fanout", specs, results, {"gateway": 42}, m, timeline, {}, "deliveries")
    assert phase["count"] == 8  # the receivers' deliveries; the sender's 4 are messages_sent
    assert phase["messages_sent"] == 4
    assert phase["throughput_per_s"] == 4.0  # 8 deliveries over 2 s since the go
    assert phase["latency_ms"]["p50"] == 5.0 and phase["latency_ms"]["samples"] == 8
    assert phase["sender_rtt_ms"]["max"] == 4.0
    gateway = phase["servers"]["gateway"]
    assert gateway["cpu_s_per_1k"] == 100.0  # 0.8 s of CPU for 8 deliveries
    assert gateway["cpu_util"] == 0.2 and gateway["rss_kib_peak"] == 1200
    assert phase["timeline"]["rate"] == [4.0, 4.0]
    assert phase["connections"] == 4
