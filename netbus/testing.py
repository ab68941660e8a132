"""Test a netbus application in-process: gateways, services and clients in one event loop.

`TestCluster` starts real servers on free loopback ports (port 0), with no subprocess: one
or more gateways, the built-in auth service (guest login over a throwaway SQLite database),
and a `ServiceServer` for each service you pass. Clients are real `netbus.client.Client`
connections. Everything is closed (and every temporary file and Redis key removed) when the
``async with`` block ends::

    from netbus.testing import TestCluster

    async def test_echo() -> None:
        async with TestCluster(services=[EchoService()]) as cluster:
            client = await cluster.guest()  # connected and logged in as a new guest
            assert await client.request(EchoService.stype, 1, "hi") == "hi"

Several instances of one service are several service objects with the same ``stype``: the
gateway routes users over them (``policies`` picks "hash" or "primary" per service name), and
`TestCluster.stop_service` / `TestCluster.start_service` take one down and bring it back, for
failover tests. ``gateways=2`` starts two gateways sharing one login registry, in-process by
default or on Redis with ``redis_url``. Time-based gateway logic (the per-IP login limit, login
bookkeeping) reads ``clock``; pass a `FakeClock` to move time by hand instead of sleeping.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

from pydantic import SecretStr

from netbus.client import Client
from netbus.cluster import cluster_secret
from netbus.config import ListenerConfig, ServiceRoute, Settings
from netbus.gateway import Gateway, build_gateway
from netbus.metrics import Metrics
from netbus.protocol.header import ProtoType
from netbus.protocol.registry import CodecRegistry
from netbus.registry.base import Registry
from netbus.registry.local import LocalHub, LocalRegistry
from netbus.roles.center.auth import AuthService
from netbus.service.base import Service
from netbus.service.codecs import client_codecs
from netbus.service.server import ServiceServer
from netbus.transport.upstream import Upstream

__all__ = ["FakeClock", "ListenerKind", "TestCluster"]

ListenerKind = Literal["tcp", "ws"]


class FakeClock:
    """A monotonic clock that moves only when told to: pass it where netbus takes ``clock``.

    Args:
        start: the first reading (any value; only differences matter).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards: it is a monotonic clock).

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds


