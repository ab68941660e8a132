"""The load tool's pure helpers: loopback guard, TOML writer, splitting, percentiles, profiles."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from netbus_bench.procs import check_loopback, toml_document
from netbus_bench.profiling import top_pyspy
from netbus_bench.spec import split
from netbus_bench.stats import latency_summary

from netbus.roles import Stype


@pytest.mark.parametrize(
    "target",
    ["tcp://127.0.0.1:6080", "ws://localhost:6081/ws", "127.0.0.2:9", "tcp://[::1]:6080"],
)
def test_loopback_targets_are_accepted(target: str) -> None:
    assert check_loopback(target) == target


@pytest.mark.parametrize(
    "target", ["tcp://10.0.0.1:6080", "ws://192.168.1.2:6081/ws", "8.8.8.8:53"]
)
def test_other_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        check_loopback(target)


def test_toml_document_round_trips() -> None:
    doc = {
        "log": {"level": "WARNING"},
        "gateway": {
            "id": "bench",
            "listeners": [{"kind": "tcp", "port": 0}, {"kind": "ws", "port": 0, "rate": 0.5}],
            "services": {"auth": {"stype": Stype.Auth, "addresses": ["127.0.0.1:1"]}},
        },
    }
    parsed = tomllib.loads(toml_document(doc))
    assert parsed["gateway"]["services"]["auth"]["stype"] == 2
    assert parsed["gateway"]["listeners"][1] == {"kind": "ws", "port": 0, "rate": 0.5}
    assert parsed["log"] == {"level": "WARNING"}


def test_split_is_even_and_complete() -> None:
    assert split(10, 3) == [4, 3, 3]
    assert sum(split(20_000, 7)) == 20_000


def test_latency_summary() -> None:
    samples = np.arange(1, 1001, dtype=np.int64) * 1_000_000  # 1..1000 ms
    lat = latency_summary(samples)
    assert lat["samples"] == 1000
    assert lat["max"] == 1000.0
    assert 499 <= lat["p50"] <= 501
    assert 989 <= lat["p99"] <= 991
    assert latency_summary(np.empty(0, np.int64))["p99"] is None


def test_top_pyspy_counts_self_and_inclusive(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "<module> (a.py:1);run (b.py:2);feed (framing.py:70) 3\n"
        "<module> (a.py:1);run (b.py:2);write (link.py:9) 1\n"
    )
    top = top_pyspy(raw)
    assert top["samples"] == 4
    assert top["self"][0] == {"function": "feed (framing.py)", "samples": 3, "percent": 75.0}
    assert {"function": "run (b.py)", "samples": 4, "percent": 100.0} in top["inclusive"]
