"""`ServiceServer`: a process's services behind a gateway listener (and optional direct ones).

Gateways connect to ``host:port`` (plain TCP, many users per link). ``client_listeners`` let
players connect straight to this server (standalone mode, each connection one user).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from netbus.metrics import Metrics
from netbus.service.base import Service
from netbus.service.host import ServiceHost
from netbus.service.manager import ServiceManager
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.reasons import CloseReason

__all__ = ["ServiceServer"]

log = logging.getLogger("netbus.service")


class ServiceServer:
    def __init__(
        self,
        services: Iterable[Service],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_listeners: Sequence[ListenerSpec] = (),
        metrics: Metrics | None = None,
        name: str = "service",
        cluster_secret: bytes | None = None,
    ) -> None:
        """Args:
        cluster_secret: gateways must prove it at link open (docs/security.md); None:
            the gateway listener is unauthenticated (in-process tests only).
        """
        self.name = name
        self.metrics = metrics or Metrics(name)
        self.manager = ServiceManager(services, metrics=self.metrics)
        self.gateway_host = ServiceHost(self.manager, direct_players=False)
        self.client_host = ServiceHost(self.manager, direct_players=True)
        self._gateway_spec = ListenerSpec(
            kind="tcp",
            host=host,
            port=port,
            max_buffered_out=64 * 1024 * 1024,
            batch_writes=True,
            auth_secret=cluster_secret,
        )
        self._client_specs = list(client_listeners)
        self._servers: list[Listener] = []
        self.port = 0
        self.client_ports: list[int] = []

    async def start(self) -> None:
        """Open every listener; if one fails (e.g. a bad TLS file), close those already open.

        Raises:
            ConfigError: a listener is misconfigured.
            OSError: a port cannot be bound.
        """
        try:
            await self._start()
        except BaseException:
            for server in self._servers:
                server.close()
            for server in self._servers:
                await server.wait_closed()
            self._servers.clear()
            self.client_ports.clear()
            raise

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

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        """Stop accepting, finish running handlers (their replies still go out), close links.

        Handlers still running at the deadline lose their replies; the gateway then tells
        those clients the service is unavailable when the link drops.
        """
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while self.manager.pending and (left := deadline - loop.time()) > 0:
            await self.manager.drain(left)
        for host in (self.client_host, self.gateway_host):
            for session in host.sessions:
                session.close(CloseReason.SHUTDOWN)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> ServiceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
