"""Acceptance targets, read from ``targets.toml`` and checked against a report's summary.

The numbers are data, not code: changing a target is an edit to the TOML file (its header
says what each key means), and every report lists each of its scenario's targets as met,
missed or n/a (not measured by that run).
"""

from __future__ import annotations

import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from netbus_bench.kinds import ScenarioName

__all__ = ["AcceptanceTarget", "Condition", "Op", "load_targets", "parse_targets"]


class Op(StrEnum):
    """How a measured value is compared with the threshold."""

    GE = ">="
    GT = ">"
    LE = "<="
    LT = "<"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    def holds(self, measured: float, value: float) -> bool:
        return _COMPARE[self](measured, value)


_SYMBOLS = {Op.GE: "≥", Op.GT: ">", Op.LE: "≤", Op.LT: "<"}
_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.GE: operator.ge,
    Op.GT: operator.gt,
    Op.LE: operator.le,
    Op.LT: operator.lt,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """``summary[metric] <op> value``; unknown (None) when the summary lacks the metric."""

    metric: str
    op: Op
    value: float

    def check(self, summary: Mapping[str, Any]) -> bool | None:
        measured = summary.get(self.metric)
        if not isinstance(measured, int | float) or isinstance(measured, bool):
            return None
        return self.op.holds(measured, self.value)


@dataclass(frozen=True, slots=True)
class AcceptanceTarget:
    """One target of one scenario, as ``report.json`` lists it."""

    name: str
    condition: Condition
    unit: str = ""
    when: Condition | None = None  #: applies only to runs where this holds

    @property
    def text(self) -> str:
        """The threshold as the report prints it, e.g. ``≥ 100000/s``."""
        return f"{self.condition.op.symbol} {self.condition.value:g}{self.unit}"

    def check(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """``{"name", "target", "measured", "met"}``; met is None when it does not apply."""
        met = self.condition.check(summary)
        if self.when is not None and not self.when.check(summary):
            met = None
        return {
            "name": self.name,
            "target": self.text,
            "measured": summary.get(self.condition.metric),
            "met": met,
        }


def _condition(raw: Mapping[str, Any], where: str) -> Condition:
    try:
        metric, op, value = raw["metric"], Op(raw["op"]), raw["value"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{where}: needs metric, op (>=, >, <=, <) and value: {exc}") from None
    if not isinstance(metric, str) or not isinstance(value, int | float):
        raise ValueError(f"{where}: metric must be a string and value a number")
    return Condition(metric, op, float(value))


def parse_targets(text: str) -> dict[ScenarioName, list[AcceptanceTarget]]:
    """Targets per scenario from TOML text.

    Raises:
        ValueError: an unknown scenario or key, or a malformed entry.
    """
    doc = tomllib.loads(text)
    targets: dict[ScenarioName, list[AcceptanceTarget]] = {s: [] for s in ScenarioName}
    for name, entries in doc.items():
        try:
            scenario = ScenarioName(name)
        except ValueError:
            raise ValueError(f"targets: unknown scenario {name!r}") from None
        for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            where = f"targets: [[{name}]] #{i + 1}"
            unknown = set(entry) - {"name", "metric", "op", "value", "unit", "when"}
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
            when = entry.get("when")
            targets[scenario].append(
                AcceptanceTarget(
                    name=str(entry.get("name", entry.get("metric"))),
                    condition=_condition(entry, where),
                    unit=str(entry.get("unit", "")),
                    when=None if when is None else _condition(when, f"{where} when"),
                )
            )
    return targets


def load_targets() -> dict[ScenarioName, list[AcceptanceTarget]]:
    """The targets shipped with the bench (``netbus_bench/targets.toml``)."""
    text = resources.files("netbus_bench").joinpath("targets.toml").read_text(encoding="utf-8")
    return parse_targets(text)
