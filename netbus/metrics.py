"""Prometheus collectors for one role process, created once and passed to whoever counts.

Labels are bounded, so a hostile client cannot create label series at will: an stype is
labelled by its number only once the process knows it (stype 0, the gateway control channel,
plus what the owner declares with `Metrics.add_stype`: a gateway its configured routes, a
service process its registered services); ctypes by number in the small ranges the framework
uses; anything else is folded into ``"other"``. Never label by uid.
"""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

_CONTROL_STYPE = 0  #: the gateway control channel (docs/protocol.md §7), known everywhere
_KNOWN_CTYPES = frozenset({*range(0, 16), 10000})


def _label(value: int, known: frozenset[int] | set[int]) -> str:
    return str(value) if value in known else "other"


class _PacketCollector(Collector):
    """Exports the plain packet/byte counters as ``netbus_packets_total``/``netbus_bytes_total``."""

    def __init__(self, cells: dict[tuple[str, str, str], list[int]]) -> None:
        self._cells = cells

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["direction", "stype", "ctype"]
        packets = CounterMetricFamily(
            "netbus_packets", "Packets by direction, stype and ctype", labels=labels
        )
        sizes = CounterMetricFamily(
            "netbus_bytes", "cmd_buf bytes by direction, stype and ctype", labels=labels
        )
        for key, (count, size) in list(self._cells.items()):
            packets.add_metric(list(key), count)
            sizes.add_metric(list(key), size)
        yield packets
        yield sizes


class Metrics:
    """All collectors of one role, in their own registry (so tests never share state)."""

    def __init__(self, role: str, registry: CollectorRegistry | None = None) -> None:
        self.role = role
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "netbus_connections", "Open connections by listener kind", ["kind"], registry=r
        )
        self.connections_total = Counter(
            "netbus_connections_accepted", "Accepted connections", ["kind"], registry=r
        )
        # Packets and bytes are the per-packet hot path: plain integers, read at scrape time.
        self._cells: dict[tuple[str, int, int], list[int]] = {}
        self._folded: dict[tuple[str, str, str], list[int]] = {}
        r.register(_PacketCollector(self._folded))
        self.protocol_errors = Counter(
            "netbus_protocol_errors", "Rejected input by kind", ["kind"], registry=r
        )
        self.dropped = Counter(
            "netbus_dropped", "Packets dropped, by reason", ["reason"], registry=r
        )
        self.logins = Counter("netbus_logins", "Login results", ["result"], registry=r)
        self.link_up = Gauge(
            "netbus_service_link_up", "1 if the link to a service is up", ["service"], registry=r
        )
        self.reconnects = Counter(
            "netbus_service_link_reconnects",
            "Service links re-established",
            ["service"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "netbus_handler_seconds",
            "Service handler latency",
            ["stype"],
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5),
        )
        self._handler_children: dict[int, Any] = {}
        self._stypes: set[int] = {_CONTROL_STYPE}

    def add_stype(self, stype: int) -> None:
        """Label ``stype`` by its number (a configured or registered service), not "other"."""
        self._stypes.add(stype)

    def packet(self, direction: str, stype: int, ctype: int, size: int) -> None:
        """Count one packet of ``size`` bytes (``direction`` is "in" or "out")."""
        cell = self._cells.get((direction, stype, ctype))
        if cell is None:
            cell = self._cell(direction, stype, ctype)
        cell[0] += 1
        cell[1] += size

    def _cell(self, direction: str, stype: int, ctype: int) -> list[int]:
        labels = (direction, _label(stype, self._stypes), _label(ctype, _KNOWN_CTYPES))
        cell = self._folded.setdefault(labels, [0, 0])
        if "other" not in labels:  # only known numbers are cached: hostile ones cannot grow it
            self._cells[(direction, stype, ctype)] = cell
        return cell

    def handler_done(self, stype: int, start: float) -> None:
        """Record a handler that began at ``perf_counter()`` value ``start`` and ended now."""
        child = self._handler_children.get(stype)
        if child is None:
            # Only registered services get here, so caching by stype stays bounded.
            child = self.handler_seconds.labels(_label(stype, self._stypes))
            self._handler_children[stype] = child
        child.observe(perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
