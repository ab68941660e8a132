"""login: new guest logins per second end to end, on SQLite and on MariaDB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netbus_bench.kinds import ClientKind, Database, Role, ScenarioName
from netbus_bench.options import Common, opt
from netbus_bench.scenario import Accounts, Context, Scenario, Target, Topology
from netbus_bench.scenarios.common import need_url
from netbus_bench.spec import Connect, LoginJob
from netbus_bench.stats import Phase

__all__ = ["LOGIN", "LoginOptions"]


@dataclass(frozen=True)
class LoginOptions:
    db: Database = opt(Database.BOTH, "Accounts database; both = one phase on each.")
    mysql_url: str = opt(
        "mysql+asyncmy://root@127.0.0.1:3306",
        "MariaDB server; a netbus_bench_<hex> database is created and dropped.",
    )
    concurrency: int = opt(16, "Bots per worker, each: connect, log in as a new guest, close.")


def phases(ctx: Context, opts: LoginOptions, target: Target) -> list[Phase]:
    c = ctx.common
    bots = Connect(need_url(target), opts.concurrency * c.procs, ClientKind.SDK)
    name = "external" if c.gateway else target.database.value
    return [ctx.phase(name, ctx.specs(LoginJob(), bots), target.servers, "logins")]


def summary(ctx: Context, opts: LoginOptions, done: list[Phase]) -> dict[str, Any]:
    out: dict[str, Any] = {f"{p['name']}_logins_per_s": p["throughput_per_s"] for p in done}
    for p in done:
        out[f"{p['name']}_login_p99_ms"] = p["latency_ms"]["p99"]
        center = p["servers"].get(Role.CENTER)
        if center:
            out[f"{p['name']}_center_cpu_s_per_1k"] = center["cpu_s_per_1k"]
    return out


def _databases(opts: LoginOptions) -> tuple[Accounts, ...]:
    both = (Database.SQLITE, Database.MARIADB)
    return tuple(
        Accounts(db, opts.mysql_url) for db in (both if opts.db is Database.BOTH else (opts.db,))
    )


LOGIN = Scenario(
    name=ScenarioName.LOGIN,
    help="New guest logins per second end to end, on SQLite and on MariaDB.",
    options=LoginOptions,
    defaults=Common(procs=2),
    topology=lambda opts: Topology(),
    phases=phases,
    summary=summary,
    databases=_databases,
)