class TestCluster:
    """Gateways, the auth service, your services and clients, in this event loop.

    Use it as an async context manager; it is started on entry and torn down on exit.

    Args:
        services: one service object per service instance; objects with the same ``stype``
            are instances of one service (routed by ``policies``).
        auth: also run the built-in auth service (guest login), so clients can log in.
        gateways: how many gateways; they share one login registry.
        listeners: the client listeners of each gateway, in this order (`url` index).
        policies: service name -> ``"hash"`` (default) or ``"primary"``.
        redis_url: use the Redis registry on this server, under a fresh key prefix
            (`redis_prefix`) whose keys are deleted on exit; default: in-process registry.
        registry: make each gateway's registry yourself (``registry(gateway_id)``); wins
            over ``redis_url``.
        claim_timeout: seconds a login may wait for a Redis claim.
        clock: monotonic seconds for the gateways' own limits and bookkeeping.
        settings: the base configuration (limits, heartbeats, auth stype); ports, listeners,
            routes and storage are replaced by the cluster's own.
    """

    __test__ = False  #: not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        services: Iterable[Service] = (),
        *,
        auth: bool = True,
        gateways: int = 1,
        listeners: Sequence[ListenerKind] = ("tcp", "ws"),
        policies: Mapping[str, Literal["hash", "primary"]] | None = None,
        redis_url: str | None = None,
        registry: Callable[[str], Registry] | None = None,
        claim_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
        settings: Settings | None = None,
    ) -> None:
        if gateways < 1:
            raise ValueError("a cluster needs at least one gateway")
        if not listeners:
            raise ValueError("a gateway needs at least one listener")
        base = settings if settings is not None else Settings()
        if base.cluster.secret is None:
            # A secret of this cluster alone: no .netbus/cluster_secret file is written.
            secret = SecretStr(secrets.token_urlsafe(32))
            base = base.model_copy(
                update={"cluster": base.cluster.model_copy(update={"secret": secret})}
            )
        for service in services:
            if auth and service.stype == base.gateway.auth_stype:
                raise ValueError(f"service {service.name!r} has the auth stype; pass auth=False")
        self._services = list(services)
        self._auth = auth
        self._gateway_count = gateways
        self._listener_kinds = list(listeners)
        self._policies = dict(policies or {})
        self._redis_url = redis_url
        self._registry_factory = registry
        self._claim_timeout = claim_timeout
        self._clock = clock
        self._base = base
        self._secret = cluster_secret(base)
        #: the Redis key prefix of this cluster's registry (with ``redis_url``)
        self.redis_prefix = f"netbus-test-{secrets.token_hex(6)}:" if redis_url else ""
        self.gateways: list[Gateway] = []
        #: the auth service's server (a `netbus.roles.center.app.CenterServer`), if any
        self.center: ServiceServer | None = None
        #: the configuration the first gateway runs with (its routes are set on entry)
        self.settings = self._base
        self._servers: dict[int, ServiceServer] = {}  #: id(service) -> its running server
        self._ports: dict[int, int] = {}  #: id(service) -> its port (kept across restarts)
        self._hub = LocalHub()
        self._auth_service: Service | None = None
        self._clients: list[Client] = []
        self._stack = AsyncExitStack()

    # ------------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> TestCluster:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        stack = self._stack
        if self._redis_url:
            stack.push_async_callback(_delete_prefix, self._redis_url, self.redis_prefix)
        services: list[Service] = list(self._services)
        routes: dict[int, tuple[str, list[str]]] = {}
        if self._auth:
            self.center = await self._start_center()
            auth_stype = self._base.gateway.auth_stype
            routes[auth_stype] = ("auth", [f"127.0.0.1:{self.center.port}"])
        for service in services:
            server = await self._start_server(service, port=0)
            self._ports[id(service)] = server.port
            _name, addresses = routes.setdefault(service.stype, (service.name, []))
            addresses.append(f"127.0.0.1:{server.port}")
        configured = {
            name: ServiceRoute(
                stype=stype, addresses=addresses, policy=self._policies.get(name, "hash")
            )
            for stype, (name, addresses) in routes.items()
        }
        for index in range(self._gateway_count):
            gateway_id = f"gw{index + 1}"
            cfg = self._base.gateway.model_copy(
                update={
                    "id": gateway_id,
                    "admin_port": 0,
                    "services": configured,
                    "listeners": [ListenerConfig(kind=k, port=0) for k in self._listener_kinds],
                }
            )
            settings = self._base.model_copy(update={"gateway": cfg})
            if index == 0:
                self.settings = settings
            gateway = build_gateway(
                settings,
                metrics=Metrics("gateway"),
                registry=self._make_registry(gateway_id),
                claim_timeout=self._claim_timeout,
                clock=self._clock,
            )
            await gateway.start()
            stack.push_async_callback(gateway.close, drain_timeout=1.0)
            self.gateways.append(gateway)
        for gateway in self.gateways:
            await gateway.wait_services_up()
        stack.push_async_callback(self._close_clients)

    def _make_registry(self, gateway_id: str) -> Registry:
        if self._registry_factory is not None:
            return self._registry_factory(gateway_id)
        if self._redis_url:
            from netbus.registry.redis import RedisRegistry

            return RedisRegistry(
                self._redis_url,
                gateway_id,
                prefix=self.redis_prefix,
                timeout=self._claim_timeout,
            )
        return LocalRegistry(gateway_id, hub=self._hub)

    async def _start_center(self) -> ServiceServer:
        from netbus.roles.center.app import CenterServer
        from netbus.storage import metadata

        directory = self._stack.enter_context(
            tempfile.TemporaryDirectory(prefix="netbus-test-", ignore_cleanup_errors=True)
        )
        center_cfg = self._base.center.model_copy(
            update={
                "port": 0,
                "admin_port": 0,
                "database_url": f"sqlite+aiosqlite:///{directory}/netbus.db",
                "pepper": SecretStr(secrets.token_urlsafe(24)),
                "migrate_on_start": False,
            }
        )
        redis_cfg = self._base.redis.model_copy(update={"url": None})  # no profile cache
        center = CenterServer(
            self._base.model_copy(update={"center": center_cfg, "redis": redis_cfg})
        )
        # The schema straight from the tables: a fresh database needs no migration history,
        # and this takes milliseconds where running the migrations takes a quarter second.
        async with center.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await center.start()
        self._stack.push_async_callback(center.close, drain_timeout=1.0)
        auth = center.services[0]
        self._servers[id(auth)] = center
        self._ports[id(auth)] = center.port
        self._auth_service = auth
        return center

    async def _start_server(self, service: Service, *, port: int) -> ServiceServer:
        server = ServiceServer(
            [service], port=port, name=service.name, cluster_secret=self.secret
        )
        await server.start()
        self._servers[id(service)] = server
        self._stack.push_async_callback(self._close_server, service)
        return server

    async def _close_server(self, service: Service) -> None:
        server = self._servers.pop(id(service), None)
        if server is not None:
            await server.close(drain_timeout=1.0)

    async def _close_clients(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()

    # --------------------------------------------------------------------- clients
    @property
    def auth(self) -> Service:
        """The built-in auth service (for `stop_service` / `start_service`).

        Raises:
            LookupError: the cluster runs without it (``auth=False``).
        """
        if self._auth_service is None:
            raise LookupError("this cluster has no auth service")
        return self._auth_service

    @property
    def gateway(self) -> Gateway:
        """The first (or only) gateway."""
        return self.gateways[0]

    def url(self, kind: ListenerKind = "tcp", *, gateway: int = 0) -> str:
        """The URL of gateway ``gateway``'s first ``kind`` listener, for `Client.connect`.

        Raises:
            LookupError: that gateway has no listener of this kind.
        """
        ports = self.gateways[gateway].ports
        for listener_kind, port in zip(self._listener_kinds, ports, strict=True):
            if listener_kind == kind:
                return f"tcp://127.0.0.1:{port}" if kind == "tcp" else f"ws://127.0.0.1:{port}/ws"
        raise LookupError(f"no {kind} listener")

    async def client(
        self,
        kind: ListenerKind = "tcp",
        *,
        gateway: int = 0,
        proto_type: ProtoType = ProtoType.JSON,
    ) -> Client:
        """A new client connected to gateway ``gateway`` (closed with the cluster).

        It knows the layouts of every service of the cluster (and of auth), so BUF works.
        """
        client = await Client.connect(
            self.url(kind, gateway=gateway), proto_type=proto_type, codecs=self.codecs
        )
        self._clients.append(client)
        return client

    @property
    def secret(self) -> bytes:
        """The cluster secret every gateway and service of this cluster proves."""
        return self._secret

    @property
    def codecs(self) -> CodecRegistry:
        """The control channel plus the layouts of auth and of every service of the cluster."""
        classes = {type(service): service for service in self._services}
        return client_codecs(AuthService, *classes.values())

    async def guest(
        self,
        key: str | None = None,
        *,
        kind: ListenerKind = "tcp",
        gateway: int = 0,
        proto_type: ProtoType = ProtoType.JSON,
    ) -> Client:
        """A new client logged in as the guest of ``key`` (a fresh random key by default).

        Raises:
            RuntimeError: the login was refused; the reply is in the message.
        """
        client = await self.client(kind, gateway=gateway, proto_type=proto_type)
        reply = await client.guest_login(key if key is not None else secrets.token_urlsafe(24))
        if not isinstance(reply, dict) or reply.get("status") != 1:
            raise RuntimeError(f"guest login refused: {reply!r}")
        return client

    # -------------------------------------------------------------------- failover
    def server(self, service: Service) -> ServiceServer:
        """The running server of ``service`` (its metrics, its port).

        Raises:
            LookupError: ``service`` is not part of this cluster or is stopped.
        """
        server = self._servers.get(id(service))
        if server is None:
            raise LookupError(f"service {service.name!r} is not running in this cluster")
        return server

    def upstreams(self, service: Service) -> list[Upstream]:
        """Each gateway's link to ``service`` (one `Upstream` per gateway)."""
        port = self._ports[id(service)]
        name = f"127.0.0.1:{port}"
        found: list[Upstream] = []
        for gateway in self.gateways:
            route = gateway.routes[service.stype]
            found.extend(u for u in route.instances if u.name.endswith("@" + name))
        return found

    async def stop_service(self, service: Service) -> None:
        """Stop the server of ``service``, as a crash would; returns once every gateway has
        seen its link close (and told the users it moved)."""
        server = self._servers.pop(id(service), None)
        if server is None:
            raise ValueError(f"service {service.name!r} is not running")
        links = [u.link for u in self.upstreams(service) if u.link is not None]
        await server.close(drain_timeout=0.0)
        for link in links:
            await link.wait_closed()

    async def start_service(self, service: Service) -> None:
        """Start ``service`` again on its old port; returns once every gateway linked to it."""
        if id(service) in self._servers:
            raise ValueError(f"service {service.name!r} is already running")
        await self._start_server(service, port=self._ports[id(service)])
        for upstream in self.upstreams(service):
            await upstream.wait_up()


async def _delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN, never KEYS)."""
    import redis.asyncio as aioredis

    client: Any = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
