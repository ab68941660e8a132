"""The benchmark report: ``report.json``, ``chart.png`` (matplotlib, Agg) and a rich summary."""

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

from netbus.bench.procs import repo_root

__all__ = ["machine_info", "print_summary", "write_chart", "write_report"]


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
    try:
        out = subprocess.run(
            ["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=5
        )
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
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def write_chart(out: Path, report: dict[str, Any]) -> Path:
    """Left: rate (or connections) over time per phase. Right: latency percentiles per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = report["phases"]
    ccu = report["scenario"] == "ccu"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    title = f"netbus bench {report['scenario']} · {report['machine']['date'][:10]}"
    if report["machine"].get("git_commit"):
        title += f" · {report['machine']['git_commit']}"
    fig.suptitle(title, fontsize=10)
    for phase in phases:
        tl = phase["timeline"]
        if ccu:
            left.plot(tl["t"], tl["conns"], label=f"{phase['name']} connections")
        else:
            left.plot(tl["t"], _smooth(tl["rate"]), label=phase["name"], linewidth=1.2)
    if ccu:
        left.set_ylabel("open connections")
        ax2 = left.twinx()
        for phase in phases:
            for role, series in phase["timeline"]["rss_kib"].items():
                if role == "gateway":
                    ax2.plot(
                        phase["timeline"]["t"],
                        [v / 1024 for v in series],
                        color="tab:red",
                        label="gateway RSS",
                    )
        ax2.set_ylabel("gateway RSS (MiB)", color="tab:red")
    else:
        left.set_ylabel(f"{phases[0]['unit']} / s" if phases else "/ s")
    left.set_xlabel("seconds since start" + ("" if ccu else " (1 s moving average)"))
    left.legend(fontsize=7, loc="lower right")
    left.grid(alpha=0.3)
    labels = ["p50", "p90", "p99", "max"]
    width = 0.8 / max(1, len(phases))
    for i, phase in enumerate(phases):
        lat = phase["latency_ms"]
        values = [lat.get(k) or 0 for k in labels]
        xs = [x + i * width for x in range(len(labels))]
        right.bar(xs, values, width=width, label=phase["name"])
    right.set_xticks([x + width * (len(phases) - 1) / 2 for x in range(len(labels))], labels)
    right.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    right.set_ylabel("latency (ms, log)")
    right.legend(fontsize=7)
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "chart.png"
    fig.savefig(path, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def _smooth(values: list[float], window: int = 4) -> list[float]:
    """Moving average over ``window`` samples (the timeline ticks every 0.25 s)."""
    out: list[float] = []
    acc = 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def print_summary(console: Console, report: dict[str, Any]) -> None:
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
