"""The gateway's logins: which connection holds each uid, through the registry.

Two strategies, one chosen when the gateway is built (`make_logins`), so the packet path
back to a client never asks which one it runs:

- `LocalLogins` (no ``[redis] url``): the in-process `LocalRegistry`. A uid is bound in the
  same callback that reads the GUEST_LOGIN reply, and the claim costs one dict write.
- `ClaimedLogins` (the Redis registry): the claim is a round trip. The reply, and later
  packets for that connection, are held in order until the claim lands; the reply becomes
  SYSTEM_ERROR if the registry fails or the deadline passes. docs/scaling.md explains why
  exactly one connection per uid survives concurrent logins on several gateways.

Both reach the gateway only through `LoginHost` (its connections, bind a uid, kick one),
never through the `Gateway` class. The gateway calls `Logins.to_client` for every packet to
a client, `Logins.release` when a connection lets a uid go, and the registry calls
`Logins.kick_conn` when another gateway took a uid.

Connection ids are ``"<incarnation>.<sid>"``: the random incarnation tells this run of a
gateway id from earlier ones, whose connections are long gone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, Protocol

from netbus.errors import ProtocolError, RegistryUnavailable
from netbus.metrics import Metrics
from netbus.protocol.codec import decode_json_body
from netbus.protocol.header import MAX_UID, ProtoType
from netbus.registry.base import Registry
from netbus.registry.local import LocalRegistry
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.session import Session, SessionTable
from netbus.transport.reasons import CloseReason

__all__ = [
    "ClaimedLogins",
    "LocalLogins",
    "LoginHost",
    "Logins",
    "login_uid",
    "make_logins",
]

log = logging.getLogger("netbus.gateway")

_GUEST_LOGIN = int(AuthCmd.GUEST_LOGIN)
_RELOGIN = int(AuthCmd.RELOGIN)
_MAX_RECENT_KICKS = 10_000  #: claims end by popping theirs; pruning is only a backstop
_RECENT_KICK_HORIZON = 60.0  #: seconds after which a remembered kick is pruned


class LoginHost(Protocol):
    """What logins need of the gateway (the `Gateway` implements it)."""

    @property
    def sessions(self) -> SessionTable:
        """The gateway's connections, by sid and by uid."""
        ...

    def bind_login(self, session: Session, uid: int) -> None:
        """Make ``session`` the one connection of ``uid`` here, kicking an older one."""
        ...

    def kick(self, session: Session, uid: int) -> None:
        """Tell ``session`` (bound to ``uid``) it lost to a newer login, and close it."""
        ...


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


class Logins:
    """A gateway's side of the registry: uid releases and kicks from elsewhere.

    Subclasses decide how a login reply on its way to a client becomes a binding
    (`to_client`) and how a uid is let go (`release`).

    Args:
        host: the gateway whose connections log in.
        registry: who is logged in where; this object becomes its kick handler.
        auth_stype: the service whose GUEST_LOGIN replies bind uids.
        claim_timeout: seconds a login may wait for a remote registry before SYSTEM_ERROR;
            also how long `drain` waits for claims in flight.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        host: LoginHost,
        registry: Registry,
        *,
        auth_stype: int,
        metrics: Metrics,
        claim_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.registry = registry
        self.auth_stype = auth_stype
        self.metrics = metrics
        self.claim_timeout = claim_timeout
        self.clock = clock
        #: makes conn ids unique across restarts of one gateway id ("<incarnation>.<sid>")
        self.incarnation = secrets.token_hex(4)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        registry.set_kick_handler(self.kick_conn)

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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ uid ownership
    def conn_id(self, session: Session) -> str:
        """``session``'s id in the registry: ``"<incarnation>.<sid>"``."""
        return f"{self.incarnation}.{session.sid}"

    def release(self, uid: int, session: Session) -> None:
        """``session`` no longer holds ``uid``: drop the registry entry if it is still ours."""
        raise NotImplementedError

    def kick_conn(self, uid: int, conn: str) -> None:
        """Registry kick handler: connection ``conn`` of this gateway lost ``uid``.

        Bound to ``uid``: kicked like a local relogin. Otherwise it may be a login whose claim
        is still in flight (`_kicked_mid_claim`).
        """
        incarnation, _, sid = conn.partition(".")
        if incarnation != self.incarnation or not sid.isdigit():
            return  # a connection of an earlier run of this gateway id: long gone
        sessions = self.host.sessions
        session = sessions.get(int(sid))
        if session is None or session.closed:
            return
        if session.uid == uid and sessions.by_uid(uid) is session:
            self.host.kick(session, uid)
        else:
            self._kicked_mid_claim(uid, session)

    def _kicked_mid_claim(self, uid: int, session: Session) -> None:
        """A kick for ``session`` that is not bound to ``uid`` (nothing to do by default)."""

    # ------------------------------------------------------------ the way to clients
    def to_client(
        self, session: Session, stype: int, ctype: int, proto_type: int, cmd_buf: bytearray
    ) -> None:
        """Deliver a packet from a service to ``session``; a login reply binds its uid first.

        ``cmd_buf``'s utag must already be cleared.
        """
        raise NotImplementedError


