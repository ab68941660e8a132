"""`Link`: all the rest of netbus sees of one connection, whatever carries it (TCP, WS, TLS).

A link turns received bytes into whole cmd_bufs for its `LinkHandler`, and writes cmd_bufs
with the framing its transport needs. It owns flow control: past ``max_buffered_out`` bytes
waiting in the kernel-side buffer while the peer is not reading, it closes itself rather than
let a slow reader grow memory without bound (STYLE.md §2.6).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol, cast

from netbus.errors import ProtocolError
from netbus.transport.reasons import CloseReason

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
    """What a link reports to its owner (a session table, a gateway upstream, a client)."""

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
    """Base of `TcpLink` and `WsLink`; subclasses implement `_write_cmd` and receiving."""

    kind = "?"
    __slots__ = (
        "_closed_waiter",
        "close_detail",
        "close_reason",
        "closed",
        "handler",
        "lost",
        "max_buffered_out",
        "max_cmd_buf",
        "opened",
        "owner",
        "paused",
        "peer",
        "raw_in",
        "secure",
        "stats",
        "transport",
    )

    def __init__(self, handler: LinkHandler, *, max_cmd_buf: int, max_buffered_out: int) -> None:
        self.handler = handler
        self.max_cmd_buf = max_cmd_buf
        self.max_buffered_out = max_buffered_out
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.secure = False
        self.opened = False
        self.closed = False
        self.lost = False
        self.paused = False
        self.close_reason: CloseReason | None = None  #: set once, by the first close
        self.close_detail = ""  #: what exactly (an error kind, an exception) for logs
        self.owner: Any = None  #: the session or upstream using this link
        self.raw_in = 0  #: bytes read from the socket, control frames included (idle checks)
        self.stats = LinkStats()
        self._closed_waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
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

    # --------------------------------------------------------------------------- API
    def send_raw(self, cmd_buf: bytes | bytearray | memoryview) -> bool:
        """Queue one encoded cmd_buf; False if the link is closed (the packet is dropped).

        Closes the link when the peer has stopped reading and the queue passed its cap.
        """
        transport = self.transport
        if self.closed or transport is None:
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
        self.close_reason = reason
        self.close_detail = detail
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
