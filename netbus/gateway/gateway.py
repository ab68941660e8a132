"""The gateway: holds every client connection and routes raw cmd_bufs to services and back.

Per packet the gateway reads only the 10-byte header and rewrites the utag in place; bodies
travel verbatim. The one body it reads is the auth service's GUEST_LOGIN reply, to learn the
uid (logins.py).

Client side: `Gateway` is the `LinkHandler` of its client listeners (each behind its
`Guard`). `Gateway.packet_received` checks the header, tags the packet with the user's uid or
the connection's pre-login key, picks the service instance (routing.py) and writes the same
bytes to that instance's link.

Service side: each configured instance is an `Upstream`. Its link reports packets straight to
`Gateway.from_service`, which finds the connection by utag, clears the utag and hands the
packet to the login strategy chosen at construction (`Logins.to_client`). When a link opens
or closes, the route's live set changes and the users it moved are told (notices.py).

Ordering guarantee: USER_DISCONNECT for a uid is written to every service link before any
later packet tagged with that uid, because both go through the same ordered TCP links and
the gateway writes the notice synchronously when the connection ends or is kicked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from netbus.config import GatewayConfig, parse_address
from netbus.errors import ProtocolError
from netbus.gateway.login_rate import LoginRateLimit
from netbus.gateway.logins import Logins, make_logins
from netbus.gateway.notices import failover_notices
from netbus.gateway.routing import Policy, PreloginKeys, Route
from netbus.log import conn_context
from netbus.metrics import Metrics
from netbus.protocol.control import CONTROL_CODECS, USER_DISCONNECT, GatewayCmd
from netbus.protocol.header import HEADER, PRELOGIN_BIT, UTAG, UTAG_OFFSET, ProtoType
from netbus.protocol.registry import CodecRegistry, Direction
from netbus.registry.base import Registry
from netbus.registry.local import LocalRegistry
from netbus.roles.center.protocol import AuthCmd
from netbus.session import Session, SessionTable
from netbus.transport.link import Link
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.reasons import CloseReason
from netbus.transport.upstream import Upstream

__all__ = ["GATEWAY_ONLY_CTYPES", "Gateway"]

log = logging.getLogger("netbus.gateway")

#: ctypes a client may never send: gateway -> service notices (docs/protocol.md §6.3)
GATEWAY_ONLY_CTYPES = range(10000, 11000)
_CONTROL = 0  #: the gateway control channel's stype (docs/protocol.md §7)
_JSON = int(ProtoType.JSON)
_BUF = int(ProtoType.BUF)
_GUEST_LOGIN = int(AuthCmd.GUEST_LOGIN)
_RELOGIN = int(AuthCmd.RELOGIN)
_HEARTBEAT = int(GatewayCmd.HEARTBEAT)


@dataclass(frozen=True, slots=True)
class _LinkEvents:
    """A `LinkHandler` made of four callables: the gateway's service side, for `Upstream`."""

    link_opened: Callable[[Link], None]
    packet_received: Callable[[Link, bytearray], None]
    link_closed: Callable[[Link, CloseReason], None]
    protocol_error: Callable[[Link, ProtocolError], None]


