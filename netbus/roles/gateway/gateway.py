"""The gateway: holds every client connection and routes raw cmd_bufs to services and back.

Per packet the gateway reads only the 10-byte header and rewrites the utag in place; bodies
travel verbatim. The one body it reads is the Auth GUEST_LOGIN reply, to learn the uid.

Ordering guarantee: USER_DISCONNECT for a uid is written to every service link before any
later packet tagged with that uid, because both go through the same ordered TCP links and
the gateway writes the notice synchronously when the connection ends or is kicked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from netbus.config import GatewayConfig, Settings, parse_address
from netbus.errors import ProtocolError
from netbus.metrics import Metrics
from netbus.protocol.codec import decode_json_body
from netbus.protocol.commands import (
    CODECS,
    USER_DISCONNECT,
    AuthCmd,
    Direction,
    GatewayCmd,
    Stype,
)
from netbus.protocol.header import ProtoType, unpack_header, write_utag
from netbus.roles.gateway.routing import MAX_UID, PreloginKeys, ServiceRoute, is_prelogin
from netbus.session import Session, SessionTable
from netbus.transport.link import Link
from netbus.transport.listener import Listener, ListenerSpec, start_listener
from netbus.transport.upstream import Upstream

__all__ = ["GATEWAY_ONLY_CTYPES", "Gateway"]

log = logging.getLogger("netbus.gateway")

#: ctypes a client may never send: gateway -> service notices (docs/protocol.md)
GATEWAY_ONLY_CTYPES = range(10000, 11000)


class Gateway:
    """Client listeners + one `ServiceRoute` per configured service.

    Args:
        listeners: client listeners (TCP/WS, plain or TLS).
        routes: service name -> (stype, ["host:port", ...]).
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        listeners: Sequence[ListenerSpec],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.metrics = metrics or Metrics("gateway")
        self.sessions = SessionTable()
        self.keys = PreloginKeys()
        self._by_key: dict[int, Session] = {}
        self._listener_specs = list(listeners)
        self._servers: list[Listener] = []
        self.ports: list[int] = []
        self.auth_stype = cfg.auth_stype
        self.routes: dict[int, ServiceRoute] = {}
        self._upstream_handler = _UpstreamHandler(self)
        for name, route_cfg in cfg.services.items():
            upstreams = []
            for address in route_cfg.addresses:
                host, port = parse_address(address)
                upstreams.append(
                    Upstream(host, port, self._upstream_handler, name=f"{name}@{address}")
                )
            self.routes[route_cfg.stype] = ServiceRoute(name, route_cfg.stype, upstreams)

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
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
            proto = next(iter(session.protos.values()), ProtoType.JSON)
            session.send_cmd(
                Stype.Gateway,
                GatewayCmd.SHUTDOWN,
                {"reason": "gateway shutting down"},
                proto_type=proto,
            )
            session.close("gateway shutting down")  # queued output (the notice) is flushed
            links.append(session.link)
        if links:
            try:
                async with asyncio.timeout(drain_timeout):
                    await asyncio.gather(*(link.wait_closed() for link in links))
            except TimeoutError:
                for link in links:
                    link.close("shutdown deadline", abort=True)
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

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
        log.info("closing client %s: %s", link.peer, exc)

    def link_closed(self, link: Link, reason: str) -> None:
        session: Session = link.owner
        self.metrics.connections.labels(link.kind).dec()
        key = session.data["key"]
        self._by_key.pop(key, None)
        self.keys.release(key)
        if session.uid and self.sessions.by_uid(session.uid) is session:
            self._user_left(session.uid)
        self.sessions.remove(session)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        session: Session = link.owner
        metrics = self.metrics
        try:
            stype, ctype, _utag, proto_type = unpack_header(cmd_buf)
        except ProtocolError as exc:
            metrics.protocol_errors.labels(exc.kind).inc()
            link.stats.protocol_errors += 1
            link.close(f"protocol error: {exc.kind}", abort=link.kind == "tcp")
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
            self._notice(session, GatewayCmd.LOGIN_REQUIRED, stype, ctype, proto_type)
            return
        route = self.routes.get(stype)
        utag = uid or session.data["key"]
        upstream = route.pick(utag) if route is not None else None
        if upstream is None:
            metrics.dropped.labels("service_unavailable").inc()
            self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)
            return
        write_utag(cmd_buf, utag)
        session.protos[stype] = proto_type
        if not upstream.send_raw(cmd_buf):
            metrics.dropped.labels("service_unavailable").inc()
            self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)

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

    def _notice(
        self, session: Session, notice: GatewayCmd, stype: int, ctype: int, proto_type: int
    ) -> None:
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
            self.sessions.unbind_uid(session)
        previous = self.sessions.by_uid(uid)
        if previous is not None and previous is not session:
            self.kick(previous, uid)
        self.sessions.bind_uid(session, uid)
        self.metrics.logins.labels("ok").inc()

    def kick(self, session: Session, uid: int) -> None:
        """RELOGIN to the older connection, USER_DISCONNECT to services, then close it."""
        proto = session.protos.get(self.auth_stype, ProtoType.JSON)
        session.send_cmd(Stype.Auth, AuthCmd.RELOGIN, None, proto_type=proto)
        self._user_left(uid)
        self.sessions.unbind_uid(session)
        session.close("relogin: account logged in elsewhere")
        log.info("uid %d: older connection %s kicked by a new login", uid, session.peer)

    def login_reply(self, session: Session, cmd_buf: bytearray, proto_type: int) -> None:
        if proto_type != ProtoType.JSON:
            return
        try:
            reply = decode_json_body(cmd_buf)
        except ProtocolError:
            log.warning("malformed GUEST_LOGIN reply from the auth service")
            return
        if not isinstance(reply, dict) or reply.get("status") != 1:
            self.metrics.logins.labels("refused").inc()
            return
        uid = reply.get("uid")
        if type(uid) is not int or not 0 < uid <= MAX_UID:
            log.error("auth service returned an invalid uid %r; login not bound", uid)
            return
        self.bind_login(session, uid)

    # --------------------------------------------------------------- service side
    def from_service(self, link: Link, cmd_buf: bytearray) -> None:
        try:
            stype, ctype, utag, proto_type = unpack_header(cmd_buf)
        except ProtocolError as exc:
            self.metrics.protocol_errors.labels("service_" + exc.kind).inc()
            log.error("malformed packet from service link %s: %s", link.peer, exc)
            return
        session = self.get_client_session(utag)
        if session is None:
            self.metrics.dropped.labels("no_route").inc()
            return
        if stype == self.auth_stype and ctype == AuthCmd.GUEST_LOGIN:
            self.login_reply(session, cmd_buf, proto_type)
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.send_raw(cmd_buf)

    def service_link_changed(self, upstream: Upstream, up: bool) -> None:
        self.metrics.link_up.labels(upstream.name).set(1 if up else 0)
        if up and upstream.reconnects:
            self.metrics.reconnects.labels(upstream.name).inc()
        route = next((r for r in self.routes.values() if upstream in r.upstreams), None)
        if route is None:
            return
        notice = GatewayCmd.SERVICE_AVAILABLE if up else GatewayCmd.SERVICE_UNAVAILABLE
        if up and sum(u.is_up for u in route.upstreams) != 1:
            return  # another instance was already up: nothing changed for clients
        if not up and route.is_up:
            return
        # Every logged-in user hears that the service came or went, so clients can re-enter.
        for session in self.sessions:
            if session.uid:
                proto = session.protos.get(route.stype, ProtoType.JSON)
                self._notice(session, notice, route.stype, 0, proto)


class _UpstreamHandler:
    """Link handler for the gateway's service links."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def link_opened(self, link: Link) -> None:
        self.gateway.service_link_changed(link.owner, True)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        self.gateway.from_service(link, cmd_buf)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.gateway.metrics.protocol_errors.labels("service_" + exc.kind).inc()
        log.error("service link %s broke framing: %s", link.peer, exc)

    def link_closed(self, link: Link, reason: str) -> None:
        self.gateway.service_link_changed(link.owner, False)


def build_gateway(settings: Settings, **kwargs: Any) -> Gateway:
    from netbus.roles.talkroom.app import listener_spec

    cfg = settings.gateway
    specs = [listener_spec(c, settings, cfg.limits.max_buffered_out) for c in cfg.listeners]
    return Gateway(cfg, specs, **kwargs)
