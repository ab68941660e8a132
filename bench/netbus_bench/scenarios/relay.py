"""relay: client ↔ gateway ↔ echo service round trips (BUF, stype 100) vs a bare uvloop relay."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netbus.protocol.header import ProtoType

from netbus_bench.echo import ECHO_CTYPE, ECHO_STYPE
from netbus_bench.kinds import ClientKind, Profiler, Role, ScenarioName
from netbus_bench.options import Common, opt
from netbus_bench.procs import BenchError
from netbus_bench.scenario import Context, Scenario, Target, Topology, open_target
from netbus_bench.scenarios.common import median, need_url
from netbus_bench.spec import Connect, RequestJob
from netbus_bench.stats import Phase

__all__ = ["RELAY", "RelayOptions"]

UNIT = "round trips"


@dataclass(frozen=True)
class RelayOptions:
    clients: int = opt(32, "Connections in total.")
    client: ClientKind = opt(
        ClientKind.RAW,
        "sdk = netbus.client.Client; raw = pre-encoded frames on a netbus TcpLink "
        "(less client CPU, for the high-rate runs).",
    )
    baseline: bool = opt(True, "Also run the bare uvloop relay (netbus_bench.baseline_relay).")
    rounds: int = opt(1, "Alternate netbus and baseline phases this many times (medians reported).")
    profile: Profiler = opt(Profiler.NONE, "Add a phase with the gateway profiled.")


def _job(ctx: Context) -> RequestJob:
    body = {"seq": 1, "data": "x" * ctx.common.payload}
    return RequestJob(ECHO_STYPE, ECHO_CTYPE, ProtoType.BUF, body, ctx.common.inflight)


def _connect(ctx: Context, opts: RelayOptions, url: str, *, login: bool) -> Connect:
    return Connect(
        url, opts.clients, opts.client, login=login, setup_timeout=ctx.common.setup_timeout
    )


def phases(ctx: Context, opts: RelayOptions, target: Target) -> list[Phase]:
    job = _job(ctx)
    url = need_url(target)
    done: list[Phase] = []
    for r in range(opts.rounds):
        suffix = f"#{r + 1}" if opts.rounds > 1 else ""
        specs = ctx.specs(job, _connect(ctx, opts, url, login=True))
        done.append(ctx.phase(f"netbus{suffix}", specs, target.servers, UNIT))
        if target.baseline_url:
            specs = ctx.specs(job, _connect(ctx, opts, target.baseline_url, login=False))
            done.append(ctx.phase(f"baseline{suffix}", specs, target.baseline_servers, UNIT))
    if opts.profile is not Profiler.NONE and not ctx.common.gateway:
        done.append(_profiled(ctx, opts, job))
    return done


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _profiled(ctx: Context, opts: RelayOptions, job: RequestJob) -> Phase:
    """An extra netbus phase on a new gateway, profiled (kept out of the clean numbers)."""
    from netbus_bench.profiling import top_cprofile, top_pyspy

    topology = Topology({Role.ECHO: 1})
    if opts.profile is Profiler.PY_SPY:
        tool = _py_spy()
        if tool is None:
            raise BenchError("py-spy not found: pip install py-spy, or use --profile cprofile")
        target = open_target(ctx, topology)
        raw = ctx.out / "gateway-py-spy.txt"
        seconds = str(math.ceil(ctx.common.duration) + 8)
        gw_pid = str(target.servers[Role.GATEWAY.value])
        argv = ["record", "--pid", gw_pid, "--rate", "250", "--nonblocking", "--format", "raw"]
        spy = subprocess.Popen(
            [tool, *argv, "--duration", seconds, "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            specs = ctx.specs(job, _connect(ctx, opts, need_url(target), login=True))
            phase = ctx.phase("netbus+py-spy", specs, target.servers, UNIT)
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            try:
                spy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                spy.kill()
        ctx.cluster.stop(*target.started)
        return phase | {"profile": {"tool": "py-spy", "file": raw.name, **top_pyspy(raw)}}
    prof = ctx.out / "gateway.prof"
    target = open_target(ctx, topology, profile=prof)
    specs = ctx.specs(job, _connect(ctx, opts, need_url(target), login=True))
    phase = ctx.phase("netbus+cProfile", specs, target.servers, UNIT)
    # SIGTERM: the gateway exits normally and cProfile writes the file
    ctx.cluster.stop(*target.started)
    return phase | {"profile": {"tool": "cProfile", "file": prof.name, **top_cprofile(prof)}}


def summary(ctx: Context, opts: RelayOptions, done: list[Phase]) -> dict[str, Any]:
    # Medians over the rounds; the profiled phase ("netbus+...") is not one of them.
    nb = [p for p in done if p["name"].split("#")[0] == "netbus"]
    bl = [p for p in done if p["name"].split("#")[0] == "baseline"]
    nb_rate = median([p["throughput_per_s"] for p in nb])
    bl_rate = median([p["throughput_per_s"] for p in bl])

    def cpu(group: list[Phase], role: Role) -> float | None:
        values = [
            p["servers"][role]["cpu_s_per_1k"]
            for p in group
            if p["servers"].get(role, {}).get("cpu_s_per_1k") is not None
        ]
        return round(median(values), 5) if values else None

    gw_cpu, relay_cpu = cpu(nb, Role.GATEWAY), cpu(bl, Role.BASELINE_RELAY)
    return {
        "netbus_round_trips_per_s": round(nb_rate, 1),
        "baseline_round_trips_per_s": round(bl_rate, 1) if bl else None,
        "ratio_netbus_to_baseline": round(nb_rate / bl_rate, 3) if bl_rate else None,
        "gateway_cpu_s_per_1k": gw_cpu,
        "echo_cpu_s_per_1k": cpu(nb, Role.ECHO),
        "baseline_relay_cpu_s_per_1k": relay_cpu,
        "baseline_echo_cpu_s_per_1k": cpu(bl, Role.BASELINE_ECHO),
        "cpu_ratio_gateway_to_baseline_relay": (
            round(gw_cpu / relay_cpu, 2) if gw_cpu and relay_cpu else None
        ),
    }


RELAY = Scenario(
    name=ScenarioName.RELAY,
    help="Client ↔ gateway ↔ echo service round trips (BUF, stype 100) vs a bare uvloop relay.",
    options=RelayOptions,
    defaults=Common(procs=1),
    topology=lambda opts: Topology({Role.ECHO: 1}, baseline=opts.baseline),
    phases=phases,
    summary=summary,
)
