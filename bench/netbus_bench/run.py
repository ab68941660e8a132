"""Run one scenario end to end: databases, the shared prologue, phases, summary, targets."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from netbus_bench.cluster import Cluster, mariadb_database
from netbus_bench.kinds import Database
from netbus_bench.options import Common
from netbus_bench.report import machine_info
from netbus_bench.scenario import Accounts, Context, Scenario, open_target
from netbus_bench.stats import Phase
from netbus_bench.targets import load_targets

__all__ = ["run_scenario"]


def _raise_nofile() -> None:
    """The servers inherit the hard fd limit (ccu needs it); the workers raise their own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def _database(accounts: Accounts, console: Console, *, create: bool) -> Iterator[str | None]:
    """A scratch MariaDB database's URL for the run, or None (the center makes SQLite)."""
    if create and accounts.db is Database.MARIADB:
        with mariadb_database(accounts.mysql_url, console) as url:
            yield url
    else:
        yield None


def _params(common: Common, opts: Any) -> dict[str, Any]:
    params = dataclasses.asdict(common) | dataclasses.asdict(opts)
    params["out"] = str(params["out"]) if params["out"] is not None else None
    return params


def run_scenario(
    scenario: Scenario[Any], common: Common, opts: Any, out: Path, console: Console
) -> dict[str, Any]:
    """Run ``scenario`` with its options; returns the report (written by the caller).

    Raises:
        BenchError: a server or a worker failed; every server started is stopped first.
    """
    machine = machine_info()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _raise_nofile()
    cluster = Cluster(loop=common.loop, log_level=common.log_level, logs=logs, console=console)
    ctx = Context(scenario.name, common, cluster, console, out)
    topology = scenario.topology(opts)
    external = bool(common.gateway or topology.external_ws)
    databases = scenario.databases(opts)
    phases: list[Phase] = []
    t0 = time.monotonic()
    try:
        # A running cluster has its own database: load it once.
        for accounts in databases[:1] if external else databases:
            with _database(accounts, console, create=not external) as db_url:
                target = open_target(ctx, topology, database=accounts.db, db_url=db_url)
                try:
                    phases += scenario.phases(ctx, opts, target)
                finally:
                    cluster.stop(*target.started)
    finally:
        cluster.close()
    summary = scenario.summary(ctx, opts, phases)
    targets = load_targets()[scenario.name]
    return {
        "scenario": scenario.name,
        "machine": machine,
        "params": _params(common, opts),
        "wall_s": round(time.monotonic() - t0, 1),
        "note": (
            "Load generator and servers share this machine's "
            f"{os.cpu_count()} CPUs; numbers are noisy, compare ratios and CPU per message."
        ),
        "phases": phases,
        "summary": summary,
        "targets": [t.check(summary) for t in targets],
    }
