"""``netbus bench``: every scenario runs for about a second at tiny scale and writes its report.

These tests check that the tool works (servers start, workers load them, the report has the
promised keys and the chart is a PNG). They never assert anything about speed: the numbers
of a one-second run on a shared CI box mean nothing.

The five scenarios run as concurrent subprocesses (started once, by the first test that
needs one) so the whole file stays well under a minute. ``python -m netbus bench`` loads the
installed netbus-bench entry point; ``PYTHONPATH`` makes it run this checkout's sources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from netbus_bench.kinds import ScenarioName
from netbus_bench.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]

#: scenario -> extra arguments for a tiny, ~1 s run
SCENARIOS: dict[str, list[str]] = {
    "relay": ["--clients", "2", "--procs", "1"],
    # the baseline phase is relay's (same code): talkroom skips it to keep the file short
    "talkroom": ["--clients", "2", "--procs", "1", "--inflight", "2", "--no-baseline"],
    "fanout": ["--members", "5", "--procs", "1"],
    "ccu": ["--connections", "20", "--procs", "1", "--hb-interval", "0.2"],
    "login": ["--db", "sqlite", "--procs", "1", "--concurrency", "2", "--messages", "20"],
}
PHASES = {
    "relay": ["netbus", "baseline"],
    "talkroom": ["talkroom-peak", "talkroom-half"],
    "fanout": ["fanout"],
    "ccu": ["ccu"],
    "login": ["sqlite"],
}
SERVERS = {
    "netbus": {"gateway", "echo", "center"},
    "baseline": {"baseline-relay", "baseline-echo"},
    "talkroom-peak": {"gateway", "center", "talkroom"},
    "talkroom-half": {"gateway", "center", "talkroom"},
    "fanout": {"gateway", "center", "talkroom"},
    "ccu": {"gateway", "center"},
    "sqlite": {"gateway", "center"},
}
TIMEOUT = 100.0


class Run:
    def __init__(self, scenario: str, out: Path) -> None:
        self.scenario = scenario
        self.out = out
        argv = [
            sys.executable, "-m", "netbus", "bench", scenario,
            "--duration", "1", "--quiet", "--out", str(out), "--setup-timeout", "60",
            *SCENARIOS[scenario],
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
        paths = [str(ROOT), str(ROOT / "bench"), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        self.log = out.with_suffix(".log")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, deadline: float) -> int:
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"bench {self.scenario} still running after {TIMEOUT}s\n{self.output()}")

    def output(self) -> str:
        text = self.log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-40:])


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    wanted = [
        s
        for s in SCENARIOS
        if any(item.name == f"test_scenario[{s}]" for item in request.session.items)
    ] or list(SCENARIOS)
    base = tmp_path_factory.mktemp("bench")
    started = {s: Run(s, base / s) for s in wanted}
    deadline = time.monotonic() + TIMEOUT
    yield started, deadline
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _check_latency(lat: dict[str, Any]) -> None:
    for key in ("p50", "p90", "p99", "max", "mean", "samples"):
        assert key in lat, key
    assert lat["samples"] > 0
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


@pytest.mark.process
@pytest.mark.timeout(TIMEOUT + 20)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario(runs: Any, scenario: str) -> None:
    started, deadline = runs
    run: Run = started[scenario]
    code = run.wait(deadline)
    assert code == 0, run.output()
    report = orjson.loads((run.out / "report.json").read_bytes())
    for key in ("scenario", "machine", "params", "phases", "summary", "targets", "note"):
        assert key in report, key
    assert report["scenario"] == scenario
    for key in ("date", "nproc", "cpu_model", "python", "uvloop", "git_commit"):
        assert key in report["machine"], key
    assert [p["name"] for p in report["phases"]] == PHASES[scenario]
    for phase in report["phases"]:
        for key in ("unit", "count", "errors", "throughput_per_s", "duration_s", "timeline"):
            assert key in phase, key
        assert phase["count"] > 0, phase["name"]
        _check_latency(phase["latency_ms"])
        assert set(phase["servers"]) == SERVERS[phase["name"]]
        for stats in phase["servers"].values():
            for key in ("pid", "cpu_s", "cpu_s_per_1k", "rss_kib_before", "rss_kib_after"):
                assert key in stats, key
            assert stats["rss_kib_after"] > 0
    shipped = load_targets()[ScenarioName(scenario)]
    assert [t["name"] for t in report["targets"]] == [t.name for t in shipped]
    for target, spec in zip(report["targets"], shipped, strict=True):
        assert target["measured"] == report["summary"].get(spec.condition.metric)
        assert target["met"] in (True, False, None)
    png = (run.out / "chart.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    summary = report["summary"]
    if scenario == "relay":
        assert summary["ratio_netbus_to_baseline"] is not None
    elif scenario == "talkroom":
        assert summary["half_rate_p99_ms"] is not None
    elif scenario == "fanout":
        assert summary["messages_sent"] > 0
        assert summary["deliveries"] == summary["messages_sent"] * 4  # 4 receivers
    elif scenario == "ccu":
        assert summary["connections_logged_in"] == 20
        assert "rss_kib_per_idle_connection" in summary
    elif scenario == "login":
        assert summary["sqlite_logins_per_s"] > 0
        assert report["phases"][0]["count"] <= 20  # --messages bounds the run
