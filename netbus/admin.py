"""The admin HTTP app every server serves on its own port: ``GET /metrics`` and ``GET /healthz``.

An aiohttp ``AppRunner`` + ``TCPSite`` on the server's event loop (never ``run_app``), so it
shares the loop with the game listeners and costs no thread. ``/metrics`` is the server's
Prometheus text; ``/healthz`` is JSON::

    {"role": "gateway", "status": "ok", "uptime": 12.3, ...facts...}

Any server can have one: it implements `HealthReporter` (its `Metrics` and a
``health_facts()`` read on each request; nothing is cached, and nothing on the packet path
knows this app exists). Where each role's app listens comes from `admin_addresses`.
docs/operations.md describes the format and the metric names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from netbus.config import Settings
from netbus.layout import service_slots
from netbus.metrics import Metrics

__all__ = [
    "AdminServer",
    "Facts",
    "HealthReporter",
    "admin_addresses",
    "admin_targets",
    "bound_port",
    "build_admin",
    "json_response",
    "metrics_response",
]

log = logging.getLogger("netbus.admin")

Facts = Callable[[], dict[str, Any]]


class HealthReporter(Protocol):
    """What a server gives its admin app (`Gateway` and `ServiceServer` implement it)."""

    @property
    def metrics(self) -> Metrics:
        """The server's collectors, rendered by ``/metrics``."""
        ...

    def health_facts(self) -> dict[str, Any]:
        """Fields added to ``/healthz``, read on each request (JSON-serialisable)."""
        ...


def json_response(doc: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def metrics_response(metrics: Metrics) -> web.Response:
    """The Prometheus text exposition of ``metrics`` (content type from prometheus_client)."""
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


class AdminServer:
    """``/metrics`` and ``/healthz`` of one role on ``host:port`` (0 picks a free port).

    Args:
        role: the role name reported in ``/healthz``.
        metrics: the role's collectors.
        facts: extra ``/healthz`` fields, read on each request; an exception there turns
            the answer into status "error" with code 500 rather than a dropped connection.
        clock: monotonic seconds, for ``uptime`` (tests pass a fake).
    """

    def __init__(
        self,
        role: str,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        facts: Facts | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.metrics = metrics
        self.host = host
        self.requested_port = port
        self.facts = facts
        self.port = 0
        self._clock = clock
        self.started = clock()
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve. Raises OSError if the port is taken."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = bound_port(runner)
        self.started = self._clock()
        log.info("%s: admin HTTP on http://%s:%d/", self.role, self.host, self.port)

    async def close(self) -> None:
        """Stop serving; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, document) of ``/healthz``."""
        doc: dict[str, Any] = {
            "role": self.role,
            "status": "ok",
            "uptime": round(self._clock() - self.started, 3),
        }
        if self.facts is not None:
            try:
                doc.update(self.facts())
            except Exception:
                log.exception("%s: health facts failed", self.role)
                doc["status"] = "error"
                return 500, doc
        return 200, doc

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response(self.metrics)

    async def _healthz(self, request: web.Request) -> web.Response:
        status, doc = self.health()
        return json_response(doc, status=status)


def bound_port(runner: web.AppRunner) -> int:
    """The port the runner's first site is bound to (the real one when 0 was asked for)."""
    return int(runner.addresses[0][1])


def admin_addresses(settings: Settings) -> dict[str, tuple[str, int]]:
    """Role name -> the configured (host, port) of its admin app.

    Each instance of a ``[services.<name>]`` service is a role too (`service_slots`:
    ``name``, or ``name.1`` .. ``name.N``). The web role serves ``/healthz`` and
    ``/metrics`` on its own port and is not listed.
    """
    addresses = {
        "gateway": (settings.gateway.admin_host, settings.gateway.admin_port),
        "center": (settings.center.admin_host, settings.center.admin_port),
        "talkroom": (settings.talkroom.admin_host, settings.talkroom.admin_port),
    }
    for slot in service_slots(settings):
        addresses[slot.role] = (slot.admin_host, slot.admin_port)
    return addresses


def admin_targets(settings: Settings) -> dict[str, str]:
    """Role name -> admin base URL, as the web role's cluster health sees them.

    ``web.health_targets`` wins when set. Otherwise each role of `admin_addresses` with a
    fixed admin port; wildcard bind addresses are reached over loopback.
    """
    if settings.web.health_targets:
        return {name: url.rstrip("/") for name, url in settings.web.health_targets.items()}
    targets = {}
    for role, (host, port) in admin_addresses(settings).items():
        if port == 0:
            log.warning("%s.admin_port is 0: the web role cannot find its /healthz", role)
            continue
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        targets[role] = f"http://{host}:{port}"
    return targets


def build_admin(
    role: str,
    server: HealthReporter,
    settings: Settings,
    *,
    address: tuple[str, int] | None = None,
) -> AdminServer:
    """The admin app of a started server, at ``address`` or the role's `admin_addresses` entry.

    Raises:
        ValueError: no ``address`` was given and ``role`` has none in the configuration.
    """
    if address is None:
        address = admin_addresses(settings).get(role)
        if address is None:
            raise ValueError(f"no admin address configured for {role!r}; pass address=")
    host, port = address
    return AdminServer(role, server.metrics, host=host, port=port, facts=server.health_facts)
