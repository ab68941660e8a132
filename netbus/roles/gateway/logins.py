"""The gateway's login claims: which connection holds each uid, through the registry.

Alone (no ``[redis] url``), a gateway binds a uid synchronously, in the same callback that
reads the GUEST_LOGIN reply, and its `LocalRegistry` costs one dict write: `Gateway` calls
`LocalRegistry.claim_nowait` itself and this module only releases. With the Redis registry the
claim is a round trip: `LoginClaims.to_client` holds the reply (and later packets for that
connection, in order) until the claim lands, and replaces it by SYSTEM_ERROR if Redis fails
or the deadline passes. docs/scaling.md explains why exactly one connection per uid survives
concurrent logins on several gateways.

Connection ids are ``"<incarnation>.<sid>"``: the random incarnation tells this run of a
gateway id from earlier ones, whose connections are long gone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from netbus.errors import ProtocolError, RegistryUnavailable
from netbus.metrics import Metrics
from netbus.protocol.codec import decode_json_body
from netbus.protocol.header import ProtoType
from netbus.registry.base import Registry
from netbus.registry.local import LocalRegistry
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.roles.gateway.routing import MAX_UID
from netbus.session import Session
from netbus.transport.reasons import CloseReason

if TYPE_CHECKING:
    from netbus.roles.gateway.gateway import Gateway

__all__ = ["LoginClaims", "login_uid"]

log = logging.getLogger("netbus.gateway")


def login_uid(cmd_buf: bytearray, proto_type: int, metrics: Metrics) -> int:
    """The uid a GUEST_LOGIN reply logs in, or 0 if it is a refusal (or malformed)."""
    if proto_type != ProtoType.JSON:
        return 0
    try:
        reply = decode_json_body(cmd_buf)
    except ProtocolError:
        log.warning("malformed GUEST_LOGIN reply from the auth service")
        return 0
    if not isinstance(reply, dict) or reply.get("status") != 1:
        metrics.logins.labels("refused").inc()
        return 0
    uid = reply.get("uid")
    if type(uid) is not int or not 0 < uid <= MAX_UID:
        log.error("auth service returned an invalid uid %r; login not bound", uid)
        return 0
    return uid


class LoginClaims:
    """A gateway's side of the registry: claims in flight, releases, kicks from elsewhere.

    Binding and kicking stay with the `Gateway` (`Gateway.bind_login`, `Gateway.kick`); this
    object decides when they happen for logins that need a registry round trip.

    Args:
        gateway: the gateway whose connections claim uids.
        registry: who is logged in where; this object becomes its kick handler.
        claim_timeout: seconds a login may wait for a remote registry before SYSTEM_ERROR.
    """

    def __init__(self, gateway: Gateway, registry: Registry, *, claim_timeout: float) -> None:
        self.gateway = gateway
        self.metrics = gateway.metrics
        self.registry = registry
        #: the synchronous in-process registry, or None when claims are remote round trips
        self.local = registry if isinstance(registry, LocalRegistry) else None
        registry.set_kick_handler(self.kick_conn)
        self.claim_timeout = claim_timeout
        #: makes conn ids unique across restarts of one gateway id ("<incarnation>.<sid>")
        self.incarnation = secrets.token_hex(4)
        self.claims: dict[int, asyncio.Task[None]] = {}  #: uid -> newest claim in flight
        self.recent_kicks: dict[tuple[int, int], float] = {}  #: (uid, sid) kicked mid-claim
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._last_registry_warning = 0.0

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.registry.start()

    async def drain(self) -> None:
        """Let claims in flight end and releases land, within ``claim_timeout``.

        Call it once the clients are gone; from then on releases are left to `close`.
        """
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=self.claim_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._closing = True  # from here on, registry.close() releases whatever is held

    async def close(self) -> None:
        await self.registry.close()

    # ------------------------------------------------------------------ uid ownership
    def conn_id(self, session: Session) -> str:
        return f"{self.incarnation}.{session.sid}"

    def release(self, uid: int, session: Session) -> None:
        """``session`` no longer holds ``uid``: drop the registry entry if it is still ours."""
        if self.local is not None:
            self.local.release_nowait(uid, self.conn_id(session))
        elif not self._closing:
            self._spawn(self._release_remote(uid, self.conn_id(session)))

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

    def kick_conn(self, uid: int, conn: str) -> None:
        """Registry kick handler: connection ``conn`` of this gateway lost ``uid``.

        Bound to ``uid``: kicked like a local relogin. Its claim still in flight: remembered,
        and refused when the claim returns (the kick can overtake the claim's own reply).
        """
        incarnation, _, sid = conn.partition(".")
        if incarnation != self.incarnation or not sid.isdigit():
            return  # a connection of an earlier run of this gateway id: long gone
        sessions = self.gateway.sessions
        session = sessions.get(int(sid))
        if session is None or session.closed:
            return
        if session.uid == uid and sessions.by_uid(uid) is session:
            self.gateway.kick(session, uid)
        elif session.data.get("claiming") == uid:
            kicks = self.recent_kicks
            if len(kicks) > 10_000:  # claims end by popping theirs; this is only a backstop
                horizon = time.monotonic() - 60.0
                for key in [k for k, t in kicks.items() if t < horizon]:
                    del kicks[key]
            kicks[(uid, session.sid)] = time.monotonic()

    # ------------------------------------------------------------- logins in flight
    def to_client(
        self, session: Session, stype: int, ctype: int, proto_type: int, cmd_buf: bytearray
    ) -> None:
        """`Gateway.from_service` with a remote registry: logins wait for their claim, in order.

        ``cmd_buf``'s utag must already be cleared.
        """
        held = session.data.get("held")
        if held is not None:  # this connection's login is being claimed: keep the order
            held.append((stype, ctype, proto_type, cmd_buf))
            return
        if stype == self.gateway.auth_stype and ctype == AuthCmd.GUEST_LOGIN:
            uid = login_uid(cmd_buf, proto_type, self.metrics)
            if uid and uid != session.uid:
                self._start_claim(session, uid, cmd_buf)
                return
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.send_raw(cmd_buf)

    def _start_claim(self, session: Session, uid: int, reply: bytearray) -> None:
        session.data["held"] = []
        session.data["claiming"] = uid
        before = self.claims.get(uid)  # claims of one uid run one at a time per gateway
        task = self._spawn(self._claim(session, uid, reply, before))
        self.claims[uid] = task
        task.add_done_callback(partial(self._claim_done, uid))

    def _claim_done(self, uid: int, task: asyncio.Task[None]) -> None:
        if self.claims.get(uid) is task:
            del self.claims[uid]

    async def _claim(
        self, session: Session, uid: int, reply: bytearray, before: asyncio.Task[None] | None
    ) -> None:
        """Claim ``uid`` for ``session``, then bind and forward the reply, or refuse it."""
        gateway = self.gateway
        conn = self.conn_id(session)
        try:
            try:
                async with asyncio.timeout(self.claim_timeout):
                    if before is not None and not before.done():
                        await asyncio.wait([before])
                    previous = await self.registry.claim(uid, conn)
            except (RegistryUnavailable, TimeoutError) as exc:
                self.recent_kicks.pop((uid, session.sid), None)
                self._registry_failed(session, exc)
                return
            superseded = self.recent_kicks.pop((uid, session.sid), None) is not None
            if previous is not None and previous.gateway == gateway.id:
                self.kick_conn(uid, previous.conn)  # an older connection of this gateway
            if session.closed or superseded:
                await self._release_remote(uid, conn)
                if not session.closed:  # a newer login elsewhere overtook this one
                    self.metrics.logins.labels("superseded").inc()
                    self._send_reply(session, reply)
                    proto = session.protos.get(gateway.auth_stype, ProtoType.JSON)
                    session.send_cmd(Stype.Auth, AuthCmd.RELOGIN, None, proto_type=proto)
                    session.close(CloseReason.RELOGIN)
                return
            gateway.bind_login(session, uid)
            self._send_reply(session, reply)
        except Exception as exc:  # a bug: the login must still end
            log.exception("login claim for uid %d failed", uid)
            self._registry_failed(session, exc)
        finally:
            self._flush_held(session)

    def _send_reply(self, session: Session, cmd_buf: bytearray) -> None:
        self.metrics.packet("out", self.gateway.auth_stype, AuthCmd.GUEST_LOGIN, len(cmd_buf))
        session.send_raw(cmd_buf)

    def _registry_failed(self, session: Session, exc: BaseException) -> None:
        self.metrics.logins.labels("registry_error").inc()
        now = time.monotonic()
        if now - self._last_registry_warning > 10.0:  # one line per outage, not per login
            self._last_registry_warning = now
            log.warning("login registry unavailable (%s): logins answer SYSTEM_ERROR", exc)
        if not session.closed:
            session.send_cmd(
                self.gateway.auth_stype,
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
            self.to_client(session, stype, ctype, proto_type, cmd_buf)
