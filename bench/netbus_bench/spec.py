"""What a worker process is told to do, and what it reports back.

A `WorkerSpec` is a few small typed pieces: how to open the connections (`Connect`), how much
load to drive (`Budget`) and the job itself, one dataclass per `JobKind`. The worker dispatches
on the job's type, so a job carries exactly the fields it uses. Everything here is pickled to
the worker (``multiprocessing`` spawn) and back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from netbus.protocol.header import ProtoType

from netbus_bench.kinds import ClientKind, JobKind, Loop

__all__ = [
    "Budget",
    "CcuJob",
    "Connect",
    "FanoutRecvJob",
    "FanoutSendJob",
    "Job",
    "LoginJob",
    "RequestJob",
    "WorkerFailure",
    "WorkerResult",
    "WorkerSpec",
    "split",
    "worker_specs",
]


@dataclass(frozen=True, slots=True)
class Connect:
    """How a worker opens its connections, and what it does on each before the load starts."""

    url: str
    conns: int  #: connections of this worker
    client: ClientKind = ClientKind.SDK
    login: bool = True  #: log each connection in as a new guest
    enter: bool = False  #: then enter the talkroom
    local_addrs: tuple[str, ...] = ()  #: spread over these 127.0.0.x source addresses
    concurrency: int = 64  #: connections being set up at once
    setup_timeout: float = 60.0
    tag: str = ""  #: guest keys and names start with it (one per phase)


@dataclass(frozen=True, slots=True)
class Budget:
    """How long and how much: the worker stops at whichever of the two comes first."""

    duration: float
    max_messages: int
    rate: float = 0.0  #: units per second of this worker; 0 = closed loop


@dataclass(frozen=True, slots=True)
class RequestJob:
    """Request/reply on every connection: one frame, ``inflight`` at a time (relay, talkroom)."""

    kind: ClassVar[JobKind] = JobKind.REQUEST
    stype: int
    ctype: int
    proto_type: ProtoType
    body: Any
    inflight: int = 1


@dataclass(frozen=True, slots=True)
class FanoutRecvJob:
    """Room members that only listen and time each UserMsg by the send time in its text."""

    kind: ClassVar[JobKind] = JobKind.FANOUT_RECV
    room_size: int


@dataclass(frozen=True, slots=True)
class FanoutSendJob:
    """The one member that sends SendMsg with its send time, ``inflight`` at a time."""

    kind: ClassVar[JobKind] = JobKind.FANOUT_SEND
    room_size: int
    payload: int
    inflight: int = 1


@dataclass(frozen=True, slots=True)
class CcuJob:
    """Ramp WebSocket logins after the go, then hold them with heartbeats."""

    kind: ClassVar[JobKind] = JobKind.CCU
    hb_interval: float


@dataclass(frozen=True, slots=True)
class LoginJob:
    """``Connect.conns`` bots, each: connect, log in as a new guest, close, again."""

    kind: ClassVar[JobKind] = JobKind.LOGIN


Job = RequestJob | FanoutRecvJob | FanoutSendJob | CcuJob | LoginJob


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One worker process: its id (slot in the shared counters), loop, connections, job."""

    wid: int
    job: Job
    connect: Connect
    budget: Budget
    loop: Loop = Loop.UVLOOP


@dataclass(slots=True)
class WorkerResult:
    """What a worker puts on the result queue when its job is over (times: monotonic ns)."""

    wid: int
    job: JobKind
    count: int = 0  #: units completed (round trips, deliveries, heartbeats, logins)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    extra: int = 0  #: pushes seen (request), logged in after the ramp (ccu)
    conns: int = 0  #: connections open at the end
    unanswered: int = 0
    t_go: int = 0
    t_first: int = 0
    t_last: int = 0
    t_ramped: int = 0
    setup_s: float = 0.0
    samples: bytes = b""  #: int64 latencies in ns (array "q")
    extra_samples: bytes = b""  #: the fanout sender's own SendMsg round trips


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """A worker that raised: the repr and traceback, shown by the parent."""

    wid: int
    error: str


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def worker_specs(
    job: Job, connect: Connect, budget: Budget, *, procs: int, loop: Loop
) -> list[WorkerSpec]:
    """Split ``connect.conns``, the message budget and the rate over at most ``procs`` workers.

    Never more workers than connections; every worker of the phase shares one guest-key tag.
    """
    n = max(1, min(procs, connect.conns))
    tag = connect.tag or secrets.token_hex(3)
    return [
        WorkerSpec(
            wid=i,
            job=job,
            connect=replace(connect, conns=conns, tag=tag),
            budget=Budget(budget.duration, messages, budget.rate / n),
            loop=loop,
        )
        for i, (conns, messages) in enumerate(
            zip(split(connect.conns, n), split(budget.max_messages, n), strict=True)
        )
    ]
