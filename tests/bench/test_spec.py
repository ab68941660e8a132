"""Worker specs: connections, message budget and rate split over the workers of a phase."""

from __future__ import annotations

from netbus_bench.kinds import ClientKind, JobKind, Loop
from netbus_bench.spec import (
    Budget,
    CcuJob,
    Connect,
    FanoutRecvJob,
    FanoutSendJob,
    LoginJob,
    RequestJob,
    split,
    worker_specs,
)

from netbus.protocol.header import ProtoType


def test_split_is_even_and_complete() -> None:
    assert split(10, 3) == [4, 3, 3]
    assert sum(split(20_000, 7)) == 20_000


def test_worker_specs_split_connections_budget_and_rate() -> None:
    job = RequestJob(100, 1, ProtoType.BUF, {"seq": 1, "data": ""}, inflight=2)
    specs = worker_specs(
        job,
        Connect("tcp://127.0.0.1:1", 10, ClientKind.RAW),
        Budget(duration=5.0, max_messages=1001, rate=300.0),
        procs=3,
        loop=Loop.ASYNCIO,
    )
    assert [s.wid for s in specs] == [0, 1, 2]
    assert [s.connect.conns for s in specs] == [4, 3, 3]
    assert [s.budget.max_messages for s in specs] == [334, 334, 333]
    assert {s.budget.rate for s in specs} == {100.0}
    assert {s.budget.duration for s in specs} == {5.0}
    assert len({s.connect.tag for s in specs}) == 1 and specs[0].connect.tag
    assert all(s.job is job and s.loop is Loop.ASYNCIO for s in specs)


def test_never_more_workers_than_connections() -> None:
    specs = worker_specs(
        LoginJob(), Connect("tcp://127.0.0.1:1", 2), Budget(1.0, 10), procs=8, loop=Loop.UVLOOP
    )
    assert len(specs) == 2


def test_each_job_names_its_kind() -> None:
    kinds = {
        RequestJob(1, 5, ProtoType.JSON, "x").kind,
        FanoutRecvJob(10).kind,
        FanoutSendJob(10, 32).kind,
        CcuJob(5.0).kind,
        LoginJob().kind,
    }
    assert kinds == set(JobKind)
