"""`Dispatcher`: header, stype -> service, ctype -> handler, user, body, reply. One error policy.

Every request gets exactly one answer (docs/protocol.md §7.1): the handler's reply, or — when
the request cannot be served — the command's declared in-kind error reply or REQUEST_FAILED
(stype 0, ctype 10) with a `RequestStatus` (answers.py). Each failure is counted exactly in
``netbus_dropped_total{reason}`` and logged through a `SampledLog` (a few lines per reason
per minute, then one summary), never one INFO line per hostile packet.

Ordering. A client matches replies to requests FIFO per (stype, ctype), so one user's
answers to one command leave in request order even when an ``async`` handler is slow and a
later request of the same command is refused at once (`AnswerQueues`). Within one request,
the reply goes first and the pushes the handler made follow it ("replies first").

The hot path (a plain handler) does one header unpack, three dict lookups (service, command,
user), the body decode, the call, the reply encode and one ``send_raw``; the failure paths
build their `Origin` only when they are taken.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter
from typing import Any

from netbus.errors import LocalProtocolError, ProtocolError, RequestRefused
from netbus.metrics import Metrics
from netbus.protocol.codec import Reader, decode_json_body
from netbus.protocol.control import CONTROL_CODECS, USER_DISCONNECT, RequestStatus
from netbus.protocol.header import HEADER, HEADER_SIZE, PRELOGIN_BIT, ProtoType
from netbus.protocol.registry import CodecRegistry
from netbus.service.answers import (
    AnswerQueues,
    Command,
    Origin,
    Slot,
    answer_failure,
    encode_reply,
    refusal,
    who,
)
from netbus.service.base import Service
from netbus.service.sampling import SampledLog
from netbus.service.user import TASK_BATCH, Batch, Deferral, Outbox, Route, User

__all__ = ["Dispatcher"]

log = logging.getLogger("netbus.service")

_JSON = ProtoType.JSON


class _Bound:
    """One registered service: its dispatch table, its users, its outbox, its answer queues."""

    __slots__ = ("answers", "commands", "direct", "outbox", "service", "stype", "users")

    def __init__(self, service: Service, outbox: Outbox) -> None:
        self.service = service
        self.stype = service.stype
        self.outbox = outbox
        self.commands: dict[int, Command] = {
            ctype: Command(spec, getattr(service, spec.name))
            for ctype, spec in type(service).commands.items()
        }
        self.users: dict[int, User] = {}  #: logged-in users behind gateways, by uid
        self.direct: dict[Route, User] = {}  #: players connected straight to this server
        self.answers = AnswerQueues()


class Dispatcher:
    """Dispatches the packets of every route (gateway trunk or direct player) to services.

    Args:
        services: registered in order; each needs a distinct stype.
        metrics: where requests and failures are counted.
        clock: for the sampled error log (inject a fake clock in tests).
        log_per_window: error lines logged per reason per window.
        log_window: seconds.
    """

    def __init__(
        self,
        services: Iterable[Service] = (),
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_per_window: int = 10,
        log_window: float = 60.0,
    ) -> None:
        self.metrics = metrics or Metrics("service")
        self.errors = SampledLog(log, per_window=log_per_window, window=log_window, clock=clock)
        self._bound: dict[int, _Bound] = {}
        self._deferral = Deferral()
        self._sync_batch = Batch()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._dropped: dict[str, Any] = {}
        self._codecs = CONTROL_CODECS
        for service in services:
            self.register(service)

    # --------------------------------------------------------------------- registration
    def register(self, service: Service) -> None:
        """Add ``service``: bind its handlers, give it its outbox.

        Raises:
            ValueError: invalid or duplicate stype, or its layouts clash with another's.
        """
        stype = service.stype
        if not isinstance(stype, int) or not 1 <= stype <= 0xFFFF:
            raise ValueError(f"service {service.name!r} has no valid stype ({stype!r}; 1-65535)")
        if stype in self._bound:
            raise ValueError(f"stype {stype} is already served by {self._bound[stype].service}")
        if service._outbox is not None and not service._outbox.stopped:
            raise ValueError(f"service {service.name!r} is already registered with a server")
        codecs = self._codecs | service.codecs()
        outbox = Outbox(stype, dict(type(service)._push_layouts), self._deferral)
        self._bound[stype] = _Bound(service, outbox)
        service._outbox = outbox
        self._codecs = codecs
        self.metrics.add_stype(stype)

    @property
    def services(self) -> list[Service]:
        return [b.service for b in self._bound.values()]

    def get(self, stype: int) -> Service | None:
        bound = self._bound.get(stype)
        return bound.service if bound is not None else None

    @property
    def codecs(self) -> CodecRegistry:
        """The control channel plus every registered service's layouts."""
        return self._codecs

    def users(self, stype: int) -> list[User]:
        """The users service ``stype`` currently knows (logged-in and direct players)."""
        bound = self._bound[stype]
        return [*bound.users.values(), *bound.direct.values()]

    # ------------------------------------------------------------------------- dispatch
    def packet(self, route: Route, cmd_buf: bytearray) -> bool:
        """One cmd_buf from ``route``.

        Returns False when the packet is malformed (its header, or for a direct player its
        body too): the caller closes a direct player's link. A gateway trunk is never closed
        for what one user sent.
        """
        if len(cmd_buf) < HEADER_SIZE:
            self._protocol_error(route, ProtocolError("short_header", f"{len(cmd_buf)} bytes"))
            return False
        stype, ctype, utag, proto = HEADER.unpack_from(cmd_buf)
        if proto != 1 and proto != 2:
            self._protocol_error(route, ProtocolError("bad_proto_type", str(proto)))
            return False
        self.metrics.packet("in", stype, ctype, len(cmd_buf))
        direct = route.direct
        if direct:
            utag = 0  # a direct player never chooses its utag
        bound = self._bound.get(stype)
        if bound is None:
            origin = Origin(route, stype, ctype, utag, proto)
            self._refuse(origin, RequestStatus.UNKNOWN_COMMAND, "unknown_stype", "no service")
            return True
        if 10000 <= ctype < 11000:  # gateway-only (docs/protocol.md §6.3)
            if direct:
                origin = Origin(route, stype, ctype, utag, proto)
                self._refuse(origin, RequestStatus.NOT_ALLOWED, "forged_control", "gateway-only")
            elif ctype == USER_DISCONNECT:
                self._user_disconnect(bound, route, utag)
            else:
                self._drop("unknown_notice")
            return True
        cmd = bound.commands.get(ctype)
        if cmd is None:
            origin = Origin(route, stype, ctype, utag, proto)
            self._refuse(origin, RequestStatus.UNKNOWN_COMMAND, "unknown_command", "no command")
            return True
        user: User | None
        if direct:
            user = bound.direct.get(route)
            if user is None:
                user = User(bound.outbox, route, 0, uid=0, proto_type=proto, ident=route)
                bound.direct[route] = user
            else:
                user.proto_type = proto
        elif utag == 0 or utag >= PRELOGIN_BIT:
            user = User(bound.outbox, route, utag, uid=0, proto_type=proto, ident=(route, utag))
        else:
            user = bound.users.get(utag)
            if user is None or user.route is not route:
                user = self._arrive(bound, route, utag, proto)
            else:
                user.proto_type = proto
        try:
            if proto == _JSON:
                body = decode_json_body(cmd_buf, HEADER_SIZE)
            elif cmd.buf is not None:
                body = cmd.buf.decode(Reader(cmd_buf, HEADER_SIZE))
            else:
                raise ProtocolError("no_buf_layout", f"({stype}, {ctype}) accepts JSON only")
        except ProtocolError as exc:
            self.metrics.protocol_errors.labels(exc.kind).inc()
            route.link.stats.protocol_errors += 1
            origin = Origin(route, stype, ctype, utag, proto)
            self._refuse(origin, RequestStatus.BAD_REQUEST, "bad_request", exc, cmd, bound, user)
            # Answered either way; a direct player broke the contract (docs/protocol.md §9)
            # and loses its connection, a gateway trunk carries others and stays.
            return not direct
        if cmd.is_async:
            self._spawn(bound, cmd, user, body, Origin(route, stype, ctype, utag, proto))
            return True
        # The fast path: a plain handler, run inline; its pushes wait for its reply.
        deferral = self._deferral
        batch = deferral.batch = self._sync_batch
        start = perf_counter()
        try:
            result = cmd.handler(user, body)
        except Exception as exc:
            deferral.batch = None
            self._handler_failed(Origin(route, stype, ctype, utag, proto), exc, cmd, bound, user)
        else:
            deferral.batch = None
            if cmd.reply:
                try:
                    data = encode_reply(stype, cmd, utag, proto, result)
                except LocalProtocolError as exc:
                    origin = Origin(route, stype, ctype, utag, proto)
                    self._refuse(
                        origin, RequestStatus.SERVER_ERROR, "bad_reply", exc, cmd, bound, user
                    )
                else:
                    route.link.send_raw(data)
            elif result is not None:
                self._bug("bad_reply", bound, ctype, user, f"{cmd.name} returned a value")
        held = batch.items
        if held:
            for target, push in held:
                target.send_raw(push)
            held.clear()
        self.metrics.handler_done(stype, start)
        return True

    # ---------------------------------------------------------------------------- users
    def _arrive(self, bound: _Bound, route: Route, uid: int, proto: int) -> User:
        """First packet of ``uid`` on ``route``. If the uid was known through another link
        (a login elsewhere raced the old gateway's USER_DISCONNECT), that presence is gone."""
        old = bound.users.pop(uid, None)
        if old is not None:
            self._hook(bound, bound.service.on_user_left, old)
        user = User(bound.outbox, route, uid, uid=uid, proto_type=proto, ident=uid)
        bound.users[uid] = user
        return user

    def _user_disconnect(self, bound: _Bound, route: Route, uid: int) -> None:
        user = bound.users.get(uid)
        if user is None or user.route is not route:
            return  # never seen here, or already back through another link
        del bound.users[uid]
        self._hook(bound, bound.service.on_user_left, user)

    def route_closed(self, route: Route) -> None:
        """``route``'s link closed: its direct player left, or its gateway's users did."""
        for bound in self._bound.values():
            if route.direct:
                user = bound.direct.pop(route, None)
                if user is not None:
                    self._hook(bound, bound.service.on_user_left, user)
                continue
            gone = [u for u in bound.users.values() if u.route is route]
            for user in gone:
                del bound.users[user.uid]
            if not gone:
                continue
            if type(bound.service).on_gateway_lost is Service.on_gateway_lost:
                for user in gone:  # the default, with each user's hook contained on its own
                    self._hook(bound, bound.service.on_user_left, user)
            else:
                self._hook(bound, bound.service.on_gateway_lost, gone)

    # ------------------------------------------------------------------------- failures
    def _handler_failed(
        self, origin: Origin, exc: Exception, cmd: Command, bound: _Bound, user: User
    ) -> None:
        if isinstance(exc, RequestRefused):
            status, reason = refusal(exc)
            self._refuse(origin, status, reason, exc, cmd, bound, user)
        else:
            self._refuse(origin, RequestStatus.SERVER_ERROR, "handler_error", exc, cmd, bound, user)

    def _refuse(
        self,
        origin: Origin,
        status: RequestStatus,
        reason: str,
        detail: object,
        cmd: Command | None = None,
        bound: _Bound | None = None,
        user: User | None = None,
    ) -> None:
        """Answer a request that could not be served (in order), count it, log it (sampled)."""
        data = self._failure(origin, status, reason, detail, cmd, user)
        if bound is not None and cmd is not None and cmd.is_async and bound.answers:
            bound.answers.send_or_hold((origin.route, origin.utag, origin.ctype), data)
        else:
            origin.route.link.send_raw(data)

    def _failure(
        self,
        origin: Origin,
        status: RequestStatus,
        reason: str,
        detail: object,
        cmd: Command | None,
        user: User | None,
    ) -> bytes:
        """Count and log a failure; return its answer."""
        self._drop(reason)
        if isinstance(detail, BaseException) and status is RequestStatus.SERVER_ERROR:
            self.errors.log(
                reason,
                logging.ERROR,
                "stype %d ctype %d from %s: %s failed",
                origin.stype,
                origin.ctype,
                who(origin, user),
                cmd.name if cmd is not None else "handler",
                exc_info=detail,
            )
        else:
            self.errors.log(
                reason,
                logging.INFO,
                "stype %d ctype %d from %s refused (%s): %s",
                origin.stype,
                origin.ctype,
                who(origin, user),
                status.name,
                detail,
            )
        return answer_failure(origin, cmd, status)

    def _bug(self, reason: str, bound: _Bound, ctype: int, user: User | None, msg: str) -> None:
        self._drop(reason)
        self.errors.log(
            reason, logging.ERROR, "stype %d ctype %d (%s): %s", bound.stype, ctype, user, msg
        )

    def _drop(self, reason: str) -> None:
        counter = self._dropped.get(reason)
        if counter is None:
            counter = self._dropped[reason] = self.metrics.dropped.labels(reason)
        counter.inc()

    def _protocol_error(self, route: Route, exc: ProtocolError) -> None:
        self.metrics.protocol_errors.labels(exc.kind).inc()
        route.link.stats.protocol_errors += 1
        self.errors.log(exc.kind, logging.INFO, "malformed packet from %s: %s", route, exc)

    # ---------------------------------------------------------------- async handlers
    def _spawn(self, bound: _Bound, cmd: Command, user: User, body: Any, origin: Origin) -> None:
        key = (origin.route, origin.utag, origin.ctype)
        slot = bound.answers.open(key)
        coro = self._run(bound, cmd, user, body, origin, key, slot)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        bound: _Bound,
        cmd: Command,
        user: User,
        body: Any,
        origin: Origin,
        key: tuple[Route, int, int],
        slot: Slot,
    ) -> None:
        stype, utag, proto = origin.stype, origin.utag, origin.proto
        batch = Batch()
        TASK_BATCH.set(batch)  # this task's own context: its pushes wait for its reply
        start = perf_counter()
        data: bytes | None = None
        try:
            result = await cmd.handler(user, body)
            if cmd.reply:
                data = encode_reply(stype, cmd, utag, proto, result)
            elif result is not None:
                self._bug("bad_reply", bound, cmd.ctype, user, f"{cmd.name} returned a value")
        except RequestRefused as exc:
            status, reason = refusal(exc)
            data = self._failure(origin, status, reason, exc, cmd, user)
        except LocalProtocolError as exc:
            data = self._failure(origin, RequestStatus.SERVER_ERROR, "bad_reply", exc, cmd, user)
        except Exception as exc:
            status = RequestStatus.SERVER_ERROR
            data = self._failure(origin, status, "handler_error", exc, cmd, user)
        finally:
            batch.open = False
            bound.answers.fill(key, slot, data, batch.items)
            self.metrics.handler_done(stype, start)

    # ----------------------------------------------------------------------------- hooks
    def _hook(self, bound: _Bound, hook: Callable[..., Any], *args: Any) -> None:
        """Run a lifecycle hook; an awaitable result becomes a tracked task."""
        name = getattr(hook, "__name__", "hook")
        try:
            result = hook(*args)
        except Exception as exc:
            self._hook_failed(bound, name, exc)
            return
        if result is not None and inspect.isawaitable(result):
            self._track(bound, result, name)

    def _hook_failed(self, bound: _Bound, name: str, exc: BaseException) -> None:
        self._drop("hook_error")
        self.errors.log(
            "hook_error", logging.ERROR, "%s.%s failed", bound.service.name, name, exc_info=exc
        )

    def _track(self, bound: _Bound, awaitable: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                self._hook_failed(bound, name, exc)

        task.add_done_callback(done)

    async def start(self) -> None:
        """Run every service's ``on_start`` (in registration order)."""
        for bound in self._bound.values():
            result = bound.service.on_start()
            if result is not None:
                await result

    async def stop(self) -> None:
        """Run every service's ``on_stop`` (in reverse order); errors are logged, not raised.

        Each service is then free to be registered with another server (a restart).
        """
        for bound in reversed(list(self._bound.values())):
            try:
                result = bound.service.on_stop()
                if result is not None:
                    await result
            except Exception:
                log.exception("%s.on_stop failed", bound.service.name)
            bound.outbox.stopped = True
        self.errors.flush()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for running async handlers and hooks (graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    @property
    def pending(self) -> int:
        return len(self._tasks)
