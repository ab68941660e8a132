"""`Link`: all the rest of netbus sees of one connection, whatever carries it (TCP, WS, TLS).

A link turns received bytes into whole cmd_bufs for its `LinkHandler`, and writes cmd_bufs
with the framing its transport needs. It owns flow control: everything it writes -- packets,
WebSocket pongs, pings and close frames -- counts against ``max_buffered_out``, and past that
many bytes waiting while the peer is not reading it closes itself (`CloseReason.SLOW_CONSUMER`)
rather than let a slow reader grow memory without bound.

Before its first frame a link may run a preamble (`netbus.transport.preamble`): a trusted
proxy's PROXY header, the service-link handshake. Until the gating steps are done the owner
does not hear of the link and nothing can be sent on it.

``peer`` and ``peer_ip`` are the one place every limit and every log line reads the client's
address from: the TCP peer, or the client a trusted proxy named (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol, cast

from netbus.errors import ProtocolError
from netbus.transport.addr import peer_ip
from netbus.transport.reasons import CloseReason

if TYPE_CHECKING:
    from netbus.transport.budget import InputBudget
    from netbus.transport.notices import DropNotice
    from netbus.transport.preamble import Step

__all__ = ["Link", "LinkHandler", "LinkStats", "scratch_buffer"]

log = logging.getLogger("netbus.transport")

_SCRATCH_SIZE = 256 * 1024

_local = threading.local()


def scratch_buffer() -> memoryview:
    """One receive buffer per thread, shared by every link on that thread's event loop.

    Reads are handed to the decoders synchronously, which copy out what they keep, so one
    buffer serves thousands of idle connections at no per-connection cost.
    """
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(_SCRATCH_SIZE))
    return view


class LinkHandler(Protocol):
    """What a link reports to its owner (a session table, a gateway upstream, a client).

    ``protocol_error`` may come for a link that never opened (its preamble failed: a bad
    PROXY header, a failed link handshake), so it must not rely on ``link.owner``.
    """

    def link_opened(self, link: Link) -> None: ...

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None: ...

    def link_closed(self, link: Link, reason: CloseReason) -> None: ...

    def protocol_error(self, link: Link, exc: ProtocolError) -> None: ...


class LinkStats:
    __slots__ = ("bytes_in", "bytes_out", "packets_in", "packets_out", "protocol_errors")

    def __init__(self) -> None:
        self.packets_in = self.packets_out = 0
        self.bytes_in = self.bytes_out = 0
        self.protocol_errors = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Link:
    """Base of `TcpLink` and `WsLink`; subclasses implement `_write_cmd` and receiving.

    Args:
        budget: the process's budget for unfinished input (`InputBudget`) this link's
            partial frames count against; None: counted on the link only.
    """

    kind = "?"
    __slots__ = (
        "_closed_waiter",
        "_deadline",
        "_out",
        "_steps",
        "budget",
        "close_detail",
        "close_reason",
        "closed",
        "drops",
        "handler",
        "lost",
        "max_buffered_out",
        "max_cmd_buf",
        "opened",
        "owner",
        "partial_in",
        "paused",
        "peer",
        "peer_ip",
        "proxy_peer",
        "raw_in",
        "secure",
        "stats",
        "transport",
    )

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int,
        max_buffered_out: int,
        budget: InputBudget | None = None,
    ) -> None:
        self.handler = handler
        self.max_cmd_buf = max_cmd_buf
        self.max_buffered_out = max_buffered_out
        self.budget = budget
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None  #: the client's (host, port, ...): TCP's, or a trusted proxy's word
        self.peer_ip = "?"  #: the client's IP text, what per-IP limits and logs use
        self.proxy_peer: Any = None  #: the proxy's own address when a proxy named the client
        self.secure = False
        self.opened = False
        self.closed = False
        self.lost = False
        self.paused = False
        self.close_reason: CloseReason | None = None  #: set once, by the first close
        self.close_detail = ""  #: what exactly (an error kind, an exception) for logs
        self.owner: Any = None  #: the session or upstream using this link
        self.raw_in = 0  #: bytes read from the socket, control frames included (idle checks)
        self.partial_in = 0  #: bytes held for unfinished input (frame deadline, budget)
        self.drops: DropNotice | None = None  #: rate-limited packets (`notices.note_dropped`)
        self.stats = LinkStats()
        self._closed_waiter: asyncio.Future[None] | None = None
        self._out: asyncio.Transport | None = None  #: the transport once open, until closed
        self._steps: list[Step] | None = None  #: the preamble still to run
        self._deadline: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.peer_ip = peer_ip(self.peer)
        self.secure = transport.get_extra_info("sslcontext") is not None
        # Low water well below the cap so that resume_writing arrives while there is room.
        transport.set_write_buffer_limits(high=min(256 * 1024, self.max_buffered_out // 2))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = True
        self._out = None
        self._release()
        if self.close_reason is None:
            self.close_reason = CloseReason.PEER_CLOSED if exc is None else CloseReason.LOST
            self.close_detail = "" if exc is None else str(exc)
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        if self.opened:
            self.opened = False
            try:
                self.handler.link_closed(self, self.close_reason)
            except Exception:
                log.exception("link_closed handler failed")

    # ------------------------------------------------------------------------- helpers
    def _open(self) -> None:
        self.opened = True
        self._out = self.transport
        try:
            self.handler.link_opened(self)
        except Exception:
            log.exception("link_opened handler failed; closing %s", self.peer)
            self.close(CloseReason.HANDLER_ERROR)

    def _deliver(self, cmd_buf: bytearray) -> None:
        stats = self.stats
        stats.packets_in += 1
        stats.bytes_in += len(cmd_buf)
        try:
            self.handler.packet_received(self, cmd_buf)
        except Exception:
            # A handler bug must not kill a link that may carry thousands of users.
            log.exception("packet handler failed (peer %s)", self.peer)

    def _violation(self, exc: ProtocolError) -> None:
        self.stats.protocol_errors += 1
        try:
            self.handler.protocol_error(self, exc)
        except Exception:
            log.exception("protocol_error handler failed")
        # TCP peers get a reset; WebSocket peers first receive the close frame already queued.
        self.close(CloseReason.PROTOCOL_ERROR, exc.kind, abort=self.kind == "tcp")

    def _hold(self, held: int, progressed: bool) -> None:
        """The link now holds ``held`` bytes of unfinished input (0: none)."""
        budget = self.budget
        if budget is None:
            self.partial_in = held
        else:
            budget.update(self, held, progressed=progressed)

    def _release(self) -> None:
        """Give back what a closing link holds: unfinished input (freed at once: a flood of
        cut connections must not wait for their objects to be collected), its budget share,
        its timers."""
        self._drop_input()
        if self.budget is not None:
            self.budget.release(self)
        self.partial_in = 0
        self._cancel_deadline()
        if self.drops is not None:
            self.drops.cancel()

    def _drop_input(self) -> None:
        """Free the buffers of unfinished input (subclasses)."""

    # ----------------------------------------------------------------------- preamble
    def _begin(self, steps: list[Step], *, open_now: bool = True) -> None:
        """Start the preamble ``steps``; open at once unless a step gates the link."""
        gates = [step for step in steps if step.gates]
        if steps:
            self._steps = steps
            self._start_step(steps[0])
        if gates:
            self._arm(sum(step.timeout for step in gates), gates[0].failure)
        elif open_now:
            self._open()

    def _start_step(self, step: Step) -> None:
        first = step.start()
        if first and self.transport is not None:
            self.transport.write(first)

    def _run_steps(
        self, data: bytes | bytearray | memoryview
    ) -> bytes | bytearray | memoryview | None:
        """Feed the preamble; the bytes after it once it is done, else None."""
        steps = self._steps
        assert steps is not None
        while True:
            step = steps[0]
            try:
                rest = step.feed(data)
            except ProtocolError as exc:
                self._step_failed(step, exc)
                return None
            out = step.output()
            if out and self.transport is not None:
                self.transport.write(out)
            if rest is None:
                return None
            if step.source is not None:
                self._readdress(step.source)
            steps.pop(0)
            data = rest
            if not steps:
                self._steps = None
                return data
            self._start_step(steps[0])

    def _step_failed(self, step: Step, exc: ProtocolError) -> None:
        if self.opened:
            self._violation(exc)
            return
        self.stats.protocol_errors += 1
        try:
            self.handler.protocol_error(self, exc)
        except Exception:
            log.exception("protocol_error handler failed")
        self.close(step.failure, exc.kind, abort=True)

    def _readdress(self, source: tuple[str, int]) -> None:
        """A trusted proxy named the client: from now on it is this link's peer."""
        self.proxy_peer = self.peer
        self.peer = source
        self.peer_ip = source[0]

    def _arm(self, seconds: float, reason: CloseReason) -> None:
        """One deadline for the link's setup (preamble, WS upgrade), not a timer per read."""
        self._cancel_deadline()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(seconds, self._expire, reason)

    def _expire(self, reason: CloseReason) -> None:
        self._deadline = None
        if self.closed:
            return
        steps = self._steps
        if steps and not self.opened:  # count the failure like any other of the step
            kind = "link_auth" if steps[0].failure is CloseReason.AUTH_FAILED else "proxy_header"
            self._step_failed(steps[0], ProtocolError(kind, "not completed in time"))
            return
        self.close(reason, "timeout", abort=True)

    def _cancel_deadline(self) -> None:
        # The pending timer holds the link (its parser, its buffers): release it as soon as
        # the setup is over, or a flood of short connections is kept alive until it fires.
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # --------------------------------------------------------------------------- API
    def send_raw(self, cmd_buf: bytes | bytearray | memoryview) -> bool:
        """Queue one encoded cmd_buf; False if the link is not open (the packet is dropped).

        Closes the link when the peer has stopped reading and the queue passed its cap.
        """
        transport = self._out
        if transport is None:
            return False
        self._write_cmd(transport, cmd_buf)
        stats = self.stats
        stats.packets_out += 1
        stats.bytes_out += len(cmd_buf)
        if self.paused and transport.get_write_buffer_size() > self.max_buffered_out:
            self.close(CloseReason.SLOW_CONSUMER, abort=True)
            return False
        return True

    def _write_cmd(
        self, transport: asyncio.Transport, cmd_buf: bytes | bytearray | memoryview
    ) -> None:
        raise NotImplementedError

    def _over_cap(self, transport: asyncio.Transport) -> bool:
        """After a write that is not a packet (a pong, a ping, a handshake reply): close the
        link if the peer stopped reading and the queue passed ``max_buffered_out``."""
        if not self.paused or self.closed:
            return False
        if transport.get_write_buffer_size() <= self.max_buffered_out:
            return False
        self.close(CloseReason.SLOW_CONSUMER, abort=True)
        return True

    def close(
        self, reason: CloseReason = CloseReason.NORMAL, detail: str = "", *, abort: bool = False
    ) -> None:
        """Close once; ``abort`` drops queued output (for hostile or stuck peers).

        Args:
            reason: why; WebSocket peers get its ``ws_code`` in the close frame.
            detail: what exactly (an error kind), for logs only.
        """
        if self.closed:
            return
        self.closed = True
        self._out = None
        self.close_reason = reason
        self.close_detail = detail
        self._release()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def ping(self) -> None:
        """Ask the peer for a sign of life where the transport has one (WebSocket ping)."""

    @property
    def buffered_out(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport else 0

    async def wait_closed(self) -> None:
        """Wait until the transport has really gone (connection_lost ran)."""
        if self.transport is None or self.lost:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.peer} {'closed' if self.closed else 'open'}>"
