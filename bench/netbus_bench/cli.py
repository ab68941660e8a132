"""``netbus bench <scenario>``: the command line of the load tool."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["bench"]

#: per-scenario defaults for the shared options
_DEFAULTS: dict[str, dict[str, Any]] = {
    "relay": {"procs": 1, "clients": 32, "inflight": 1, "client": "raw", "setup": 120},
    "talkroom": {"procs": 2, "clients": 2, "inflight": 8, "client": "sdk", "setup": 120},
    "fanout": {"procs": 2, "clients": 0, "inflight": 1, "client": "raw", "setup": 300},
    "ccu": {"procs": 4, "clients": 0, "inflight": 1, "client": "sdk", "setup": 600},
    "login": {"procs": 2, "clients": 0, "inflight": 1, "client": "sdk", "setup": 120},
}


def _pid_pairs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    pids: dict[str, int] = {}
    for value in values:
        role, sep, pid = value.partition("=")
        if not sep or not pid.isdigit():
            raise click.BadParameter(f"expected ROLE=PID, got {value!r}")
        pids[role] = int(pid)
    return pids


def _loopback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from netbus.bench.procs import check_loopback

    try:
        return check_loopback(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _common(scenario: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    d = _DEFAULTS[scenario]
    options = [
        click.option(
            "--duration",
            type=float,
            default=10.0,
            show_default=True,
            help="Seconds of load per phase (ccu: of the hold after the ramp).",
        ),
        click.option(
            "--messages",
            type=int,
            default=5_000_000,
            show_default=True,
            help="At most this many requests per phase, over all workers.",
        ),
        click.option(
            "--procs",
            type=int,
            default=d["procs"],
            show_default=True,
            help="Load-generating worker processes.",
        ),
        click.option(
            "--inflight",
            type=int,
            default=d["inflight"],
            show_default=True,
            help="Requests in flight per connection (fanout: sender window).",
        ),
        click.option(
            "--rate",
            type=float,
            default=0.0,
            show_default=True,
            help="Paced requests/s over all workers (fanout: sender msgs/s); 0 = closed loop.",
        ),
        click.option(
            "--payload",
            type=int,
            default=32,
            show_default=True,
            help="Bytes of text in each message body.",
        ),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Report directory [default: bench-results/<scenario>-<timestamp>].",
        ),
        click.option(
            "--loop",
            type=click.Choice(["uvloop", "asyncio"]),
            default="uvloop",
            show_default=True,
            help="Event loop of the workers and servers.",
        ),
        click.option(
            "--gateway",
            callback=_loopback,
            default=None,
            help="Target a running cluster's TCP gateway (tcp://127.0.0.1:PORT).",
        ),
        click.option(
            "--pid",
            "pids",
            multiple=True,
            callback=_pid_pairs,
            help="ROLE=PID of a running cluster's process to measure (repeatable).",
        ),
        click.option(
            "--setup-timeout",
            type=float,
            default=d["setup"],
            show_default=True,
            help="Seconds allowed for connecting, logging in, entering (ccu: ramping).",
        ),
        click.option(
            "--log-level",
            default="WARNING",
            show_default=True,
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
            help="Log level of the servers started (logs go to <out>/logs/).",
        ),
        click.option("--quiet", is_flag=True, help="No live view or summary."),
    ]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _client_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--client",
        type=click.Choice(["raw", "sdk"]),
        default=default,
        show_default=True,
        help="sdk = netbus.client.Client; raw = pre-encoded frames on a netbus TcpLink "
        "(less client CPU, for the high-rate runs).",
    )


def _run(scenario: str, **kwargs: Any) -> None:
    from rich.console import Console

    from netbus.bench.report import print_summary, write_chart, write_report
    from netbus.bench.runner import BenchError
    from netbus.bench.scenarios import Options, run_scenario

    quiet = kwargs.pop("quiet")
    out: Path | None = kwargs.pop("out")
    out = out or Path("bench-results") / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console(quiet=quiet)
    defaults = _DEFAULTS[scenario]
    kwargs.setdefault("clients", defaults["clients"])
    kwargs.setdefault("client", defaults["client"])
    opts = Options(scenario=scenario, **kwargs)
    console.print(f"netbus bench {scenario} → {out}")
    try:
        report = run_scenario(opts, out, console)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    json_path = write_report(out, report)
    png_path = write_chart(out, report)
    print_summary(console, report)
    console.print(f"report: {json_path}\nchart:  {png_path}")


@click.group()
def bench() -> None:
    """Load tests against servers it starts on 127.0.0.1 (or a running local cluster).

    Each scenario writes report.json and chart.png into --out. Numbers on a shared or small
    machine are noisy: compare ratios and server CPU per 1,000 messages.
    """


@bench.command()
@_common("relay")
@_client_option("raw")
@click.option("--clients", type=int, default=32, show_default=True, help="Connections in total.")
@click.option(
    "--baseline/--no-baseline",
    default=True,
    show_default=True,
    help="Also run the bare uvloop relay (bench/baseline_relay.py).",
)
@click.option(
    "--rounds",
    type=int,
    default=1,
    show_default=True,
    help="Alternate netbus and baseline phases this many times (medians reported).",
)
@click.option(
    "--profile",
    type=click.Choice(["none", "py-spy", "cprofile"]),
    default="none",
    show_default=True,
    help="Add a phase with the gateway profiled.",
)
def relay(**kwargs: Any) -> None:
    """Client ↔ gateway ↔ echo service round trips (BUF, stype 100) vs a bare uvloop relay."""
    _run("relay", **kwargs)


@bench.command()
@_common("talkroom")
@_client_option("sdk")
@click.option(
    "--clients",
    type=int,
    default=2,
    show_default=True,
    help="Logged-in members in total (each SendMsg is also pushed to the others).",
)
@click.option(
    "--rooms",
    type=int,
    default=1,
    show_default=True,
    help="Talkroom processes (one room each); users spread over them by uid.",
)
@click.option(
    "--half/--no-half",
    default=True,
    show_default=True,
    help="Also run paced at half the measured peak (for the p99 target).",
)
@click.option("--baseline/--no-baseline", default=True, show_default=True)
def talkroom(**kwargs: Any) -> None:
    """SendMsg round trips (JSON) through gateway and talkroom, peak and at half of peak."""
    _run("talkroom", **kwargs)


@bench.command()
@_common("fanout")
@click.option(
    "--members",
    type=int,
    default=1000,
    show_default=True,
    help="Room members including the one sender.",
)
@click.option(
    "--concurrency",
    type=int,
    default=32,
    show_default=True,
    help="Logins/Enters in flight per worker during setup.",
)
def fanout(**kwargs: Any) -> None:
    """One sender, a room of N members: deliveries/s and delivery latency."""
    _run("fanout", **kwargs)


@bench.command()
@_common("ccu")
@click.option(
    "--connections",
    type=int,
    default=20_000,
    show_default=True,
    help="Logged-in WebSocket connections to ramp to.",
)
@click.option(
    "--hb-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between heartbeats per connection while holding.",
)
@click.option(
    "--concurrency",
    type=int,
    default=64,
    show_default=True,
    help="Connects+logins in flight per worker during the ramp.",
)
@click.option(
    "--source-addrs",
    type=int,
    default=0,
    show_default=True,
    help="Spread clients over this many 127.0.0.x source addresses (0 = auto).",
)
@click.option("--db", type=click.Choice(["sqlite", "mariadb"]), default="sqlite", show_default=True)
@click.option("--mysql-url", default="mysql+asyncmy://root@127.0.0.1:3306", show_default=True)
@click.option(
    "--gateway-ws",
    callback=_loopback,
    default=None,
    help="Target a running gateway's WebSocket listener (ws://127.0.0.1:PORT/ws).",
)
def ccu(**kwargs: Any) -> None:
    """Ramp logged-in WebSocket connections on one gateway, hold them, report RSS per conn."""
    _run("ccu", **kwargs)


@bench.command()
@_common("login")
@click.option(
    "--db", type=click.Choice(["sqlite", "mariadb", "both"]), default="both", show_default=True
)
@click.option(
    "--mysql-url",
    default="mysql+asyncmy://root@127.0.0.1:3306",
    show_default=True,
    help="MariaDB server; a netbus_bench_<hex> database is created and dropped.",
)
@click.option(
    "--concurrency",
    type=int,
    default=16,
    show_default=True,
    help="Bots per worker, each: connect, log in as a new guest, close.",
)
def login(**kwargs: Any) -> None:
    """New guest logins per second end to end, on SQLite and on MariaDB."""
    _run("login", **kwargs)
