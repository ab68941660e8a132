"""The admin HTTP app every role serves on its own port: ``GET /metrics`` and ``GET /healthz``.

An aiohttp ``AppRunner`` + ``TCPSite`` on the role's event loop (never ``run_app``), so it
shares the loop with the game listeners and costs no thread. ``/metrics`` is the role's
Prometheus text; ``/healthz`` is JSON::

    {"role": "gateway", "status": "ok", "uptime": 12.3, ...role facts...}

Role facts come from a callable the role passes in (`gateway_facts`, `service_facts`), read
on each request: nothing is cached, and nothing on the packet path knows this app exists.
docs/operations.md describes the format and the metric names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from netbus.config import Settings
from netbus.metrics import Metrics

if TYPE_CHECKING:
    from netbus.roles.gateway.gateway import Gateway
    from netbus.service.server import ServiceServer

__all__ = [
    "ROLE_NAMES",
    "AdminServer",
    "Facts",
    "admin_address",
    "admin_targets",
    "bound_port",
    "build_admin",
    "gateway_facts",
    "json_response",
    "metrics_response",
    "service_facts",
]

log = logging.getLogger("netbus.admin")

#: roles with an admin port in the configuration (the web role serves it on its main port)
ROLE_NAMES = ("gateway", "center", "talkroom")

Facts = Callable[[], dict[str, Any]]


def json_response(doc: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def metrics_response(metrics: Metrics) -> web.Response:
    """The Prometheus text exposition of ``metrics`` (content type from prometheus_client)."""
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def gateway_facts(gateway: Gateway) -> Facts:
    """Health facts of a gateway: each service link up/down, connections, logged-in users."""

    def facts() -> dict[str, Any]:
        services: dict[str, dict[str, str]] = {}
        for route in gateway.routes.values():
            services[route.name] = {u.name: "up" if u.is_up else "down" for u in route.upstreams}
        return {
            "id": gateway.id,
            "ports": list(gateway.ports),
            "services": services,
            "connections": len(gateway.sessions),
            "logged_in": gateway.sessions.logged_in,
        }

    return facts


def service_facts(server: ServiceServer) -> Facts:
    """Health facts of a service process: gateway links, direct sessions, running handlers."""

    def facts() -> dict[str, Any]:
        return {
            "port": server.port,
            "services": [service.name for service in server.services],
            "gateway_links": len(server.gateway_host.links),
            "sessions": len(server.client_host.links),
            "pending_handlers": server.dispatcher.pending,
        }

    return facts


class AdminServer:
    """``/metrics`` and ``/healthz`` of one role on ``host:port`` (0 picks a free port).

    Args:
        role: the role name reported in ``/healthz``.
        metrics: the role's collectors.
        facts: extra ``/healthz`` fields, read on each request; an exception there turns
            the answer into status "error" with code 500 rather than a dropped connection.
    """

    def __init__(
        self,
        role: str,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        facts: Facts | None = None,
    ) -> None:
        self.role = role
        self.metrics = metrics
        self.host = host
        self.requested_port = port
        self.facts = facts
        self.port = 0
        self.started = time.monotonic()
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
        self.started = time.monotonic()
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
            "uptime": round(time.monotonic() - self.started, 3),
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


def admin_address(settings: Settings, role: str) -> tuple[str, int]:
    """The configured (host, port) of ``role``'s admin app."""
    if role == "gateway":
        return settings.gateway.admin_host, settings.gateway.admin_port
    if role == "center":
        return settings.center.admin_host, settings.center.admin_port
    if role == "talkroom":
        return settings.talkroom.admin_host, settings.talkroom.admin_port
    if role == "web":
        return settings.web.host, settings.web.port
    raise ValueError(f"unknown role {role!r}")


def admin_targets(settings: Settings) -> dict[str, str]:
    """Role name -> admin base URL, as the web role's cluster health sees them.

    ``web.health_targets`` wins when set. Otherwise each role of ``ROLE_NAMES`` with a fixed
    admin port; wildcard bind addresses are reached over loopback.
    """
    if settings.web.health_targets:
        return {name: url.rstrip("/") for name, url in settings.web.health_targets.items()}
    targets = {}
    for role in ROLE_NAMES:
        host, port = admin_address(settings, role)
        if port == 0:
            log.warning("%s.admin_port is 0: the web role cannot find its /healthz", role)
            continue
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        targets[role] = f"http://{host}:{port}"
    return targets


def build_admin(role: str, server: Any, settings: Settings) -> AdminServer:
    """The admin app for a started role server (a `Gateway` or a `ServiceServer`)."""
    host, port = admin_address(settings, role)
    facts = gateway_facts(server) if role == "gateway" else service_facts(server)
    return AdminServer(role, server.metrics, host=host, port=port, facts=facts)
