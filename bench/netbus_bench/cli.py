"""``netbus bench <scenario>``: the command line, built from the scenario table.

netbus finds this group through the ``netbus.commands`` entry point of this distribution and
loads it only when ``netbus bench`` is run. ``python -m netbus_bench`` runs it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from netbus_bench.kinds import ScenarioName
from netbus_bench.options import Common, build, click_options
from netbus_bench.scenarios import SCENARIOS

__all__ = ["bench"]


@click.group()
def bench() -> None:
    """Load tests against servers it starts on 127.0.0.1 (or a running local cluster).

    Each scenario writes report.json and chart.png into --out. Numbers on a shared or small
    machine are noisy: compare ratios and server CPU per 1,000 messages.
    """


def _run(name: ScenarioName, values: dict[str, Any]) -> None:
    from rich.console import Console

    from netbus_bench.chart import write_chart
    from netbus_bench.procs import BenchError
    from netbus_bench.report import print_summary, write_report
    from netbus_bench.run import run_scenario

    scenario = SCENARIOS[name]
    common = build(Common, values)
    opts = build(scenario.options, values)
    out = common.out or Path("bench-results") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console(quiet=common.quiet)
    console.print(f"netbus bench {name} → {out}")
    try:
        report = run_scenario(scenario, common, opts, out, console)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    json_path = write_report(out, report)
    png_path = write_chart(out, report)
    print_summary(console, report)
    console.print(f"report: {json_path}\nchart:  {png_path}")


def _command(name: ScenarioName) -> click.Command:
    scenario = SCENARIOS[name]

    def callback(**values: Any) -> None:
        _run(name, values)

    fn: Callable[..., Any] = callback
    for option in reversed(
        [*click_options(Common, scenario.defaults), *click_options(scenario.options)]
    ):
        fn = option(fn)
    return click.command(name.value, help=scenario.help)(fn)


for _name in ScenarioName:
    bench.add_command(_command(_name))
