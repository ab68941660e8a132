"""Summaries of a gateway profile: the functions that use the most time, self and inclusive."""

from __future__ import annotations

import io
import pstats
import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["top_cprofile", "top_pyspy"]

_LINE_NO = re.compile(r":\d+\)$")


def _frame_name(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (path/file.py)``, with site-packages paths cut."""
    frame = _LINE_NO.sub(")", frame.strip())
    return re.sub(r"\(.*?(site-packages|lib/python3\.\d+)/", "(", frame)


def top_pyspy(path: Path, n: int = 20) -> dict[str, Any]:
    """Top functions from a ``py-spy record --format raw`` (collapsed stacks) file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"samples": 0, "self": [], "inclusive": []}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": c, "percent": round(100 * c / total, 1)}
            for name, c in counter.most_common(n)
        ]

    return {"samples": total, "self": table(self_time), "inclusive": table(inclusive)}


def top_cprofile(path: Path, n: int = 20) -> dict[str, Any]:
    """Top functions by own time from a cProfile dump; also writes ``<path>.txt``."""
    if not path.exists():
        return {"self": [], "note": "no profile written (did the gateway exit cleanly?)"}
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.sort_stats("tottime").print_stats(40)
    path.with_suffix(".txt").write_text(text.getvalue())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return {
        "total_s": round(total, 3),
        "self": [
            {
                "function": f"{func} ({Path(file).name}:{line})",
                "calls": v[1],
                "tottime_s": round(v[2], 4),
                "cumtime_s": round(v[3], 4),
                "percent": round(100 * v[2] / total, 1),
            }
            for (file, line, func), v in rows
        ],
    }
