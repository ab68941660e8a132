"""ccu: ramp logged-in WebSocket connections on one gateway, hold them, report RSS per conn."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from typing import Any

import click

from netbus_bench.kinds import ClientKind, Database, Role, ScenarioName
from netbus_bench.options import Common, loopback, opt
from netbus_bench.procs import BenchError
from netbus_bench.scenario import Accounts, Context, Scenario, Target, Topology
from netbus_bench.spec import CcuJob, Connect
from netbus_bench.stats import Phase

__all__ = ["CCU", "CcuOptions"]

#: connections per source address before the tool spreads them (ephemeral ports per target)
_PER_SOURCE_ADDR = 25_000


@dataclass(frozen=True)
class CcuOptions:
    connections: int = opt(20_000, "Logged-in WebSocket connections to ramp to.")
    hb_interval: float = opt(5.0, "Seconds between heartbeats per connection while holding.")
    concurrency: int = opt(64, "Connects+logins in flight per worker during the ramp.")
    source_addrs: int = opt(
        0, "Spread clients over this many 127.0.0.x source addresses (0 = auto)."
    )
    db: Database = opt(
        Database.SQLITE, "Accounts database.", type=click.Choice(["sqlite", "mariadb"])
    )
    mysql_url: str = opt("mysql+asyncmy://root@127.0.0.1:3306", "MariaDB server (scratch db).")
    gateway_ws: str | None = opt(
        None,
        "Target a running gateway's WebSocket listener (ws://127.0.0.1:PORT/ws).",
        callback=loopback,
    )


def _layout(ctx: Context, opts: CcuOptions) -> tuple[int, tuple[str, ...]]:
    """Worker processes (each below the fd limit) and the source addresses to spread over."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    procs = max(ctx.common.procs, math.ceil(opts.connections / (hard - 200)))
    k = opts.source_addrs or max(1, math.ceil(opts.connections / _PER_SOURCE_ADDR))
    return procs, tuple(f"127.0.0.{i + 1}" for i in range(k)) if k > 1 else ()


def phases(ctx: Context, opts: CcuOptions, target: Target) -> list[Phase]:
    if target.ws_url is None:
        raise BenchError("ccu loads a WebSocket listener: pass --gateway-ws with --gateway")
    procs, addrs = _layout(ctx, opts)
    connect = Connect(
        target.ws_url,
        opts.connections,
        ClientKind.SDK,
        local_addrs=addrs,
        concurrency=opts.concurrency,
        setup_timeout=ctx.common.setup_timeout,
    )
    specs = ctx.specs(CcuJob(opts.hb_interval), connect, procs=procs)
    phase = ctx.phase(
        "ccu",
        specs,
        target.servers,
        "heartbeats",
        ramp=True,
        setup_timeout=ctx.common.setup_timeout,
    )
    return [phase]


def summary(ctx: Context, opts: CcuOptions, done: list[Phase]) -> dict[str, Any]:
    (phase,) = done
    procs, addrs = _layout(ctx, opts)
    gw_stats = phase["servers"].get(Role.GATEWAY, {})
    reached = phase["connections_logged_in"]
    still_open = phase["connections_reached"]
    before = gw_stats.get("rss_kib_before", 0)
    idle = gw_stats.get("rss_kib_ramped", 0)
    after = gw_stats.get("rss_kib_after", 0)
    return {
        "connections_target": opts.connections,
        "connections_logged_in": reached,
        "connections_open_after_hold": still_open,
        "ramp_s": phase["ramp_s"],
        "ramp_logins_per_s": round(reached / phase["ramp_s"], 1) if phase["ramp_s"] else None,
        "gateway_rss_kib_before": before or None,
        "gateway_rss_kib_after_ramp": idle or None,
        "gateway_rss_kib_after_hold": after or None,
        "rss_kib_per_idle_connection": (
            round((idle - before) / reached, 2) if reached and idle else None
        ),
        "rss_kib_per_connection_after_hold": (
            round((after - before) / still_open, 2) if still_open and after else None
        ),
        "heartbeats_per_s": phase["throughput_per_s"],
        "errors": phase["errors"],
        "error_kinds": phase["error_kinds"],
        "worker_processes": procs,
        "source_addresses": max(1, len(addrs)),
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "database": opts.db,
    }


CCU = Scenario(
    name=ScenarioName.CCU,
    help="Ramp logged-in WebSocket connections on one gateway, hold them, report RSS per conn.",
    options=CcuOptions,
    defaults=Common(procs=4, setup_timeout=600.0),
    topology=lambda opts: Topology(external_ws=opts.gateway_ws),
    phases=phases,
    summary=summary,
    databases=lambda opts: (Accounts(opts.db, opts.mysql_url),),
)
