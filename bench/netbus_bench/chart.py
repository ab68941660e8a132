"""``chart.png``: rate over time and latency percentiles per phase (matplotlib, Agg).

Imported only when a report is written, so ``netbus bench --help`` never loads matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_chart"]


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
