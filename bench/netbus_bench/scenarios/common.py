"""Small helpers the scenario modules share."""

from __future__ import annotations

import statistics

from netbus_bench.procs import BenchError
from netbus_bench.scenario import Target

__all__ = ["median", "need_url"]


def median(values: list[float]) -> float:
    """The median, 0.0 for no values (a phase that did not run)."""
    return float(statistics.median(values)) if values else 0.0


def need_url(target: Target) -> str:
    """The gateway's TCP URL.

    Raises:
        BenchError: only a WebSocket URL is known (``--gateway-ws`` without ``--gateway``).
    """
    if target.url is None:
        raise BenchError("this scenario needs the gateway's TCP URL: pass --gateway")
    return target.url
