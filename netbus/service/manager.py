"""`ServiceManager`: decode the header, find the service by stype, dispatch, contain errors.

This is the original framework's service_manager. One error policy for all handlers: a
malformed packet or a failing handler is logged and counted, and the packet is dropped;
nothing escapes to the link, so one bad packet never costs other users their route.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from time import perf_counter

from netbus.errors import ProtocolError
from netbus.metrics import Metrics
from netbus.protocol.commands import CODECS, USER_DISCONNECT, CodecRegistry, Direction
from netbus.protocol.header import unpack_header, write_utag
from netbus.service.base import HandlerResult, Service
from netbus.service.context import Request
from netbus.session import Session

__all__ = ["ServiceManager"]

log = logging.getLogger("netbus.service")


class ServiceManager:
    def __init__(
        self,
        services: Iterable[Service] = (),
        *,
        codecs: CodecRegistry = CODECS,
        metrics: Metrics | None = None,
    ) -> None:
        self.codecs = codecs
        self.metrics = metrics or Metrics("service")
        self._services: dict[int, Service] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        for service in services:
            self.register(service)

    def register(self, service: Service) -> None:
        if not 0 <= service.stype <= 0xFFFF:
            raise ValueError(f"service {service.name!r} has no valid stype ({service.stype})")
        if service.stype in self._services:
            raise ValueError(
                f"stype {service.stype} is already served by {self.get(service.stype)}"
            )
        self._services[service.stype] = service
        self.metrics.add_stype(service.stype)

    def get(self, stype: int) -> Service | None:
        return self._services.get(stype)

    @property
    def services(self) -> list[Service]:
        return list(self._services.values())

    # ------------------------------------------------------------------------- dispatch
    def on_player_cmd(self, session: Session, cmd_buf: bytearray) -> bool:
        """A packet from a player side (a direct client, or a gateway link at a service).

        Returns False if the packet was rejected as malformed (a direct client's connection
        should then be closed by the caller; a gateway link never is).
        """
        return self._dispatch(session, cmd_buf, Direction.TO_SERVER)

    def on_service_cmd(self, session: Session, cmd_buf: bytearray) -> bool:
        """A packet arriving from a service link (replies and pushes, at a gateway)."""
        return self._dispatch(session, cmd_buf, Direction.TO_CLIENT)

    def _dispatch(self, session: Session, cmd_buf: bytearray, direction: Direction) -> bool:
        metrics = self.metrics
        try:
            stype, ctype, utag, proto_type = unpack_header(cmd_buf)
        except ProtocolError as exc:
            self._reject(session, exc)
            return False
        metrics.packet("in", stype, ctype, len(cmd_buf))
        service = self._services.get(stype)
        if service is None:
            metrics.dropped.labels("unknown_stype").inc()
            return True
        if session.is_client:
            # A direct player never chooses its utag: it is its session id.
            utag = session.sid
            write_utag(cmd_buf, utag)
            if ctype == USER_DISCONNECT:
                metrics.dropped.labels("forged_control").inc()
                return True
            session.protos[stype] = proto_type
        elif ctype == USER_DISCONNECT and direction is Direction.TO_SERVER:
            self._call(service, service.on_player_disconnect, session, utag)
            return True
        if service.is_transfer:
            body = None
        else:
            try:
                body = self.codecs.decode_body(cmd_buf, stype, ctype, proto_type, direction)
            except ProtocolError as exc:
                self._reject(session, exc, stype=stype, ctype=ctype)
                return not session.is_client
        req = Request(session, stype, ctype, utag, proto_type, body, cmd_buf)
        handler = (
            service.on_player_recv_cmd
            if direction is Direction.TO_SERVER
            else service.on_service_recv_cmd
        )
        start = perf_counter()
        task = self._call(service, handler, req)
        if task is None:
            metrics.handler_done(stype, start)
        else:  # an async handler: its latency ends when the task does
            task.add_done_callback(lambda _t: metrics.handler_done(stype, start))
        return True

    def _reject(
        self, session: Session, exc: ProtocolError, *, stype: int = -1, ctype: int = -1
    ) -> None:
        self.metrics.protocol_errors.labels(exc.kind).inc()
        session.stats.protocol_errors += 1
        log.info("rejected packet from %s (stype %s ctype %s): %s", session, stype, ctype, exc)

    # ------------------------------------------------------------------ lifecycle hooks
    def player_disconnected(self, session: Session, utag: int) -> None:
        """Tell every service that the user ``utag`` of ``session`` has gone."""
        for service in self._services.values():
            self._call(service, service.on_player_disconnect, session, utag)

    def link_lost(self, session: Session) -> None:
        """A gateway link dropped: every service forgets the users that came through it."""
        for service in self._services.values():
            self._call(service, service.on_link_lost, session)

    # ---------------------------------------------------------------------- execution
    def _call(
        self, service: Service, handler: Callable[..., HandlerResult], *args: object
    ) -> asyncio.Future[None] | None:
        """Run a handler; an awaitable result becomes a tracked task, which is returned."""
        try:
            result = handler(*args)
        except Exception:
            self.metrics.dropped.labels("handler_error").inc()
            log.exception("%s handler failed", service.name)
            return None
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            return task
        return None

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics.dropped.labels("handler_error").inc()
            log.error("async handler failed", exc_info=task.exception())

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for running async handlers (graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    @property
    def pending(self) -> int:
        return len(self._tasks)
