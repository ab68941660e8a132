"""talkroom: SendMsg round trips (JSON) through gateway and talkroom, peak and at half of peak."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netbus.protocol.header import ProtoType
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd

from netbus_bench.kinds import ClientKind, Role, ScenarioName
from netbus_bench.options import Common, opt
from netbus_bench.scenario import Context, Scenario, Target, Topology
from netbus_bench.scenarios.common import need_url
from netbus_bench.spec import Connect, RequestJob
from netbus_bench.stats import Phase

__all__ = ["TALKROOM", "TalkroomOptions"]

UNIT = "round trips"


@dataclass(frozen=True)
class TalkroomOptions:
    clients: int = opt(2, "Logged-in members in total (each SendMsg is also pushed to the others).")
    client: ClientKind = opt(
        ClientKind.SDK,
        "sdk = netbus.client.Client; raw = pre-encoded frames on a netbus TcpLink "
        "(less client CPU, for the high-rate runs).",
    )
    rooms: int = opt(1, "Talkroom processes (one room each); users spread over them by uid.")
    half: bool = opt(True, "Also run paced at half the measured peak (for the p99 target).")
    baseline: bool = opt(True, "Also send the same bytes through the bare uvloop relay.")


def phases(ctx: Context, opts: TalkroomOptions, target: Target) -> list[Phase]:
    c = ctx.common
    job = RequestJob(
        Stype.TalkRoom, TalkroomCmd.SendMsg, ProtoType.JSON, "x" * c.payload, c.inflight
    )
    done: list[Phase] = []
    if target.baseline_url:
        connect = Connect(
            target.baseline_url,
            opts.clients,
            opts.client,
            login=False,
            setup_timeout=c.setup_timeout,
        )
        specs = ctx.specs(job, connect, rate=0.0)
        done.append(ctx.phase("baseline", specs, target.baseline_servers, UNIT))
    members = Connect(
        need_url(target), opts.clients, opts.client, enter=True, setup_timeout=c.setup_timeout
    )
    peak = ctx.phase(
        "talkroom" if c.rate else "talkroom-peak", ctx.specs(job, members), target.servers, UNIT
    )
    done.append(peak)
    if opts.half and not c.rate and peak["throughput_per_s"] > 0:
        specs = ctx.specs(job, members, rate=peak["throughput_per_s"] / 2)
        done.append(ctx.phase("talkroom-half", specs, target.servers, UNIT))
    return done


def summary(ctx: Context, opts: TalkroomOptions, done: list[Phase]) -> dict[str, Any]:
    peak = next(p for p in done if p["name"] != "baseline" and p["name"] != "talkroom-half")
    half = next((p for p in done if p["name"] == "talkroom-half"), None)
    base = next((p for p in done if p["name"] == "baseline"), None)
    base_rate = base["throughput_per_s"] if base else None
    return {
        "talkroom_round_trips_per_s": peak["throughput_per_s"],
        "baseline_round_trips_per_s": base_rate,
        "ratio_talkroom_to_baseline": (
            round(peak["throughput_per_s"] / base_rate, 3) if base_rate else None
        ),
        "half_rate_target_per_s": round(peak["throughput_per_s"] / 2, 1) if half else None,
        "half_rate_achieved_per_s": half["throughput_per_s"] if half else None,
        "half_rate_p99_ms": half["latency_ms"]["p99"] if half else None,
        "pushes_per_round_trip": (
            round(peak["pushes_received"] / peak["count"], 3) if peak["count"] else None
        ),
        "rooms": opts.rooms,
    }


TALKROOM = Scenario(
    name=ScenarioName.TALKROOM,
    help="SendMsg round trips (JSON) through gateway and talkroom, peak and at half of peak.",
    options=TalkroomOptions,
    defaults=Common(procs=2, inflight=8),
    topology=lambda opts: Topology({Role.TALKROOM: opts.rooms}, baseline=opts.baseline),
    phases=phases,
    summary=summary,
)
