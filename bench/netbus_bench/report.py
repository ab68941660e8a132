"""The benchmark report: ``report.json``, the machine it ran on, and the terminal summary."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

__all__ = ["machine_info", "print_summary", "write_report"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    """Read-only git in the directory of the netbus code measured ("" outside a checkout)."""
    import netbus

    here = Path(netbus.__file__ or ".").parent
    try:
        out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, Python, uvloop, load, git commit (read-only git)."""
    try:
        import uvloop

        # uvloop re-exports __version__ without listing it in __all__.
        uvloop_version = uvloop.__version__  # type: ignore[attr-defined]
    except ImportError:
        uvloop_version = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "uvloop": uvloop_version,
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "git_commit": _git("rev-parse", "--short", "HEAD") or None,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """``<out>/report.json`` (docs/benchmarks.md, "Report")."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def print_summary(console: Console, report: dict[str, Any]) -> None:
    """Phases, server CPU and memory, the summary and the targets, as the run ends."""
    table = Table(title=f"netbus bench {report['scenario']}", title_justify="left")
    for col in ("phase", "unit", "rate /s", "count", "errors", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    servers = Table(title="server CPU and memory", title_justify="left")
    for col in ("phase", "role", "CPU µs/unit", "CPU util", "RSS MiB"):
        servers.add_column(col, justify="right")
    for phase in report["phases"]:
        lat = phase["latency_ms"]
        table.add_row(
            phase["name"],
            phase["unit"],
            f"{phase['throughput_per_s']:,.0f}",
            f"{phase['count']:,}",
            str(phase["errors"]),
            _fmt(lat.get("p50")),
            _fmt(lat.get("p99")),
            _fmt(lat.get("max")),
        )
        for role, st in phase["servers"].items():
            per = st.get("cpu_s_per_1k")
            servers.add_row(
                phase["name"],
                role,
                "-" if per is None else f"{per * 1000:.1f}",
                f"{st['cpu_util']:.2f}",
                f"{st['rss_kib_after'] / 1024:.1f}",
            )
    console.print(table)
    console.print(servers)
    for key, value in report["summary"].items():
        console.print(f"  {key}: {value}")
    for target in report["targets"]:
        mark = {True: "[green]met", False: "[red]missed", None: "[yellow]n/a"}[target["met"]]
        console.print(
            f"  target {target['name']}: {target['target']} → {target['measured']} {mark}"
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
