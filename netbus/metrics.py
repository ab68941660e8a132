"""Prometheus collectors for one role process, created once and passed to whoever counts.

Labels are bounded: stype/ctype come from the command table, unknown ones are folded into
``"other"`` so a hostile client cannot create label series at will. Never label by uid.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_KNOWN_STYPES = frozenset({0, 1, 2})
_KNOWN_CTYPES = frozenset({*range(0, 16), 10000})


def _label(value: int, known: frozenset[int]) -> str:
    return str(value) if value in known else "other"


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
        self.packets = Counter(
            "netbus_packets",
            "Packets by direction, stype and ctype",
            ["direction", "stype", "ctype"],
            registry=r,
        )
        self.bytes = Counter(
            "netbus_bytes",
            "cmd_buf bytes by direction, stype and ctype",
            ["direction", "stype", "ctype"],
            registry=r,
        )
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
        self._packet_children: dict[tuple[str, int, int], tuple[Counter, Counter]] = {}

    def packet(self, direction: str, stype: int, ctype: int, size: int) -> None:
        key = (direction, stype, ctype)
        children = self._packet_children.get(key)
        if children is None:
            labels = (direction, _label(stype, _KNOWN_STYPES), _label(ctype, _KNOWN_CTYPES))
            children = (self.packets.labels(*labels), self.bytes.labels(*labels))
            self._packet_children[key] = children
        children[0].inc()
        children[1].inc(size)

    def handler_done(self, stype: int, start: float) -> None:
        """Record a handler that began at ``perf_counter()`` value ``start`` and ended now."""
        self.handler_seconds.labels(_label(stype, _KNOWN_STYPES)).observe(perf_counter() - start)

    @contextmanager
    def time_handler(self, stype: int) -> Iterator[None]:
        start = perf_counter()
        try:
            yield
        finally:
            self.handler_done(stype, start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
