"""WebSocket links: websockets' sans-I/O `ServerProtocol` driven from a `BufferedProtocol`.

One binary message carries one cmd_buf (PROTOCOL.md §2). Text messages are a protocol error
(close code 1003). Fragments are reassembled; websockets enforces ``max_size`` over the whole
message, fragments included. No extensions are offered, so permessage-deflate is never on.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from netbus.errors import ProtocolError
from netbus.protocol.header import HEADER_SIZE
from netbus.transport.link import Link, LinkHandler, scratch_buffer
from netbus.transport.reasons import CloseReason

__all__ = ["HANDSHAKE_TIMEOUT", "WsLink"]

HANDSHAKE_TIMEOUT = 10.0  #: seconds a peer has to complete the HTTP upgrade

_ws_logger = logging.getLogger("netbus.transport.ws")
_ws_logger.setLevel(logging.WARNING)  # websockets logs every open/close at INFO


class WsLink(Link, asyncio.BufferedProtocol):
    kind = "ws"
    __slots__ = ("_deadline", "_fragments", "_scratch", "_ws")

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int = 65533,
        max_buffered_out: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__(handler, max_cmd_buf=max_cmd_buf, max_buffered_out=max_buffered_out)
        self._ws = ServerProtocol(max_size=max_cmd_buf, logger=_ws_logger)
        self._fragments: list[bytes | bytearray | memoryview] | None = None
        self._scratch = scratch_buffer()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_deadline)
        # The handler (a listener's Guard: connection caps, idle timeout) knows the
        # connection from its accept, not from a finished upgrade: peers that never
        # finish the handshake must not slip past the caps for HANDSHAKE_TIMEOUT.
        self._open()

    def _handshake_deadline(self) -> None:
        self._deadline = None
        if self._ws.state is State.CONNECTING and not self.closed:
            self.close(CloseReason.HANDSHAKE_TIMEOUT, abort=True)

    def _cancel_deadline(self) -> None:
        # The pending timer holds the link (its parser, its buffers): release it as soon as
        # the handshake is over, or a flood of short connections is kept alive for 10 s each.
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        self.raw_in += nbytes
        ws = self._ws
        ws.receive_data(bytes(self._scratch[:nbytes]))
        self._process()

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._flush()
        return False

    def _process(self) -> None:
        ws = self._ws
        for event in ws.events_received():
            if isinstance(event, Request):
                ws.send_response(ws.accept(event))
                self._flush()
                self._cancel_deadline()
            elif isinstance(event, Frame):
                self._frame(event)
            if self.closed:
                return
        self._flush()
        if ws.parser_exc is not None and not self.closed:
            kind = "ws_too_big" if isinstance(ws.parser_exc, PayloadTooBig) else "ws_protocol"
            self._violation(ProtocolError(kind, str(ws.parser_exc)))
        elif ws.handshake_exc is not None and not self.closed:
            self.close(CloseReason.HANDSHAKE_FAILED, abort=True)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY:
            if frame.fin:
                self._message(frame.data)
            else:
                self._fragments = [frame.data]
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(frame.data)
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._message(data)
        elif opcode is Opcode.TEXT:
            self._ws.fail(1003, "binary messages only")
            self._flush()
            self._violation(ProtocolError("ws_text", "text message"))
        elif opcode is Opcode.CLOSE:
            self._flush()

    def _message(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) < HEADER_SIZE:
            self._violation(ProtocolError("short_header", f"{len(data)}-byte message"))
            return
        self._deliver(bytearray(data))

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            elif not transport.is_closing():
                transport.close()  # websockets' SEND_EOF: the closing handshake is done

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
        if self._ws.state is State.OPEN and self.transport is not None:
            self._ws.send_ping(b"nb")
            self._flush()

    def close(
        self, reason: CloseReason = CloseReason.NORMAL, detail: str = "", *, abort: bool = False
    ) -> None:
        if self.closed:
            return
        if not abort and self._ws.state is State.OPEN:
            self._ws.send_close(reason.ws_code, reason.text)
            self._flush()
        super().close(reason, detail, abort=abort)
