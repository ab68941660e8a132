"""The named choices of the load tool, as enums: scenarios, jobs, clients, server roles.

Their values are what the command line accepts and what ``report.json`` shows, so a report
reads the same as before they were enums.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "ClientKind",
    "Database",
    "JobKind",
    "LogLevel",
    "Loop",
    "PhaseStage",
    "Profiler",
    "Role",
    "ScenarioName",
    "WorkerState",
]


class ScenarioName(StrEnum):
    """One ``netbus bench`` subcommand each (docs/benchmarks.md)."""

    RELAY = "relay"
    TALKROOM = "talkroom"
    FANOUT = "fanout"
    CCU = "ccu"
    LOGIN = "login"


class ClientKind(StrEnum):
    """How a worker talks to the gateway."""

    #: `netbus.client.Client`: futures matched by (stype, ctype), decoded bodies, pushes queued
    SDK = "sdk"
    #: a netbus `TcpLink` sending one pre-encoded frame and matching replies without decoding
    RAW = "raw"


class JobKind(StrEnum):
    """What a worker process does with its connections (one job type in `netbus_bench.spec`)."""

    REQUEST = "request"  #: closed-loop or paced request/reply (relay, talkroom)
    FANOUT_RECV = "fanout-recv"  #: room members timing every UserMsg push
    FANOUT_SEND = "fanout-send"  #: the one member that sends
    CCU = "ccu"  #: ramp WebSocket logins, then hold them with heartbeats
    LOGIN = "login"  #: connect, log in as a new guest, close, repeat


class Role(StrEnum):
    """A server process the bench starts or measures; the value names it in the report."""

    GATEWAY = "gateway"
    CENTER = "center"
    TALKROOM = "talkroom"
    ECHO = "echo"
    BASELINE_RELAY = "baseline-relay"
    BASELINE_ECHO = "baseline-echo"
    MARIADB = "mariadbd"


class Loop(StrEnum):
    """Event loop of the workers and of the servers started."""

    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class LogLevel(StrEnum):
    """Log level of the servers started (their logs go to ``<out>/logs/``)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Database(StrEnum):
    """Where the center keeps accounts: a temporary SQLite file or a scratch MariaDB database."""

    SQLITE = "sqlite"
    MARIADB = "mariadb"
    BOTH = "both"  #: login only: one phase on each


class Profiler(StrEnum):
    """relay: an extra phase with the gateway profiled (kept out of the clean numbers)."""

    NONE = "none"
    PY_SPY = "py-spy"
    CPROFILE = "cprofile"


class PhaseStage(StrEnum):
    """Where a phase is, as the live view shows it."""

    SETUP = "setup"  #: workers connecting and logging in
    RUNNING = "running"
    RAMP = "ramp"  #: ccu: connections ramping after the go
    HOLD = "hold"  #: ccu: holding them with heartbeats


class WorkerState(IntEnum):
    """A worker's stage, written to its slot of the shared counter array."""

    SETUP = 0
    READY = 1  #: connected (and logged in): waiting for the parent's go
    RUNNING = 2
    RAMPED = 3  #: ccu: the ramp is over, waiting for the hold
    DONE = 4
    FAILED = 5
