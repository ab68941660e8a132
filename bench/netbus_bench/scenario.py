"""A scenario as data: its options, its servers (the shared prologue), its phases, its summary.

Every scenario runs the same way (`netbus_bench.run`): for each database it asks for, the
prologue starts the servers its `Topology` names (center, services, gateway and, when asked,
the bare baseline) or takes the running cluster given by ``--gateway``, and probes the
gateway; then the scenario's ``phases`` drive load through `Context.phase`, and its
``summary`` reduces the phases to the numbers the acceptance targets are checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from netbus_bench.cluster import Cluster, gateway_urls, local_db_pid, probe, tcp_url
from netbus_bench.kinds import Database, Role, ScenarioName
from netbus_bench.options import Common
from netbus_bench.procs import ServerProc
from netbus_bench.spec import Budget, Connect, Job, WorkerSpec, worker_specs
from netbus_bench.stats import Phase

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Accounts", "Context", "Scenario", "Target", "Topology", "open_target"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Accounts:
    """Where one prologue's center keeps accounts (a scratch database on ``mysql_url``)."""

    db: Database = Database.SQLITE
    mysql_url: str = "mysql+asyncmy://root@127.0.0.1:3306"


@dataclass(frozen=True, slots=True)
class Topology:
    """The servers a scenario loads, started by the shared prologue."""

    #: service role -> instances (one room per talkroom process); the center always runs
    services: dict[Role, int] = field(default_factory=dict)
    #: also start the bare uvloop relay and echo (the no-framework floor)
    baseline: bool = False
    #: a running gateway's WebSocket URL to load instead of starting one (ccu)
    external_ws: str | None = None

    @property
    def probed(self) -> Role | None:
        """The service the probe sends one request to (the first one), if any."""
        return next(iter(self.services), None)


@dataclass
class Target:
    """What the prologue gives the phases: where to connect and which pids to measure."""

    url: str | None  #: the gateway's TCP URL (None: only a WebSocket URL was given)
    ws_url: str | None
    servers: dict[str, int]  #: report name -> pid, measured in every netbus phase
    started: list[ServerProc] = field(default_factory=list)
    baseline_url: str | None = None
    baseline_servers: dict[str, int] = field(default_factory=dict)
    database: Database = Database.SQLITE


@dataclass
class Context:
    """One run: shared options, the cluster, where the report and logs go."""

    scenario: ScenarioName
    common: Common
    cluster: Cluster
    console: Console
    out: Path

    def specs(
        self, job: Job, connect: Connect, *, procs: int | None = None, rate: float | None = None
    ) -> list[WorkerSpec]:
        """Worker specs for ``connect.conns`` connections over ``procs`` workers.

        ``procs`` and ``rate`` (over all workers) default to ``--procs`` and ``--rate``.
        """
        c = self.common
        return worker_specs(
            job,
            connect,
            Budget(c.duration, c.messages, c.rate if rate is None else rate),
            procs=c.procs if procs is None else procs,
            loop=c.loop,
        )

    def phase(
        self, name: str, specs: list[WorkerSpec], servers: dict[str, int], unit: str, **kw: Any
    ) -> Phase:
        """Run one phase (`netbus_bench.runner.run_phase`) with this run's console and time."""
        from netbus_bench.runner import run_phase

        return run_phase(
            name,
            specs,
            servers,
            console=self.console,
            unit=unit,
            duration=self.common.duration,
            **kw,
        )


@dataclass(frozen=True)
class Scenario(Generic[P]):
    """One ``netbus bench`` subcommand, described by what differs between scenarios."""

    name: ScenarioName
    help: str  #: the subcommand's help (first line: its summary)
    options: type[P]  #: its own options (`netbus_bench.options.opt` fields)
    defaults: Common  #: its defaults for the shared options
    topology: Callable[[P], Topology]
    phases: Callable[[Context, P, Target], list[Phase]]
    summary: Callable[[Context, P, list[Phase]], dict[str, Any]]
    #: the databases to run on, one prologue and set of phases each
    databases: Callable[[P], tuple[Accounts, ...]] = lambda _opts: (Accounts(),)


def _instance_names(role: Role, n: int) -> list[str]:
    """``talkroom`` for one instance, ``talkroom-0`` ... for several."""
    return [role.value] if n == 1 else [f"{role.value}-{i}" for i in range(n)]


def open_target(
    ctx: Context,
    topology: Topology,
    *,
    database: Database = Database.SQLITE,
    db_url: str | None = None,
    profile: Path | None = None,
) -> Target:
    """The shared prologue: start (or find) the servers, probe the gateway, return a target.

    With ``--gateway`` nothing is started: the phases load that cluster and measure the
    ``--pid`` processes. ``profile`` runs the gateway under cProfile, writing that file.

    Raises:
        BenchError: a server did not start, or the gateway did not answer the probe.
    """
    c, cluster = ctx.common, ctx.cluster
    if c.gateway or topology.external_ws:
        target = Target(c.gateway, topology.external_ws, dict(c.pids), database=database)
    else:
        center = cluster.center(db_url)
        started = [center]
        routes: dict[Role, list[ServerProc]] = {Role.CENTER: [center]}
        servers: dict[str, int] = {Role.CENTER.value: center.pid}
        for role, n in topology.services.items():
            procs = [cluster.service(role, name) for name in _instance_names(role, n)]
            routes[role] = procs
            started += procs
            servers |= {p.role: p.pid for p in procs}
        gw = cluster.gateway(routes, profile=profile)
        started.append(gw)
        url, ws_url = gateway_urls(gw)
        servers = {Role.GATEWAY.value: gw.pid, **servers}
        if database is Database.MARIADB and (db_pid := local_db_pid()) is not None:
            servers[Role.MARIADB.value] = db_pid
        target = Target(url, ws_url, servers, started, database=database)
    if target.url:
        probe(target.url, topology.probed)
    if topology.baseline:
        relay, echo = cluster.baseline()
        target.started += [echo, relay]
        target.baseline_url = tcp_url(relay)
        target.baseline_servers = {
            Role.BASELINE_RELAY.value: relay.pid,
            Role.BASELINE_ECHO.value: echo.pid,
        }
    return target
