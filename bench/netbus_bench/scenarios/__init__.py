"""The five scenarios, one module each; `SCENARIOS` is the table the command line is built from."""

from __future__ import annotations

from typing import Any

from netbus_bench.kinds import ScenarioName
from netbus_bench.scenario import Scenario
from netbus_bench.scenarios.ccu import CCU
from netbus_bench.scenarios.fanout import FANOUT
from netbus_bench.scenarios.login import LOGIN
from netbus_bench.scenarios.relay import RELAY
from netbus_bench.scenarios.talkroom import TALKROOM

__all__ = ["SCENARIOS"]

#: every scenario by name, in the order ``netbus bench --help`` lists them
SCENARIOS: dict[ScenarioName, Scenario[Any]] = {
    s.name: s for s in (RELAY, TALKROOM, FANOUT, CCU, LOGIN)
}