class LocalLogins(Logins):
    """Logins against the in-process `LocalRegistry`: bound synchronously, no task, no await.

    A `LocalRegistry` shared by several gateways of one process (a `LocalHub`) kicks the
    loser on the other gateway within the claim.
    """

    def __init__(
        self,
        host: LoginHost,
        registry: LocalRegistry,
        *,
        auth_stype: int,
        metrics: Metrics,
        claim_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            host,
            registry,
            auth_stype=auth_stype,
            metrics=metrics,
            claim_timeout=claim_timeout,
            clock=clock,
        )
        self.local = registry

    def release(self, uid: int, session: Session) -> None:
        self.local.release_nowait(uid, self.conn_id(session))

    def to_client(
        self, session: Session, stype: int, ctype: int, proto_type: int, cmd_buf: bytearray
    ) -> None:
        if ctype == _GUEST_LOGIN and stype == self.auth_stype:
            uid = login_uid(cmd_buf, proto_type, self.metrics)
            if uid and not session.closed and session.uid != uid:
                self.host.bind_login(session, uid)
                self.local.claim_nowait(uid, self.conn_id(session))
        self.metrics.packet("out", stype, ctype, len(cmd_buf))
        session.link.send_raw(cmd_buf)  # utag already cleared: no copy in Session.send_raw


