"""The gateway: holds every client connection and routes raw cmd_bufs to services and back.

Per packet the gateway reads only the 10-byte header and rewrites the utag in place; bodies
travel verbatim. The one body it reads is the Auth GUEST_LOGIN reply, to learn the uid.

Ordering guarantee: USER_DISCONNECT for a uid is written to every service link before any
later packet tagged with that uid, because both go through the same ordered TCP links and
the gateway writes the notice synchronously when the connection ends or is kicked.

Logins and the registry. Alone (no ``[redis] url``), a gateway binds a uid synchronously, in
the same callback that reads the GUEST_LOGIN reply, and its `LocalRegistry` costs one dict
write. With the Redis registry the claim is a round trip: the reply waits (as do later
packets for that connection, in order) until the claim lands, and is replaced by SYSTEM_ERROR
if Redis fails or the deadline passes. docs/scaling.md explains why exactly one connection
per uid survives concurrent logins on several gateways.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from netbus.config import GatewayConfig, Settings, parse_address
from netbus.errors import ProtocolError, RegistryUnavailable
from netbus.log import conn_context
from netbus.metrics import Metrics
from netbus.protocol.codec import decode_json_body
from netbus.protocol.commands import (
    CODECS,
    USER_DISCONNECT,
    AuthCmd,
    AuthStatus,
    Direction,
    GatewayCmd,
    Stype,
)
from netbus.protocol.header import HEADER, UTAG_OFFSET, ProtoType
from netbus.registry.base import Registry
from netbus.registry.local import LocalRegistry
from netbus.roles.gateway.routing import (
    MAX_UID,
    PRELOGIN_BIT,
    PreloginKeys,
    ServiceRoute,
    is_prelogin,
)
from netbus.session import Session, SessionTable
from netbus.transport.link import SLOW_CONSUMER, Link
from netbus.transport.listener import Listener, ListenerSpec, start_listener
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
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.registry: Registry = registry if registry is not None else LocalRegistry(cfg.id)
        #: the synchronous in-process registry, or None when claims are remote round trips
        self._local = self.registry if isinstance(self.registry, LocalRegistry) else None
        self.registry.set_kick_handler(self._kick_conn)
        self.claim_timeout = claim_timeout
        #: makes conn ids unique across restarts of one gateway id ("<incarnation>.<sid>")
        self._incarnation = secrets.token_hex(4)
        self._claims: dict[int, asyncio.Task[None]] = {}  #: uid -> newest claim in flight
        self._recent_kicks: dict[tuple[int, int], float] = {}  #: (uid, sid) kicked mid-claim
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._last_registry_warning = 0.0
        self._login_buckets: dict[str, list[float]] = {}  #: client IP -> [tokens, stamp]
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
                    Upstream(
                        host,
                        port,
                        self._upstream_handler,
                        name=f"{name}@{address}",
                        heartbeat=cfg.heartbeat_interval,
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
        await self.registry.start()
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
            session.close("gateway shutting down")  # queued output (the notice) is flushed
            links.append(session.link)
        if links:
            try:
                async with asyncio.timeout(drain_timeout):
                    await asyncio.gather(*(link.wait_closed() for link in links))
            except TimeoutError:
                for link in links:
                    link.close("shutdown deadline", abort=True)
        if self._tasks:  # claims in flight end, releases get a moment to land
            _done, pending = await asyncio.wait(list(self._tasks), timeout=self.claim_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._closing = True  # from here on, registry.close() releases whatever is held
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await self.registry.close()

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
        log.info("closing client %s: %s", link.peer, exc, extra=conn_context(link.owner))

    def link_closed(self, link: Link, reason: str) -> None:
        session: Session = link.owner
        self.metrics.connections.labels(link.kind).dec()
        if reason == SLOW_CONSUMER:
            self.metrics.dropped.labels("slow_consumer").inc()
        key = session.data["key"]
        self._by_key.pop(key, None)
        self.keys.release(key)
        if session.uid and self.sessions.by_uid(session.uid) is session:
            self._user_left(session.uid)
            self._release(session.uid, session)
        self.sessions.remove(session)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        session: Session = link.owner
        metrics = self.metrics
        stype, ctype, _utag, proto_type = HEADER.unpack_from(cmd_buf)  # links ensure >= 10 bytes
        if proto_type != ProtoType.JSON and proto_type != ProtoType.BUF:
            metrics.protocol_errors.labels("bad_proto_type").inc()
            link.stats.protocol_errors += 1
            link.close("protocol error: bad_proto_type", abort=link.kind == "tcp")
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
        if (
            stype == self.auth_stype
            and ctype == AuthCmd.GUEST_LOGIN
            and not self._login_allowed(link)
        ):
            metrics.logins.labels("rate_limited").inc()
            body = {"dropped": 1}
            session.send_cmd(Stype.Gateway, GatewayCmd.RATE_LIMITED, body, proto_type=proto_type)
            return
        route = self.routes.get(stype)
        utag = uid or session.data["key"]
        upstream = route.pick(utag) if route is not None else None
        if upstream is None:
            metrics.dropped.labels("service_unavailable").inc()
            self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)
            return
        _UTAG.pack_into(cmd_buf, UTAG_OFFSET, utag)
        session.protos[stype] = proto_type
        if not upstream.send_raw(cmd_buf):
            metrics.dropped.labels("service_unavailable").inc()
            self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, stype, ctype, proto_type)

    def _login_allowed(self, link: Link) -> bool:
        """Per-IP token bucket for GUEST_LOGIN: guessing keys or flooding the DB costs time."""
        limits = self.cfg.limits
        if limits.login_rate <= 0:
            return True
        ip = link.peer[0] if isinstance(link.peer, tuple) else "?"
        if limits.login_exempt_loopback and (ip.startswith("127.") or ip == "::1"):
            return True
        now = time.monotonic()
        buckets = self._login_buckets
        bucket = buckets.get(ip)
        if bucket is None:
            if len(buckets) >= 100_000:  # forget addresses whose bucket has refilled
                full = limits.login_burst / limits.login_rate
                for key in [k for k, b in buckets.items() if now - b[1] > full]:
                    del buckets[key]
            bucket = buckets[ip] = [limits.login_burst, now]
        tokens = min(limits.login_burst, bucket[0] + (now - bucket[1]) * limits.login_rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

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
                self._release(session.uid, session)
            self.sessions.unbind_uid(session)
        previous = self.sessions.by_uid(uid)
        if previous is not None and previous is not session:
            self.kick(previous, uid)
        if self._local is not None:  # in-process: kicks other gateways of this process at once
            self._local.claim_nowait(uid, self._conn_id(session))
        self.sessions.bind_uid(session, uid)
        self.metrics.logins.labels("ok").inc()

    def kick(self, session: Session, uid: int) -> None:
        """RELOGIN to the older connection, USER_DISCONNECT to services, then close it."""
        proto = session.protos.get(self.auth_stype, ProtoType.JSON)
        session.send_cmd(Stype.Auth, AuthCmd.RELOGIN, None, proto_type=proto)
        self._user_left(uid)
        self.sessions.unbind_uid(session)
        session.close("relogin: account logged in elsewhere")
        log.info(
            "uid %d: older connection %s kicked by a new login",
            uid,
            session.peer,
            extra=conn_context(session),
        )

    def login_reply(self, session: Session, cmd_buf: bytearray, proto_type: int) -> None:
        uid = self._login_uid(cmd_buf, proto_type)
        if uid:
            self.bind_login(session, uid)

    def _login_uid(self, cmd_buf: bytearray, proto_type: int) -> int:
        """The uid a GUEST_LOGIN reply logs in, or 0 if it is a refusal (or malformed)."""
        if proto_type != ProtoType.JSON:
            return 0
        try:
            reply = decode_json_body(cmd_buf)
        except ProtocolError:
            log.warning("malformed GUEST_LOGIN reply from the auth service")
            return 0
        if not isinstance(reply, dict) or reply.get("status") != 1:
            self.metrics.logins.labels("refused").inc()
            return 0
        uid = reply.get("uid")
        if type(uid) is not int or not 0 < uid <= MAX_UID:
            log.error("auth service returned an invalid uid %r; login not bound", uid)
            return 0
        return uid

    # ------------------------------------------------------------------- the registry
    def _conn_id(self, session: Session) -> str:
        return f"{self._incarnation}.{session.sid}"

    def _release(self, uid: int, session: Session) -> None:
        """``session`` no longer holds ``uid``: drop the registry entry if it is still ours."""
        if self._local is not None:
            self._local.release_nowait(uid, self._conn_id(session))
        elif not self._closing:
            self._spawn(self._release_remote(uid, self._conn_id(session)))

    async def _release_remote(self, uid: int, conn: str) -> None:
        try:
            await self.registry.release(uid, conn)
        except RegistryUnavailable as exc:  # the entry expires with its lease
            log.debug("release of uid %d failed: %s", uid, exc)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _kick_conn(self, uid: int, conn: str) -> None:
        """Registry kick handler: connection ``conn`` of this gateway lost ``uid``.

        Bound to ``uid``: kicked like a local relogin. Its claim still in flight: remembered,
        and refused when the claim returns (the kick can overtake the claim's own reply).
        """
        incarnation, _, sid = conn.partition(".")
        if incarnation != self._incarnation or not sid.isdigit():
            return  # a connection of an earlier run of this gateway id: long gone
        session = self.sessions.get(int(sid))
        if session is None or session.closed:
            return
        if session.uid == uid and self.sessions.by_uid(uid) is session:
            self.kick(session, uid)
        elif session.data.get("claiming") == uid:
            kicks = self._recent_kicks
            if len(kicks) > 10_000:  # claims end by popping theirs; this is only a backstop
                horizon = time.monotonic() - 60.0
                for key in [k for k, t in kicks.items() if t < horizon]:
                    del kicks[key]
            kicks[(uid, session.sid)] = time.monotonic()

    def _to_client_claiming(
        self, session: Session, stype: int, ctype: int, proto_type: int, cmd_buf: bytearray
    ) -> None:
        """`from_service` with a remote registry: logins wait for their claim, in order."""
        held = session.data.get("held")
        if held is not None:  # this connection's login is being claimed: keep the order
            held.append((stype, ctype, proto_type, cmd_buf))
            return
        if stype == self.auth_stype and ctype == AuthCmd.GUEST_LOGIN:
            uid = self._login_uid(cmd_buf, proto_type)
            if uid and uid != session.uid:
                self._start_claim(session, uid, cmd_buf)
                return
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.send_raw(cmd_buf)

    def _start_claim(self, session: Session, uid: int, reply: bytearray) -> None:
        session.data["held"] = []
        session.data["claiming"] = uid
        before = self._claims.get(uid)  # claims of one uid run one at a time per gateway
        task = self._spawn(self._claim(session, uid, reply, before))
        self._claims[uid] = task
        task.add_done_callback(partial(self._claim_done, uid))

    def _claim_done(self, uid: int, task: asyncio.Task[None]) -> None:
        if self._claims.get(uid) is task:
            del self._claims[uid]

    async def _claim(
        self, session: Session, uid: int, reply: bytearray, before: asyncio.Task[None] | None
    ) -> None:
        """Claim ``uid`` for ``session``, then bind and forward the reply, or refuse it."""
        conn = self._conn_id(session)
        try:
            try:
                async with asyncio.timeout(self.claim_timeout):
                    if before is not None and not before.done():
                        await asyncio.wait([before])
                    previous = await self.registry.claim(uid, conn)
            except (RegistryUnavailable, TimeoutError) as exc:
                self._recent_kicks.pop((uid, session.sid), None)
                self._registry_failed(session, exc)
                return
            superseded = self._recent_kicks.pop((uid, session.sid), None) is not None
            if previous is not None and previous.gateway == self.id:
                self._kick_conn(uid, previous.conn)  # an older connection of this gateway
            if session.closed or superseded:
                await self._release_remote(uid, conn)
                if not session.closed:  # a newer login elsewhere overtook this one
                    self.metrics.logins.labels("superseded").inc()
                    self._send_reply(session, reply)
                    proto = session.protos.get(self.auth_stype, ProtoType.JSON)
                    session.send_cmd(Stype.Auth, AuthCmd.RELOGIN, None, proto_type=proto)
                    session.close("relogin: account logged in elsewhere")
                return
            self.bind_login(session, uid)
            self._send_reply(session, reply)
        except Exception as exc:  # a bug: the login must still end
            log.exception("login claim for uid %d failed", uid)
            self._registry_failed(session, exc)
        finally:
            self._flush_held(session)

    def _send_reply(self, session: Session, cmd_buf: bytearray) -> None:
        self.metrics.packet("out", self.auth_stype, AuthCmd.GUEST_LOGIN, len(cmd_buf))
        session.send_raw(cmd_buf)

    def _registry_failed(self, session: Session, exc: BaseException) -> None:
        self.metrics.logins.labels("registry_error").inc()
        now = time.monotonic()
        if now - self._last_registry_warning > 10.0:  # one line per outage, not per login
            self._last_registry_warning = now
            log.warning("login registry unavailable (%s): logins answer SYSTEM_ERROR", exc)
        if not session.closed:
            session.send_cmd(
                self.auth_stype,
                AuthCmd.GUEST_LOGIN,
                {"status": AuthStatus.SYSTEM_ERROR},
                proto_type=ProtoType.JSON,
            )

    def _flush_held(self, session: Session) -> None:
        """Deliver what arrived for ``session`` during its claim (it may start another)."""
        session.data.pop("claiming", None)
        held = session.data.pop("held", None) or ()
        for stype, ctype, proto_type, cmd_buf in held:
            if session.closed:
                break
            self._to_client_claiming(session, stype, ctype, proto_type, cmd_buf)

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
            self._to_client_claiming(session, stype, ctype, proto_type, cmd_buf)
            return
        if stype == self.auth_stype and ctype == AuthCmd.GUEST_LOGIN:
            self.login_reply(session, cmd_buf, proto_type)
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.link.send_raw(cmd_buf)  # utag already cleared: no copy in Session.send_raw

    def service_link_changed(self, upstream: Upstream, up: bool) -> None:
        self.metrics.link_up.labels(upstream.name).set(1 if up else 0)
        if up and upstream.reconnects:
            self.metrics.reconnects.labels(upstream.name).inc()
        route = next((r for r in self.routes.values() if upstream in r.upstreams), None)
        if route is None:
            return
        live = [u for u in route.upstreams if u.is_up]
        before = [u for u in route.upstreams if (not up if u is upstream else u.is_up)]
        # A logged-in user whose instance changed hears it, so the client can re-enter:
        # SERVICE_UNAVAILABLE when none is left, SERVICE_AVAILABLE when one came back, both
        # (in that order) when it moved to another instance, whose state it must rebuild.
        # The instance it left, if still up (fail-back), gets USER_DISCONNECT: no ghosts.
        for session in self.sessions:
            uid = session.uid
            if not uid:
                # A login may be in flight on the lost link: tell whoever used the service.
                if not live and route.stype in session.protos:
                    proto = session.protos[route.stype]
                    self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, route.stype, 0, proto)
                continue
            old, new = route.choose(uid, before), route.choose(uid, live)
            if old is new:
                continue
            proto = session.protos.get(route.stype, ProtoType.JSON)
            if old is not None:
                if old.is_up:
                    old.send_raw(
                        CODECS.encode(
                            route.stype,
                            USER_DISCONNECT,
                            None,
                            utag=uid,
                            direction=Direction.TO_SERVER,
                        )
                    )
                self._notice(session, GatewayCmd.SERVICE_UNAVAILABLE, route.stype, 0, proto)
            if new is not None:
                self._notice(session, GatewayCmd.SERVICE_AVAILABLE, route.stype, 0, proto)


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
