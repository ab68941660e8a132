"""Each scenario's command line is generated from its option dataclasses and defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest
from netbus_bench.cli import bench
from netbus_bench.kinds import ClientKind, Database, LogLevel, Loop, Profiler, ScenarioName
from netbus_bench.options import Common, build
from netbus_bench.scenarios import SCENARIOS
from netbus_bench.scenarios.fanout import FanoutOptions
from netbus_bench.scenarios.login import LoginOptions
from netbus_bench.scenarios.relay import RelayOptions
from netbus_bench.scenarios.talkroom import TalkroomOptions


def _parse(scenario: str, args: list[str]) -> dict[str, Any]:
    command = bench.commands[scenario]
    ctx = command.make_context(scenario, args)
    return dict(ctx.params)


def test_every_scenario_is_a_subcommand() -> None:
    assert set(bench.commands) == {s.value for s in ScenarioName} == set(SCENARIOS)


def test_scenario_options_never_shadow_the_shared_ones() -> None:
    shared = {f.name for f in dataclasses.fields(Common)}
    for scenario in SCENARIOS.values():
        own = {f.name for f in dataclasses.fields(scenario.options)}
        assert not shared & own, scenario.name


def test_defaults_come_from_the_scenario() -> None:
    relay = _parse("relay", [])
    assert build(Common, relay) == Common(procs=1)
    assert build(RelayOptions, relay) == RelayOptions()
    talkroom = _parse("talkroom", [])
    assert build(Common, talkroom) == Common(procs=2, inflight=8)
    assert build(TalkroomOptions, talkroom).client is ClientKind.SDK
    assert build(Common, _parse("fanout", [])).setup_timeout == 300.0


def test_values_are_typed() -> None:
    values = _parse(
        "relay",
        [
            "--clients", "3", "--client", "sdk", "--no-baseline", "--profile", "py-spy",
            "--loop", "asyncio", "--log-level", "DEBUG", "--out", "o", "--quiet",
            "--gateway", "tcp://127.0.0.1:6080", "--pid", "gateway=12", "--pid", "echo=13",
        ],
    )  # fmt: skip
    common = build(Common, values)
    assert common.loop is Loop.ASYNCIO and common.log_level is LogLevel.DEBUG
    assert common.out == Path("o") and common.quiet
    assert common.gateway == "tcp://127.0.0.1:6080"
    assert common.pids == {"gateway": 12, "echo": 13}
    relay = build(RelayOptions, values)
    assert relay == RelayOptions(
        clients=3, client=ClientKind.SDK, baseline=False, profile=Profiler.PY_SPY
    )
    login = build(LoginOptions, _parse("login", ["--db", "mariadb"]))
    assert login.db is Database.MARIADB


@pytest.mark.parametrize(
    ("scenario", "args"),
    [
        ("relay", ["--gateway", "tcp://10.0.0.1:6080"]),  # only this machine is loaded
        ("ccu", ["--gateway-ws", "ws://192.168.1.2:6081/ws"]),
        ("relay", ["--pid", "gateway"]),
        ("fanout", ["--members", "1"]),  # one sender and at least one receiver
        ("ccu", ["--db", "both"]),  # ccu runs on one database
        ("relay", ["--profile", "perf"]),
    ],
)
def test_bad_values_are_refused(scenario: str, args: list[str]) -> None:
    with pytest.raises(click.BadParameter):
        _parse(scenario, args)


def test_fanout_members_default() -> None:
    assert build(FanoutOptions, _parse("fanout", [])).members == 1000
