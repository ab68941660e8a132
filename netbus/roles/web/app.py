"""The web role: the browser client, its ``/config.js``, and the cluster's health over HTTP.

Two aiohttp apps on one event loop:

**Public** (``web.host:web.port``, default 127.0.0.1:8080; the one to expose):

``GET /``
    ``static/index.html``; the rest of ``static/`` is served at ``/`` (the page references
    ``style.css`` and ``app.js`` relative to itself) and at ``/static/``.
``GET /config.js``
    ``window.NETBUS_CONFIG = {"gatewayUrl": ...}`` from ``web.gateway_url``; ``null`` makes
    the page use its own host, port 6081.
``GET /healthz``
    ``{"status": "ok"}`` (200) or ``{"status": "degraded"}`` (503), nothing else: no internal
    address or error text. The result of a round is reused for `PUBLIC_HEALTH_MAX_AGE`.

Every public response carries the security headers of `netbus.roles.web.security` (CSP
with ``connect-src`` limited to the gateway, ``X-Frame-Options``, ``nosniff``, ...).

**Admin** (``web.admin_host:web.admin_port``, default 127.0.0.1:9081; like every role's):

``GET /healthz``
    The cluster document: the web role's liveness plus each target role's admin
    ``/healthz`` fetched over HTTP (short timeout; an unreachable role is ``"down"`` with the
    error). 200 when every role is ok, else 503. Concurrent requests share one round.
``GET /metrics``
    This process's Prometheus text, with ``netbus_cluster_role_up{role}`` from the last
    round. Each role's own metrics URL is listed in the admin ``/healthz`` document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import Gauge

from netbus.admin import admin_targets, bound_port, json_response, metrics_response
from netbus.config import Settings
from netbus.metrics import Metrics
from netbus.roles.web.security import security_headers

__all__ = ["PUBLIC_HEALTH_MAX_AGE", "STATIC_DIR", "WebServer", "build_web"]

log = logging.getLogger("netbus.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"

_NO_STORE = {"Cache-Control": "no-store"}

#: seconds a health round answers the public /healthz before the next one is started, so a
#: flood of public requests costs the other roles at most one round per second
PUBLIC_HEALTH_MAX_AGE = 1.0


class WebServer:
    """The web role's HTTP servers: the public page and the admin app.

    Args:
        targets: role name -> admin base URL (``http://host:port``) to aggregate in
            ``/healthz``; default `netbus.admin.admin_targets` of ``settings``.
        host, port: override ``settings.web``; port 0 picks a free one.
        admin_host, admin_port: override ``web.admin_host`` / ``web.admin_port``.
        clock: monotonic seconds, for the age of a health round.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        targets: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        static_dir: Path = STATIC_DIR,
        host: str | None = None,
        port: int | None = None,
        admin_host: str | None = None,
        admin_port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = settings.web
        self.host = cfg.host if host is None else host
        self.requested_port = cfg.port if port is None else port
        self.admin_host = cfg.admin_host if admin_host is None else admin_host
        self.requested_admin_port = cfg.admin_port if admin_port is None else admin_port
        self.gateway_url = cfg.gateway_url
        self.timeout = cfg.health_timeout
        self.targets = dict(admin_targets(settings) if targets is None else targets)
        self.metrics = metrics or Metrics("web")
        self.role_up = Gauge(
            "netbus_cluster_role_up",
            "1 if the role answered its last /healthz with status ok (seen from web)",
            ["role"],
            registry=self.metrics.registry,
        )
        self.static_dir = static_dir
        self.clock = clock
        self.port = 0
        self.admin_port = 0
        self.started = clock()
        self._config_js = (
            b"window.NETBUS_CONFIG = " + orjson.dumps({"gatewayUrl": self.gateway_url}) + b";\n"
        )
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []
        self._round: asyncio.Task[tuple[int, dict[str, Any]]] | None = None
        self._last: tuple[float, int] | None = None  #: (finished at, HTTP status) of a round
        self.app = self._make_app()
        self.admin_app = self._make_admin_app()

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.on_response_prepare.append(self._add_security_headers)
        router = app.router
        router.add_get("/", self._index)
        router.add_get("/index.html", self._index)
        router.add_get("/config.js", self._config)
        router.add_get("/healthz", self._public_healthz)
        if self.static_dir.is_dir():
            router.add_static("/static", self.static_dir)
            router.add_static("/", self.static_dir)  # last: the routes above win
        else:
            log.warning("web: no static client at %s", self.static_dir)
        return app

    def _make_admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._admin_healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    # ---------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Bind both apps and serve. Raises OSError if a port is taken."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=32),
        )
        try:
            self.port = await self._serve(self.app, self.host, self.requested_port)
            self.admin_port = await self._serve(
                self.admin_app, self.admin_host, self.requested_admin_port
            )
        except BaseException:
            await self.close()
            raise
        self.started = self.clock()
        log.info("web: browser client on http://%s:%d/", self.host, self.port)
        log.info("web: admin HTTP on http://%s:%d/", self.admin_host, self.admin_port)
        for name, url in self.targets.items():
            log.info("web: /healthz includes %s at %s", name, url)

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port).start()
        return bound_port(runner)

    async def close(self) -> None:
        """Stop serving, then close the health client; idempotent."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        if self._round is not None:
            self._round.cancel()
            await asyncio.gather(self._round, return_exceptions=True)
            self._round = None
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------ health
    async def cluster_health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, document) of ``/healthz``; concurrent callers share one round."""
        task = self._round
        if task is None:
            task = self._round = asyncio.ensure_future(self._health_round())
            task.add_done_callback(self._round_done)
        return await asyncio.shield(task)

    def _round_done(self, task: asyncio.Future[Any]) -> None:
        if self._round is task:
            self._round = None
        if not task.cancelled() and task.exception() is None:
            self._last = (self.clock(), task.result()[0])

    async def public_health(self) -> int:
        """200 (every role ok) or 503, from a round at most `PUBLIC_HEALTH_MAX_AGE` old."""
        last = self._last
        if last is not None and self.clock() - last[0] < PUBLIC_HEALTH_MAX_AGE:
            return last[1]
        status, _ = await self.cluster_health()
        return status

    async def _health_round(self) -> tuple[int, dict[str, Any]]:
        names = list(self.targets)
        probes = await asyncio.gather(*(self._probe(self.targets[n]) for n in names))
        roles: dict[str, Any] = {
            "web": {
                "status": "ok",
                "uptime": round(self.clock() - self.started, 3),
                "metrics": "/metrics",
            }
        }
        for name, probe in zip(names, probes, strict=True):
            roles[name] = probe
            self.role_up.labels(name).set(1 if probe["status"] == "ok" else 0)
        healthy = all(role["status"] == "ok" for role in roles.values())
        doc = {
            "role": "web",
            "status": "ok" if healthy else "degraded",
            "uptime": roles["web"]["uptime"],
            "roles": roles,
        }
        return (200 if healthy else 503), doc

    async def _probe(self, base: str) -> dict[str, Any]:
        """One role's /healthz: ``{"status", "url", "metrics", "health" | "error"}``."""
        entry: dict[str, Any] = {
            "status": "down",
            "url": f"{base}/healthz",
            "metrics": f"{base}/metrics",
        }
        session = self._session
        if session is None:
            entry["error"] = "web role not started"
            return entry
        try:
            async with session.get(entry["url"]) as resp:
                body = await resp.read()
            health = orjson.loads(body)
        except TimeoutError:
            entry["error"] = f"no answer within {self.timeout}s"
            return entry
        except (aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            return entry
        if not isinstance(health, dict):
            entry["error"] = f"HTTP {resp.status}: not a JSON object"
            return entry
        status = health.get("status")
        entry["status"] = status if resp.status == 200 and isinstance(status, str) else "error"
        entry["health"] = health
        return entry

    # ---------------------------------------------------------------------- handlers
    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = self.static_dir / "index.html"
        if not index.is_file():
            raise web.HTTPNotFound(text="the browser client is not installed\n")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def _config(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._config_js,
            headers={**_NO_STORE, "Content-Type": "text/javascript; charset=utf-8"},
        )

    async def _public_healthz(self, request: web.Request) -> web.Response:
        status = await self.public_health()
        doc = {"status": "ok" if status == 200 else "degraded"}
        response = json_response(doc, status=status)
        response.headers.update(_NO_STORE)
        return response

    async def _admin_healthz(self, request: web.Request) -> web.Response:
        status, doc = await self.cluster_health()
        response = json_response(doc, status=status)
        response.headers.update(_NO_STORE)
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response(self.metrics)

    async def _add_security_headers(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        for name, value in security_headers(self.gateway_url, request.host).items():
            response.headers.setdefault(name, value)


def build_web(settings: Settings, **kwargs: Any) -> WebServer:
    """The web role as `netbus web` runs it."""
    return WebServer(settings, **kwargs)