class ClaimedLogins(Logins):
    """Logins against a remote registry (Redis): each login waits for its claim, in order.

    While a connection's claim is in flight, what the services send it is held and delivered
    in order afterwards. A kick that overtakes the claim's own reply (another gateway claimed
    the uid right after) is remembered, and the login is then refused as superseded.
    """

    def __init__(
        self,
        host: LoginHost,
        registry: Registry,
        *,
        auth_stype: int,
        metrics: Metrics,
        claim_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            host,
            registry,
            auth_stype=auth_stype,
            metrics=metrics,
            claim_timeout=claim_timeout,
            clock=clock,
        )
        self._claims: dict[int, asyncio.Task[None]] = {}  #: uid -> newest claim in flight
        self._recent_kicks: dict[tuple[int, int], float] = {}  #: (uid, sid) kicked mid-claim
        self._last_registry_warning = float("-inf")

    @property
    def recent_kicks(self) -> Mapping[tuple[int, int], float]:
        """``(uid, sid) -> when``: kicks that reached a connection while its claim was in
        flight (read-only; each claim removes its own when it ends)."""
        return MappingProxyType(self._recent_kicks)

    def held(self, session: Session) -> int:
        """How many packets wait for ``session``'s claim to land (0 when none is in flight)."""
        held = session.data.get("held")
        return len(held) if held is not None else 0

    def release(self, uid: int, session: Session) -> None:
        if not self._closing:
            self._spawn(self._release_remote(uid, self.conn_id(session)))

    async def _release_remote(self, uid: int, conn: str) -> None:
        try:
            await self.registry.release(uid, conn)
        except RegistryUnavailable as exc:  # the entry expires with its lease
            log.debug("release of uid %d failed: %s", uid, exc)

    def _kicked_mid_claim(self, uid: int, session: Session) -> None:
        if session.data.get("claiming") != uid:
            return
        kicks = self._recent_kicks
        now = self.clock()
        if len(kicks) > _MAX_RECENT_KICKS:
            horizon = now - _RECENT_KICK_HORIZON
            for key in [k for k, t in kicks.items() if t < horizon]:
                del kicks[key]
        kicks[(uid, session.sid)] = now

    # ------------------------------------------------------------- logins in flight
    def to_client(
        self, session: Session, stype: int, ctype: int, proto_type: int, cmd_buf: bytearray
    ) -> None:
        held = session.data.get("held")
        if held is not None:  # this connection's login is being claimed: keep the order
            held.append((stype, ctype, proto_type, cmd_buf))
            return
        if ctype == _GUEST_LOGIN and stype == self.auth_stype:
            uid = login_uid(cmd_buf, proto_type, self.metrics)
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
        conn = self.conn_id(session)
        kicks = self._recent_kicks
        try:
            try:
                async with asyncio.timeout(self.claim_timeout):
                    if before is not None and not before.done():
                        await asyncio.wait([before])
                    previous = await self.registry.claim(uid, conn)
            except (RegistryUnavailable, TimeoutError) as exc:
                kicks.pop((uid, session.sid), None)
                self._registry_failed(session, exc)
                return
            superseded = kicks.pop((uid, session.sid), None) is not None
            if previous is not None and previous.gateway == self.registry.gateway_id:
                self.kick_conn(uid, previous.conn)  # an older connection of this gateway
            if session.closed or superseded:
                await self._release_remote(uid, conn)
                if not session.closed:  # a newer login elsewhere overtook this one
                    self.metrics.logins.labels("superseded").inc()
                    self._send_reply(session, reply)
                    proto = session.protos.get(self.auth_stype, ProtoType.JSON)
                    session.send_cmd(self.auth_stype, _RELOGIN, None, proto_type=proto)
                    session.close(CloseReason.RELOGIN)
                return
            self.host.bind_login(session, uid)
            self._send_reply(session, reply)
        except Exception as exc:  # a bug: the login must still end
            log.exception("login claim for uid %d failed", uid)
            self._registry_failed(session, exc)
        finally:
            self._flush_held(session)

    def _send_reply(self, session: Session, cmd_buf: bytearray) -> None:
        self.metrics.packet("out", self.auth_stype, _GUEST_LOGIN, len(cmd_buf))
        session.send_raw(cmd_buf)

    def _registry_failed(self, session: Session, exc: BaseException) -> None:
        self.metrics.logins.labels("registry_error").inc()
        now = self.clock()
        if now - self._last_registry_warning > 10.0:  # one line per outage, not per login
            self._last_registry_warning = now
            log.warning("login registry unavailable (%s): logins answer SYSTEM_ERROR", exc)
        if not session.closed:
            session.send_cmd(
                self.auth_stype,
                _GUEST_LOGIN,
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


def make_logins(
    host: LoginHost,
    registry: Registry,
    *,
    auth_stype: int,
    metrics: Metrics,
    claim_timeout: float = 1.5,
    clock: Callable[[], float] = time.monotonic,
) -> Logins:
    """The strategy for ``registry``: `LocalLogins` for a `LocalRegistry`, else `ClaimedLogins`."""
    if isinstance(registry, LocalRegistry):
        return LocalLogins(
            host,
            registry,
            auth_stype=auth_stype,
            metrics=metrics,
            claim_timeout=claim_timeout,
            clock=clock,
        )
    return ClaimedLogins(
        host,
        registry,
        auth_stype=auth_stype,
        metrics=metrics,
        claim_timeout=claim_timeout,
        clock=clock,
    )
