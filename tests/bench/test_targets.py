"""Acceptance targets come from targets.toml and are checked against a report's summary."""

from __future__ import annotations

import pytest
from netbus_bench.kinds import ScenarioName
from netbus_bench.targets import Op, load_targets, parse_targets


def test_every_scenario_ships_targets() -> None:
    targets = load_targets()
    assert set(targets) == set(ScenarioName)
    assert all(targets[s] for s in ScenarioName)
    relay = targets[ScenarioName.RELAY][0]
    assert relay.condition.metric == "ratio_netbus_to_baseline"
    assert relay.text == "≥ 0.8"


def test_met_missed_and_not_measured() -> None:
    (target,) = parse_targets('[[relay]]\nname = "r"\nmetric = "ratio"\nop = ">="\nvalue = 0.8\n')[
        ScenarioName.RELAY
    ]
    assert target.check({"ratio": 0.9}) == {
        "name": "r",
        "target": "≥ 0.8",
        "measured": 0.9,
        "met": True,
    }
    assert target.check({"ratio": 0.5})["met"] is False
    assert target.check({"ratio": None})["met"] is None
    assert target.check({})["met"] is None


def test_when_limits_a_target_to_some_runs() -> None:
    text = (
        '[[fanout]]\nname = "f"\nmetric = "rate"\nop = ">="\nvalue = 100000\nunit = "/s"\n'
        'when = { metric = "members", op = ">=", value = 1000 }\n'
    )
    (target,) = parse_targets(text)[ScenarioName.FANOUT]
    assert target.text == "≥ 100000/s"
    assert target.check({"rate": 50, "members": 1000})["met"] is False
    assert target.check({"rate": 50, "members": 5})["met"] is None
    assert target.check({"rate": 2e5, "members": 5}) == {
        "name": "f",
        "target": "≥ 100000/s",
        "measured": 2e5,
        "met": None,
    }


@pytest.mark.parametrize(
    ("op", "measured", "met"),
    [(">=", 5, True), (">", 5, False), ("<=", 5, True), ("<", 5, False), ("<", 4.9, True)],
)
def test_operators(op: str, measured: float, met: bool) -> None:
    (target,) = parse_targets(f'[[ccu]]\nmetric = "m"\nop = "{op}"\nvalue = 5\n')[ScenarioName.CCU]
    assert Op(op).holds(measured, 5) is met
    assert target.check({"m": measured})["met"] is met
    assert target.name == "m"  # the metric when unnamed


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[nope]]\nmetric = "m"\nop = ">"\nvalue = 1\n', "unknown scenario"),
        ('[[relay]]\nmetric = "m"\nop = "=="\nvalue = 1\n', "needs metric, op"),
        ('[[relay]]\nmetric = "m"\nop = ">"\n', "needs metric, op"),
        ('[[relay]]\nmetric = "m"\nop = ">"\nvalue = "1"\n', "value a number"),
        ('[[relay]]\nmetric = "m"\nop = ">"\nvalue = 1\nlimit = 2\n', "unknown keys"),
    ],
)
def test_malformed_targets_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_targets(text)
