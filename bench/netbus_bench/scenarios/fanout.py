"""fanout: one sender, a room of N members: deliveries/s and delivery latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from netbus_bench.kinds import ClientKind, Role, ScenarioName
from netbus_bench.options import Common, opt
from netbus_bench.scenario import Context, Scenario, Target, Topology
from netbus_bench.scenarios.common import need_url
from netbus_bench.spec import Connect, FanoutRecvJob, FanoutSendJob
from netbus_bench.stats import Phase

__all__ = ["FANOUT", "FanoutOptions"]


@dataclass(frozen=True)
class FanoutOptions:
    members: int = opt(1000, "Room members including the one sender.", type=click.IntRange(min=2))
    concurrency: int = opt(32, "Logins/Enters in flight per worker during setup.")


def phases(ctx: Context, opts: FanoutOptions, target: Target) -> list[Phase]:
    c = ctx.common
    url = need_url(target)
    receivers = ctx.specs(
        FanoutRecvJob(opts.members),
        Connect(
            url,
            opts.members - 1,
            ClientKind.RAW,
            enter=True,
            concurrency=opts.concurrency,
            setup_timeout=c.setup_timeout,
        ),
        rate=0.0,
    )
    sender = ctx.specs(
        FanoutSendJob(opts.members, c.payload, c.inflight),
        Connect(url, 1, ClientKind.SDK, enter=True, setup_timeout=c.setup_timeout),
        procs=1,
    )
    phase = ctx.phase(
        "fanout",
        [*receivers, *sender],
        target.servers,
        "deliveries",
        senders={len(receivers)},
        setup_timeout=c.setup_timeout,
    )
    return [phase]


def summary(ctx: Context, opts: FanoutOptions, done: list[Phase]) -> dict[str, Any]:
    (phase,) = done
    receivers = opts.members - 1
    expected = phase["messages_sent"] * receivers
    return {
        "members": opts.members,
        "receivers": receivers,
        "messages_sent": phase["messages_sent"],
        "deliveries": phase["count"],
        "deliveries_expected": expected,
        "delivered_fraction": round(phase["count"] / expected, 4) if expected else None,
        "deliveries_per_s": phase["throughput_per_s"],
        "delivery_latency_p99_ms": phase["latency_ms"]["p99"],
        "sender_rtt_p99_ms": phase["sender_rtt_ms"]["p99"],
        "setup_s": phase["setup_s"],
    }


FANOUT = Scenario(
    name=ScenarioName.FANOUT,
    help="One sender, a room of N members: deliveries/s and delivery latency.",
    options=FanoutOptions,
    defaults=Common(procs=2, setup_timeout=300.0),
    topology=lambda opts: Topology({Role.TALKROOM: 1}),
    phases=phases,
    summary=summary,
)
