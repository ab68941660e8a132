"""The gateway: holds every client connection and routes raw cmd_bufs to services and back.

Per packet the gateway reads only the 10-byte header and rewrites the utag in place; bodies
travel verbatim. The one body it reads is the Auth GUEST_LOGIN reply, to learn the uid.

Ordering guarantee: USER_DISCONNECT for a uid is written to every service link before any
later packet tagged with that uid, because both go through the same ordered TCP links and
the gateway writes the notice synchronously when the connection ends or is kicked.

Logins. Alone (no ``[redis] url``), a gateway binds a uid synchronously, in the same callback
that reads the GUEST_LOGIN reply (`Gateway.bind_login`). With the Redis registry the claim is
a round trip, run by `LoginClaims` (logins.py), which then calls `bind_login` or refuses.

The rest of the package: routing.py (pre-login keys, the instances behind each stype),
login_rate.py (the per-IP GUEST_LOGIN limit), logins.py (registry claims), service_links.py
(the service links' handler and the notices users get when instances come and go).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from typing import Any

from netbus.config import GatewayConfig, Settings, parse_address
from netbus.errors import ProtocolError
from netbus.log import conn_context
from netbus.metrics import Metrics
from netbus.protocol.commands import (
    CODECS,
    USER_DISCONNECT,
    AuthCmd,
    Direction,
    GatewayCmd,
    Stype,
)
from netbus.protocol.header import HEADER, UTAG_OFFSET, ProtoType
from netbus.registry.base import Registry
from netbus.registry.local import LocalRegistry
from netbus.roles.gateway.login_rate import LoginRateLimit
from netbus.roles.gateway.logins import LoginClaims, login_uid
from netbus.roles.gateway.routing import PRELOGIN_BIT, PreloginKeys, ServiceRoute, is_prelogin
from netbus.roles.gateway.service_links import ServiceLinks
from netbus.session import Session, SessionTable
from netbus.transport.link import Link
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.reasons import CloseReason
from netbus.transport.upstream import Upstream

__all__ = ["GATEWAY_ONLY_CTYPES", "Gateway"]

log = logging.getLogger("netbus.gateway")

#: ctypes a client may never send: gateway -> service notices (docs/protocol.md)
GATEWAY_ONLY_CTYPES = range(10000, 11000)
_UTAG = struct.Struct("<I")


class Gateway:
    """Client listeners + one `ServiceRoute` per configured service.

    Args:
        listeners: client listeners (TCP/WS, plain or TLS).
        routes: service name -> (stype, ["host:port", ...]).
        registry: who is logged in where; default a `LocalRegistry` of this gateway alone.
        claim_timeout: seconds a login may wait for a remote registry before SYSTEM_ERROR.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        listeners: Sequence[ListenerSpec],
        *,
        metrics: Metrics | None = None,
        registry: Registry | None = None,
        claim_timeout: float = 1.5,
        cluster_secret: bytes | None = None,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.login_rate = LoginRateLimit(cfg.limits)
        self.metrics = metrics or Metrics("gateway")
        self.sessions = SessionTable()
        self.logins = LoginClaims(
            self,
            registry if registry is not None else LocalRegistry(cfg.id),
            claim_timeout=claim_timeout,
        )
        #: the synchronous in-process registry, or None when claims are remote round trips
        self._local = self.logins.local
        self.keys = PreloginKeys()
        self._by_key: dict[int, Session] = {}
        self._listener_specs = list(listeners)
        self._servers: list[Listener] = []
        self.ports: list[int] = []
        self.auth_stype = cfg.auth_stype
        self.routes: dict[int, ServiceRoute] = {}
        self.service_links = ServiceLinks(self)
        for name, route_cfg in cfg.services.items():
            upstreams = []
            for address in route_cfg.addresses:
                host, port = parse_address(address)
                upstreams.append(
                    Upstream(
                        host,
                        port,
                        self.service_links,
                        name=f"{name}@{address}",
                        heartbeat=cfg.heartbeat_interval,
                        secret=cluster_secret,
                    )
                )
            self.metrics.add_stype(route_cfg.stype)
            self.routes[route_cfg.stype] = ServiceRoute(
                name, route_cfg.stype, upstreams, policy=route_cfg.policy
            )
            shared_state = route_cfg.stype == Stype.TalkRoom and len(upstreams) > 1
            if shared_state and route_cfg.policy != "primary":
                log.warning(
                    "service %s has %d instances with policy %r: its one room would be"
                    ' split; set policy = "primary" (docs/scaling.md)',
                    name,
                    len(upstreams),
                    route_cfg.policy,
                )

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.logins.start()
        for route in self.routes.values():
            for upstream in route.upstreams:
                self.metrics.link_up.labels(upstream.name).set(0)
                upstream.start()
        for spec in self._listener_specs:
            server = await start_listener(spec, self)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.ports.append(port)
            scheme = {"tcp": "tls", "ws": "wss"}[spec.kind] if spec.is_encrypt else spec.kind
            log.info("gateway %s: clients connect to %s://%s:%d", self.id, scheme, spec.host, port)

    async def wait_services_up(self) -> None:
        """Until every configured service instance is linked (tests, `netbus up`)."""
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.wait_up()

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        """Stop accepting, send every client SHUTDOWN, let them go within the deadline."""
        for server in self._servers:
            server.close()
        links = []
        for session in self.sessions:
            proto = next(reversed(session.protos.values()), ProtoType.JSON)
            session.send_cmd(
                Stype.Gateway,
                GatewayCmd.SHUTDOWN,
                {"reason": "gateway shutting down"},
                proto_type=proto,
            )
            session.close(CloseReason.SHUTDOWN)  # queued output (the notice) is flushed
            links.append(session.link)
        if links:
            try:
                async with asyncio.timeout(drain_timeout):
                    await asyncio.gather(*(link.wait_closed() for link in links))
            except TimeoutError:
                for link in links:
                    link.close(CloseReason.SHUTDOWN_DEADLINE, abort=True)
        await self.logins.drain()  # claims in flight end, releases get a moment to land
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await self.logins.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def get_client_session(self, utag: int) -> Session | None:
        """The connection a utag routes to: a pre-login key or a uid."""
        if is_prelogin(utag):
            return self._by_key.get(utag)
        return self.sessions.by_uid(utag)

    def get_service_session(self, stype: int, utag: int = 0) -> Upstream | None:
        """The live upstream that ``utag``'s packets for ``stype`` go to (None if none is up)."""
        route = self.routes.get(stype)
        return route.pick(utag) if route is not None else None

    # ------------------------------------------- the registry, held by `self.logins`
    @property
    def registry(self) -> Registry:
        return self.logins.registry

    @property
    def claim_timeout(self) -> float:
        return self.logins.claim_timeout

    @claim_timeout.setter
    def claim_timeout(self, value: float) -> None:
        self.logins.claim_timeout = value

    @property
    def _claims(self) -> dict[int, asyncio.Task[None]]:
        return self.logins.claims

    @property
    def _recent_kicks(self) -> dict[tuple[int, int], float]:
        return self.logins.recent_kicks

    def _conn_id(self, session: Session) -> str:
        return self.logins.conn_id(session)

    def _kick_conn(self, uid: int, conn: str) -> None:
        self.logins.kick_conn(uid, conn)

    # ----------------------------------------------------------- client link handler
    def link_opened(self, link: Link) -> None:
        session = self.sessions.add(link, is_client=True)
        key = self.keys.allocate()
        session.data["key"] = key
        self._by_key[key] = session
        self.metrics.connections.labels(link.kind).inc()
        self.metrics.connections_total.labels(link.kind).inc()

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.metrics.protocol_errors.labels(exc.kind).inc()
        log.info("closing client %s: %s", link.peer, exc, extra=conn_context(link.owner))

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        session: Session = link.owner
        self.metrics.connections.labels(link.kind).dec()
        if reason is CloseReason.SLOW_CONSUMER:
            self.metrics.dropped.labels("slow_consumer").inc()
        key = session.data["key"]
        self._by_key.pop(key, None)
        self.keys.release(key)
        if session.uid and self.sessions.by_uid(session.uid) is session:
            self._user_left(session.uid)
            self.logins.release(session.uid, session)
        self.sessions.remove(session)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        session: Session = link.owner
        metrics = self.metrics
        stype, ctype, _utag, proto_type = HEADER.unpack_from(cmd_buf)  # links ensure >= 10 bytes
        if proto_type != ProtoType.JSON and proto_type != ProtoType.BUF:
            metrics.protocol_errors.labels("bad_proto_type").inc()
            link.stats.protocol_errors += 1
            link.close(CloseReason.PROTOCOL_ERROR, "bad_proto_type", abort=link.kind == "tcp")
            return
        metrics.packet("in", stype, ctype, len(cmd_buf))
        if stype == Stype.Gateway:
            self._control(session, ctype, proto_type, cmd_buf)
            return
        if ctype in GATEWAY_ONLY_CTYPES:
            metrics.dropped.labels("forged_control").inc()
            return
        uid = session.uid
        if not uid and stype != self.auth_stype:
            metrics.dropped.labels("login_required").inc()
            self.notice(session, GatewayCmd.LOGIN_REQUIRED, stype, ctype, proto_type)
            return
        if (
            stype == self.auth_stype
            and ctype == AuthCmd.GUEST_LOGIN
            and not self.login_rate.allow(link)
        ):
            metrics.logins.labels("rate_limited").inc()
            self.login_rate.refuse(link, proto_type)
            return
        route = self.routes.get(stype)
        utag = uid or session.data["key"]
        upstream = route.pick(utag) if route is not None else None
        if upstream is None:
            metrics.dropped.labels("service_unavailable").inc()
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)
            return
        _UTAG.pack_into(cmd_buf, UTAG_OFFSET, utag)
        session.protos[stype] = proto_type
        if not upstream.send_raw(cmd_buf):
            metrics.dropped.labels("service_unavailable").inc()
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)

    def _control(self, session: Session, ctype: int, proto_type: int, cmd_buf: bytearray) -> None:
        if ctype == GatewayCmd.HEARTBEAT:
            try:
                CODECS.decode_body(cmd_buf, 0, ctype, proto_type, Direction.TO_SERVER)
            except ProtocolError as exc:
                self.metrics.protocol_errors.labels(exc.kind).inc()
                return
            session.send_cmd(Stype.Gateway, GatewayCmd.HEARTBEAT, None, proto_type=proto_type)
        else:
            self.metrics.dropped.labels("unknown_control").inc()

    def notice(
        self, session: Session, notice: GatewayCmd, stype: int, ctype: int, proto_type: int
    ) -> None:
        """Tell ``session`` about a packet or a service it could not reach (docs/protocol.md)."""
        body = {"stype": stype, "ctype": ctype}
        session.send_cmd(Stype.Gateway, notice, body, proto_type=proto_type)

    # ----------------------------------------------------------------- users and uids
    def _user_left(self, uid: int) -> None:
        """USER_DISCONNECT(uid) to every service instance, before anything else of uid."""
        for stype, route in self.routes.items():
            cmd_buf = bytearray(
                CODECS.encode(stype, USER_DISCONNECT, None, utag=uid, direction=Direction.TO_SERVER)
            )
            for upstream in route.upstreams:
                upstream.send_raw(cmd_buf)

    def bind_login(self, session: Session, uid: int) -> None:
        """Make ``session`` the one live connection of ``uid``; kick any older one."""
        if session.closed or session.uid == uid:
            return
        if session.uid:  # a second login on one connection, as another account
            if self.sessions.by_uid(session.uid) is session:
                self._user_left(session.uid)
                self.logins.release(session.uid, session)
            self.sessions.unbind_uid(session)
        previous = self.sessions.by_uid(uid)
        if previous is not None and previous is not session:
            self.kick(previous, uid)
        if self._local is not None:  # in-process: kicks other gateways of this process at once
            self._local.claim_nowait(uid, self.logins.conn_id(session))
        self.sessions.bind_uid(session, uid)
        self.metrics.logins.labels("ok").inc()

    def kick(self, session: Session, uid: int) -> None:
        """RELOGIN to the older connection, USER_DISCONNECT to services, then close it."""
        proto = session.protos.get(self.auth_stype, ProtoType.JSON)
        session.send_cmd(Stype.Auth, AuthCmd.RELOGIN, None, proto_type=proto)
        self._user_left(uid)
        self.sessions.unbind_uid(session)
        session.close(CloseReason.RELOGIN)
        log.info(
            "uid %d: older connection %s kicked by a new login",
            uid,
            session.peer,
            extra=conn_context(session),
        )

    def login_reply(self, session: Session, cmd_buf: bytearray, proto_type: int) -> None:
        uid = login_uid(cmd_buf, proto_type, self.metrics)
        if uid:
            self.bind_login(session, uid)

    # --------------------------------------------------------------- service side
    def from_service(self, link: Link, cmd_buf: bytearray) -> None:
        stype, ctype, utag, proto_type = HEADER.unpack_from(cmd_buf)  # links ensure >= 10 bytes
        if proto_type != ProtoType.JSON and proto_type != ProtoType.BUF:
            self.metrics.protocol_errors.labels("service_bad_proto_type").inc()
            log.error("packet with proto_type %d from service link %s", proto_type, link.peer)
            return
        session = self._by_key.get(utag) if utag >= PRELOGIN_BIT else self.sessions.by_uid(utag)
        if session is None:
            self.metrics.dropped.labels("no_route").inc()
            return
        _UTAG.pack_into(cmd_buf, UTAG_OFFSET, 0)  # in place: players never see utags
        if self._local is None:
            self.logins.to_client(session, stype, ctype, proto_type, cmd_buf)
            return
        if stype == self.auth_stype and ctype == AuthCmd.GUEST_LOGIN:
            self.login_reply(session, cmd_buf, proto_type)
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.link.send_raw(cmd_buf)  # utag already cleared: no copy in Session.send_raw

    def service_link_changed(self, upstream: Upstream, up: bool) -> None:
        """``upstream``'s link went up or down (`ServiceLinks.changed`)."""
        self.service_links.changed(upstream, up)


def build_gateway(settings: Settings, **kwargs: Any) -> Gateway:
    from netbus.cluster import cluster_secret
    from netbus.transport.budget import InputBudget
    from netbus.transport.specs import listener_spec

    cfg = settings.gateway
    budget = InputBudget(cfg.limits.max_partial_input)  # one for all of its listeners
    specs = [
        listener_spec(c, settings, cfg.limits.max_buffered_out, input_budget=budget)
        for c in cfg.listeners
    ]
    kwargs.setdefault("cluster_secret", cluster_secret(settings))
    redis_cfg = settings.redis
    if redis_cfg.url and "registry" not in kwargs:
        from netbus.registry.redis import RedisRegistry

        kwargs["registry"] = RedisRegistry(
            redis_cfg.url,
            cfg.id,
            prefix=redis_cfg.prefix,
            lease=redis_cfg.lease,
            refresh_interval=redis_cfg.refresh_interval,
            timeout=redis_cfg.timeout,
        )
        kwargs.setdefault("claim_timeout", redis_cfg.timeout)
    return Gateway(cfg, specs, **kwargs)
