"""`ServiceServer`: a process's services behind a gateway listener (and optional direct ones).

Gateways connect to ``host:port`` (plain TCP, many users per link). ``client_listeners`` let
players connect straight to this server (standalone mode, each connection one user)::

    server = ServiceServer([Echo()], port=6090)
    async with server:            # on_start hooks, then listeners
        await wait_for_signal()   # ...; on exit: drain handlers, close links, on_stop hooks
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from netbus.metrics import Metrics
from netbus.protocol.registry import CodecRegistry
from netbus.service.base import Service
from netbus.service.dispatch import Dispatcher
from netbus.service.host import ServiceHost
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.reasons import CloseReason

__all__ = ["ServiceServer"]

log = logging.getLogger("netbus.service")

#: what a gateway trunk may hold unsent before the link is cut (it carries many users)
TRUNK_MAX_BUFFERED_OUT = 64 * 1024 * 1024


class ServiceServer:
    """Runs ``services`` on one gateway listener plus optional direct-player listeners.

    Args:
        services: each with a distinct stype (registered in order).
        host, port: where gateways connect (port 0 picks a free one; see `port`).
        client_listeners: listeners for players who connect directly (standalone mode).
        metrics: the role's collectors (default: new ones named after ``name``).
        name: for logs and metrics.
        clock: monotonic seconds for the sampled error log (fake it in tests).
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_listeners: Sequence[ListenerSpec] = (),
        metrics: Metrics | None = None,
        name: str = "service",
        clock: Callable[[], float] = time.monotonic,
        cluster_secret: bytes | None = None,
    ) -> None:
        """Args:
        cluster_secret: gateways must prove it at link open (docs/security.md); None:
            the gateway listener is unauthenticated (in-process tests only).
        """
        self.name = name
        self.metrics = metrics or Metrics(name)
        self.dispatcher = Dispatcher(services, metrics=self.metrics, clock=clock)
        self.gateway_host = ServiceHost(self.dispatcher, direct_players=False, metrics=self.metrics)
        self.client_host = ServiceHost(self.dispatcher, direct_players=True, metrics=self.metrics)
        self._gateway_spec = ListenerSpec(
            kind="tcp",
            host=host,
            port=port,
            max_buffered_out=TRUNK_MAX_BUFFERED_OUT,
            batch_writes=True,
            auth_secret=cluster_secret,
        )
        self._client_specs = list(client_listeners)
        self._servers: list[Listener] = []
        self._started = False
        self._log_timer: asyncio.TimerHandle | None = None
        self.port = 0
        self.client_ports: list[int] = []

    @property
    def services(self) -> list[Service]:
        return self.dispatcher.services

    @property
    def codecs(self) -> CodecRegistry:
        """The control channel plus every service's layouts (what a client of it needs)."""
        return self.dispatcher.codecs

    async def start(self) -> None:
        """Run the services' ``on_start`` hooks, then open every listener. If a listener
        fails (e.g. a bad TLS file), those already open are closed and ``on_stop`` runs.

        Raises:
            ConfigError: a listener is misconfigured.
            OSError: a port cannot be bound.
        """
        await self.dispatcher.start()
        try:
            await self._start()
        except BaseException:
            for server in self._servers:
                server.close()
            for server in self._servers:
                await server.wait_closed()
            self._servers.clear()
            self.client_ports.clear()
            await self.dispatcher.stop()
            raise
        self._started = True
        self._arm_log_timer()

    async def _start(self) -> None:
        server = await start_listener(self._gateway_spec, self.gateway_host)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        log.info("%s: gateway listener on %s:%d", self.name, self._gateway_spec.host, self.port)
        for spec in self._client_specs:
            server = await start_listener(spec, self.client_host)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.client_ports.append(port)
            scheme = {"tcp": "tls", "ws": "wss"}[spec.kind] if spec.is_encrypt else spec.kind
            log.info("%s: players connect to %s://%s:%d", self.name, scheme, spec.host, port)

    def _arm_log_timer(self) -> None:
        """Summaries of suppressed error lines are written once their window ends."""
        errors = self.dispatcher.errors

        def tick() -> None:
            errors.flush_expired()
            self._log_timer = asyncio.get_running_loop().call_later(errors.window, tick)

        self._log_timer = asyncio.get_running_loop().call_later(errors.window, tick)

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        """Stop accepting, finish running handlers (their replies still go out), close
        links, then run the services' ``on_stop`` hooks. Idempotent.

        Handlers still running at the deadline lose their replies; the gateway then tells
        those clients the service is unavailable when the link drops.
        """
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while self.dispatcher.pending and (left := deadline - loop.time()) > 0:
            await self.dispatcher.drain(left)
        for host in (self.client_host, self.gateway_host):
            host.close_all(CloseReason.SHUTDOWN)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None
        if self._started:
            self._started = False
            await self.dispatcher.stop()

    def health_facts(self) -> dict[str, Any]:
        """``/healthz`` facts (netbus.admin): gateway links, direct sessions, running handlers."""
        return {
            "port": self.port,
            "services": [service.name for service in self.services],
            "gateway_links": len(self.gateway_host.links),
            "sessions": len(self.client_host.links),
            "pending_handlers": self.dispatcher.pending,
        }

    async def __aenter__(self) -> ServiceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
