"""WebSocket links: websockets' sans-I/O `ServerProtocol` driven from a `BufferedProtocol`.

One binary message carries one cmd_buf (docs/protocol.md §2.2). Text messages are a protocol
error (close code 1003). Fragments are reassembled; websockets enforces ``max_size`` over the
whole message, fragments included. No extensions are offered, so permessage-deflate is never
on.

Control frames have a budget of their own: websockets answers every ping with a pong, so
without one a client could make the server write (and parse) without limit while sending no
packet the packet rate limit sees. Pings and pongs over ``CONTROL_RATE``/``CONTROL_BURST``
are dropped unanswered (their pongs never leave); after ``CONTROL_MAX_DROPPED`` such drops
the connection is closed with 4013 (`CloseReason.CONTROL_FLOOD`). Reads are handed to
websockets ``FEED_CHUNK`` bytes at a time and a link closed meanwhile reads no further, so a
flood of tiny frames (control or data) costs one chunk's parsing, not a whole read's. Binary
frames pay nothing for this: the budget is checked where control frames are handled.

The upgrade request is where browsers' ``Origin`` is checked (HTTP 403 when the listener's
`OriginPolicy` refuses it) and where a trusted proxy's ``X-Forwarded-For`` names the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from netbus.errors import ProtocolError
from netbus.protocol.header import HEADER_SIZE
from netbus.ratelimit import TokenBucket
from netbus.transport.budget import InputBudget
from netbus.transport.link import Link, LinkHandler, scratch_buffer
from netbus.transport.preamble import ProxyStep, SniffStep, Step
from netbus.transport.reasons import CloseReason
from netbus.transport.trust import OriginPolicy, ProxyTrust, forwarded_client

__all__ = [
    "CONTROL_BURST",
    "CONTROL_MAX_DROPPED",
    "CONTROL_RATE",
    "FEED_CHUNK",
    "HANDSHAKE_TIMEOUT",
    "WsLink",
]

HANDSHAKE_TIMEOUT = 10.0  #: seconds a peer has to complete the HTTP upgrade
FEED_CHUNK = 16 * 1024  #: bytes parsed before the link checks whether it was closed
CONTROL_RATE = 5.0  #: pings + pongs per second a client may send (token bucket)
CONTROL_BURST = 20.0  #: ... at once
CONTROL_MAX_DROPPED = 100  #: control frames over the budget before the connection is closed

_ws_logger = logging.getLogger("netbus.transport.ws")
_ws_logger.setLevel(logging.WARNING)  # websockets logs every open/close at INFO


class WsLink(Link, asyncio.BufferedProtocol):
    kind = "ws"
    __slots__ = (
        "_clock",
        "_control",
        "_control_limits",
        "_defer",
        "_frag_bytes",
        "_fragments",
        "_hold_mark",
        "_origins",
        "_proxy",
        "_scratch",
        "_unanswered",
        "_ws",
        "control_dropped",
    )

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int = 65533,
        max_buffered_out: int = 4 * 1024 * 1024,
        proxy: ProxyTrust | None = None,
        origins: OriginPolicy | None = None,
        budget: InputBudget | None = None,
        control_rate: float = CONTROL_RATE,
        control_burst: float = CONTROL_BURST,
        control_max_dropped: int = CONTROL_MAX_DROPPED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Args:
        proxy: the listener's trusted proxies (PROXY header, ``X-Forwarded-For``).
        origins: the page origins browsers may connect from; None: any.
        control_rate, control_burst, control_max_dropped: the control-frame budget.
        """
        super().__init__(
            handler, max_cmd_buf=max_cmd_buf, max_buffered_out=max_buffered_out, budget=budget
        )
        self._ws = ServerProtocol(max_size=max_cmd_buf, logger=_ws_logger)
        self._clock = clock
        self._control: TokenBucket | None = None  #: made at the first control frame
        self._control_limits = (control_rate, control_burst, control_max_dropped)
        self.control_dropped = 0  #: pings/pongs dropped over the control budget
        self._unanswered = 0  #: pongs queued by websockets that must not be sent
        self._hold_mark = 0  #: packets_in when unfinished input was last counted
        self._fragments: list[bytes | bytearray | memoryview] | None = None
        self._frag_bytes = 0
        self._scratch = scratch_buffer()
        self._proxy = proxy
        self._origins = origins
        self._defer = False  #: a trusted proxy's connection opens at the upgrade (XFF)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        steps: list[Step] = []
        proxy = self._proxy
        trusted = proxy is not None and self.peer_ip in proxy.trusted
        if proxy is not None and proxy.proxy_protocol:
            steps.append(ProxyStep() if trusted else SniffStep())
        # The handler (a listener's Guard: connection caps, idle timeout) knows the
        # connection from its accept, not from a finished upgrade: peers that never finish
        # the handshake must not slip past the caps for HANDSHAKE_TIMEOUT. A trusted proxy's
        # connection is the exception: its client is known only from the upgrade request.
        self._defer = trusted
        self._begin(steps, open_now=not trusted)
        if not self.closed:
            self._arm(HANDSHAKE_TIMEOUT, CloseReason.HANDSHAKE_TIMEOUT)

    def _drop_input(self) -> None:
        del self._ws.reader.buffer[:]
        self._fragments, self._frag_bytes = None, 0
        self._steps = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        self.raw_in += nbytes
        data: bytes | bytearray | memoryview = self._scratch[:nbytes]
        if self._steps is not None:
            rest = self._run_steps(data)
            if rest is None or self.closed:
                return
            data = rest
        ws = self._ws
        if nbytes <= FEED_CHUNK:
            ws.receive_data(bytes(data))
            self._process()
        else:
            for at in range(0, len(data), FEED_CHUNK):
                ws.receive_data(bytes(data[at : at + FEED_CHUNK]))
                self._process()
                if self.closed:
                    return
        buffer = ws.reader.buffer
        if (buffer or self._frag_bytes or self.partial_in) and not self.closed:
            # Rare (a frame split across reads): only then is progress worked out.
            packets = self.stats.packets_in
            self._hold(len(buffer) + self._frag_bytes, packets != self._hold_mark)
            self._hold_mark = packets

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._flush()
        return False

    def _process(self) -> None:
        ws = self._ws
        for event in ws.events_received():
            if isinstance(event, Request):
                self._request(event)
            elif isinstance(event, Frame):
                self._frame(event)
            if self.closed:
                return
        self._flush()
        if self.closed:
            return
        if ws.parser_exc is not None:
            kind = "ws_too_big" if isinstance(ws.parser_exc, PayloadTooBig) else "ws_protocol"
            self._violation(ProtocolError(kind, str(ws.parser_exc)))
        elif ws.handshake_exc is not None:
            self.close(CloseReason.HANDSHAKE_FAILED, abort=True)

    def _request(self, request: Request) -> None:
        ws = self._ws
        if self._defer:
            self._defer = False
            assert self._proxy is not None
            forwarded = request.headers.get_all("X-Forwarded-For")
            if forwarded:
                client = forwarded_client(self.peer_ip, forwarded, self._proxy.trusted)
                if client != self.peer_ip:
                    self._readdress((client, 0))
            self._open()
            if self.closed:
                return
        origins = self._origins
        if origins is not None:
            origin = request.headers.get("Origin")
            if not origins.allows(origin):
                ws.send_response(ws.reject(403, "Forbidden: this origin may not connect.\n"))
                self._flush()
                self.close(CloseReason.FORBIDDEN_ORIGIN, "origin")
                return
        ws.send_response(ws.accept(request))
        self._flush()
        self._cancel_deadline()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY:
            if frame.fin:
                self._message(frame.data)
            else:
                self._fragments = [frame.data]
                self._frag_bytes = len(frame.data)
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(frame.data)
            self._frag_bytes += len(frame.data)
            if frame.fin:
                data, self._fragments, self._frag_bytes = b"".join(self._fragments), None, 0
                self._message(data)
        elif opcode is Opcode.TEXT:
            self._ws.fail(1003, "binary messages only")
            self._flush()
            self._violation(ProtocolError("ws_text", "text message"))
        elif opcode is Opcode.CLOSE:
            self._flush()
        elif opcode is Opcode.PING or opcode is Opcode.PONG:
            self._control_frame(opcode is Opcode.PING)

    def _control_frame(self, ping: bool) -> None:
        """A ping or pong arrived (websockets has already queued the pong for a ping)."""
        now = self._clock()
        rate, burst, max_dropped = self._control_limits
        bucket = self._control
        if bucket is None:
            bucket = self._control = TokenBucket(rate, burst, now)
        if bucket.take(now):
            return
        self.control_dropped += 1
        if ping:
            self._unanswered += 1  # its pong is removed at the next flush
        if self.control_dropped >= max_dropped:
            self._ws.data_to_send()  # the queued pongs never leave
            self._unanswered = 0
            self.close(CloseReason.CONTROL_FLOOD, "ws_control")

    def _message(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) < HEADER_SIZE:
            self._violation(ProtocolError("short_header", f"{len(data)}-byte message"))
            return
        self._deliver(bytearray(data))

    def _flush(self) -> None:
        """Write what websockets queued (pongs, handshake replies, close frames): it counts
        against ``max_buffered_out`` like packets do."""
        transport = self.transport
        if transport is None:
            return
        chunks = self._ws.data_to_send()
        if self._unanswered:
            chunks = self._without_pongs(chunks)
        for data in chunks:
            if data:
                transport.write(data)
            elif not transport.is_closing():
                transport.close()  # websockets' SEND_EOF: the closing handshake is done
        if self.paused:
            self._over_cap(transport)

    def _without_pongs(self, chunks: list[bytes]) -> list[bytes]:
        """``chunks`` without the last ``_unanswered`` pongs: the pings over the budget were
        the last ones parsed (the bucket empties in order)."""
        kept: list[bytes] = []
        for data in reversed(chunks):
            if self._unanswered and data[:1] == b"\x8a":  # FIN + PONG: one whole pong frame
                self._unanswered -= 1
                continue
            kept.append(data)
        self._unanswered = 0
        kept.reverse()
        return kept

    def _write_cmd(
        self, transport: asyncio.Transport, cmd_buf: bytes | bytearray | memoryview
    ) -> None:
        ws = self._ws
        if ws.state is not State.OPEN:
            return
        ws.send_binary(cmd_buf)
        for data in ws.data_to_send():
            transport.write(data)

    def ping(self) -> None:
        if self._ws.state is State.OPEN and self.transport is not None and not self.closed:
            self._ws.send_ping(b"nb")
            self._flush()

    def close(
        self, reason: CloseReason = CloseReason.NORMAL, detail: str = "", *, abort: bool = False
    ) -> None:
        """Close with ``reason.ws_code`` in a close frame (docs/protocol.md §2.2).

        An ``abort`` still sends the close frame when nothing else is queued (a flooder that
        reads, an idle peer): the frame then leaves whole, the peer learns the code, and a
        plain close costs no more. A peer with queued output (a slow reader) is reset.
        """
        if self.closed:
            return
        transport = self.transport
        if self._ws.state is State.OPEN and transport is not None:
            self._ws.send_close(reason.ws_code, reason.text)
            for data in self._ws.data_to_send():
                if data:
                    transport.write(data)
            if abort and transport.get_write_buffer_size() == 0:
                abort = False
        super().close(reason, detail, abort=abort)