class Gateway:
    """Client listeners, and one `Route` of `Upstream` links per configured service.

    Args:
        cfg: the ``[gateway]`` section: id, services (routes), limits, auth stype.
        listeners: client listeners (TCP/WS, plain or TLS).
        metrics: the process's collectors (a new set by default).
        registry: who is logged in where; default a `LocalRegistry` of this gateway alone.
        claim_timeout: seconds a login may wait for a remote registry before SYSTEM_ERROR.
        clock: monotonic seconds for the login limit and claim bookkeeping (tests pass a
            fake); listener limits use the loop's clock.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        listeners: Sequence[ListenerSpec],
        *,
        metrics: Metrics | None = None,
        registry: Registry | None = None,
        claim_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
        cluster_secret: bytes | None = None,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.auth_stype = cfg.auth_stype
        #: what the gateway itself sends to clients: control notices and the RELOGIN kick
        self._client_codecs = CONTROL_CODECS | CodecRegistry.of(
            [(cfg.auth_stype, _RELOGIN, None, [])]
        )
        self.metrics = metrics or Metrics("gateway")
        self.login_rate = LoginRateLimit(cfg.limits, clock=clock)
        self.sessions = SessionTable()
        self.keys = PreloginKeys()
        self._by_key: dict[int, Session] = {}
        self.logins: Logins = make_logins(
            self,
            registry if registry is not None else LocalRegistry(cfg.id),
            auth_stype=cfg.auth_stype,
            metrics=self.metrics,
            claim_timeout=claim_timeout,
            clock=clock,
        )
        self._to_client = self.logins.to_client
        self.listener_specs = tuple(listeners)  #: the client listeners, started by `start`
        self._servers: list[Listener] = []
        self.ports: list[int] = []
        service_side = _LinkEvents(
            self._service_link_opened,
            self.from_service,
            self._service_link_closed,
            self._service_protocol_error,
        )
        self.routes: dict[int, Route[Upstream]] = {}
        self._route_of: dict[Upstream, Route[Upstream]] = {}
        for name, route_cfg in cfg.services.items():
            upstreams = []
            for address in route_cfg.addresses:
                host, port = parse_address(address)
                upstreams.append(
                    Upstream(
                        host,
                        port,
                        service_side,
                        name=f"{name}@{address}",
                        heartbeat=cfg.heartbeat_interval,
                        secret=cluster_secret,
                    )
                )
            self.metrics.add_stype(route_cfg.stype)
            route = Route(name, route_cfg.stype, upstreams, policy=Policy(route_cfg.policy))
            self.routes[route_cfg.stype] = route
            for upstream in upstreams:
                self._route_of[upstream] = route

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.logins.start()
        for route in self.routes.values():
            for upstream in route.instances:
                self.metrics.link_up.labels(upstream.name).set(0)
                upstream.start()
        for spec in self.listener_specs:
            server = await start_listener(spec, self)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.ports.append(port)
            scheme = {"tcp": "tls", "ws": "wss"}[spec.kind] if spec.is_encrypt else spec.kind
            log.info("gateway %s: clients connect to %s://%s:%d", self.id, scheme, spec.host, port)

    async def wait_services_up(self) -> None:
        """Until every configured service instance is linked (tests, `netbus up`)."""
        for route in self.routes.values():
            for upstream in route.instances:
                await upstream.wait_up()

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        """Stop accepting, send every client SHUTDOWN, let them go within the deadline."""
        for server in self._servers:
            server.close()
        links = []
        for session in self.sessions:
            proto = next(reversed(session.protos.values()), ProtoType.JSON)
            session.send_cmd(
                _CONTROL,
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
            for upstream in route.instances:
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

    def health_facts(self) -> dict[str, Any]:
        """``/healthz`` facts (netbus.admin): each service link up/down, connections, users."""
        services = {
            route.name: {u.name: "up" if u.is_up else "down" for u in route.instances}
            for route in self.routes.values()
        }
        return {
            "id": self.id,
            "ports": list(self.ports),
            "services": services,
            "connections": len(self.sessions),
            "logged_in": self.sessions.logged_in,
        }

    # ----------------------------------------------------------- client link handler
    def link_opened(self, link: Link) -> None:
        session = self.sessions.add(link, is_client=True, codecs=self._client_codecs)
        session.key = key = self.keys.allocate()
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
        key = session.key
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
        if proto_type != _JSON and proto_type != _BUF:
            metrics.protocol_errors.labels("bad_proto_type").inc()
            link.stats.protocol_errors += 1
            link.close(CloseReason.PROTOCOL_ERROR, "bad_proto_type", abort=link.kind == "tcp")
            return
        metrics.packet("in", stype, ctype, len(cmd_buf))
        if stype == _CONTROL:
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
        if ctype == _GUEST_LOGIN and stype == self.auth_stype and not self.login_rate.allow(link):
            metrics.logins.labels("rate_limited").inc()
            self.login_rate.refuse(link, proto_type)
            return
        route = self.routes.get(stype)
        if route is None:
            metrics.dropped.labels("service_unavailable").inc()
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)
            return
        # Remembered even when the service is down: it is told when the service is back.
        session.protos[stype] = proto_type
        utag = uid or session.key
        upstream = route.pick(utag)
        if upstream is None:
            metrics.dropped.labels("service_unavailable").inc()
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)
            return
        UTAG.pack_into(cmd_buf, UTAG_OFFSET, utag)
        if not upstream.send_raw(cmd_buf):
            metrics.dropped.labels("service_unavailable").inc()
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)

    def _control(self, session: Session, ctype: int, proto_type: int, cmd_buf: bytearray) -> None:
        if ctype == GatewayCmd.HEARTBEAT:
            try:
                CONTROL_CODECS.decode_body(
                    cmd_buf, _CONTROL, ctype, proto_type, Direction.TO_SERVER
                )
            except ProtocolError as exc:
                self.metrics.protocol_errors.labels(exc.kind).inc()
                return
            session.send_cmd(_CONTROL, GatewayCmd.HEARTBEAT, None, proto_type=proto_type)
        else:
            self.metrics.dropped.labels("unknown_control").inc()

    def notice(
        self, session: Session, notice: GatewayCmd, stype: int, ctype: int, proto_type: int
    ) -> None:
        """Tell ``session`` about a packet or a service it could not reach (docs/protocol.md §7)."""
        body = {"stype": stype, "ctype": ctype}
        session.send_cmd(_CONTROL, notice, body, proto_type=proto_type)

    # -------------------------------------------------- users and uids (`LoginHost`)
    def _user_left(self, uid: int) -> None:
        """USER_DISCONNECT(uid) to every service instance, before anything else of uid."""
        for stype, route in self.routes.items():
            cmd_buf = _user_disconnect(stype, uid)
            for upstream in route.instances:
                upstream.send_raw(cmd_buf)

    def bind_login(self, session: Session, uid: int) -> None:
        """Make ``session`` the one live connection of ``uid`` here; kick any older one.

        The registry claim is the login strategy's (logins.py); this only rebinds.
        """
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
        self.sessions.bind_uid(session, uid)
        self.metrics.logins.labels("ok").inc()

    def kick(self, session: Session, uid: int) -> None:
        """RELOGIN to the older connection, USER_DISCONNECT to services, then close it."""
        proto = session.protos.get(self.auth_stype, ProtoType.JSON)
        session.send_cmd(self.auth_stype, _RELOGIN, None, proto_type=proto)
        self._user_left(uid)
        self.sessions.unbind_uid(session)
        session.close(CloseReason.RELOGIN)
        log.info(
            "uid %d: older connection %s kicked by a new login",
            uid,
            session.peer,
            extra=conn_context(session),
        )

    # --------------------------------------------------------------- service side
    def from_service(self, link: Link, cmd_buf: bytearray) -> None:
        """A packet from a service instance: to the connection its utag names."""
        stype, ctype, utag, proto_type = HEADER.unpack_from(cmd_buf)  # links ensure >= 10 bytes
        if proto_type != _JSON and proto_type != _BUF:
            self.metrics.protocol_errors.labels("service_bad_proto_type").inc()
            log.error("packet with proto_type %d from service link %s", proto_type, link.peer)
            return
        session = self._by_key.get(utag) if utag >= PRELOGIN_BIT else self.sessions.by_uid(utag)
        if session is None:
            if stype == _CONTROL and ctype == _HEARTBEAT:
                return  # the echo of the link heartbeat (`Upstream`): liveness, not a drop
            self.metrics.dropped.labels("no_route").inc()
            return
        UTAG.pack_into(cmd_buf, UTAG_OFFSET, 0)  # in place: players never see utags
        self._to_client(session, stype, ctype, proto_type, cmd_buf)

    def _service_protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.metrics.protocol_errors.labels("service_" + exc.kind).inc()
        log.error("service link %s broke framing: %s", link.peer, exc)

    def _service_link_opened(self, link: Link) -> None:
        self._live_changed(link.owner, True)

    def _service_link_closed(self, link: Link, reason: CloseReason) -> None:
        self._live_changed(link.owner, False)

    def _live_changed(self, upstream: Upstream, up: bool) -> None:
        """``upstream``'s link went up or down: metrics, the live set, then notices."""
        metrics = self.metrics
        metrics.link_up.labels(upstream.name).set(1 if up else 0)
        if up and upstream.reconnects:
            metrics.reconnects.labels(upstream.name).inc()
        route = self._route_of[upstream]
        before, after = route.set_live(upstream, up)
        if before == after:
            return
        stype = route.stype
        notices = failover_notices(stype, self.sessions, before, after, route.choose)
        for uid, instance in notices.disconnect:
            instance.send_raw(_user_disconnect(stype, uid))
        for session in notices.unavailable:
            proto = session.protos.get(stype, _JSON)
            self.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, 0, proto)
        for session in notices.available:
            proto = session.protos.get(stype, _JSON)
            self.notice(session, GatewayCmd.SERVICE_AVAILABLE, stype, 0, proto)


def _user_disconnect(stype: int, uid: int) -> bytearray:
    return bytearray(
        CONTROL_CODECS.encode(stype, USER_DISCONNECT, None, utag=uid, direction=Direction.TO_SERVER)
    )
