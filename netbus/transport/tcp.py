"""TCP (and TLS) links: a `BufferedProtocol` feeding the sans-I/O `FrameDecoder`."""

from __future__ import annotations

import asyncio

from netbus.errors import ProtocolError
from netbus.protocol.framing import LENGTH, FrameDecoder
from netbus.transport.link import Link, LinkHandler, scratch_buffer

__all__ = ["TcpLink"]


class TcpLink(Link, asyncio.BufferedProtocol):
    """One length-prefixed TCP connection: client↔gateway, gateway↔service, or a client's."""

    kind = "tcp"
    __slots__ = ("_decoder", "_scratch")

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int = 65533,
        max_buffered_out: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__(handler, max_cmd_buf=max_cmd_buf, max_buffered_out=max_buffered_out)
        self._decoder = FrameDecoder(max_cmd_buf)
        self._scratch = scratch_buffer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._open()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        self.raw_in += nbytes
        try:
            frames = self._decoder.feed(self._scratch[:nbytes])
        except ProtocolError as exc:
            self._violation(exc)
            return
        for cmd_buf in frames:
            if self.closed:
                return
            self._deliver(cmd_buf)

    @property
    def pending_in(self) -> int:
        """Bytes of an incomplete frame held for this peer."""
        return self._decoder.buffered

    def _write_cmd(
        self, transport: asyncio.Transport, cmd_buf: bytes | bytearray | memoryview
    ) -> None:
        transport.writelines((LENGTH.pack(len(cmd_buf) + 2), cmd_buf))
