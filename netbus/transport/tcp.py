"""TCP (and TLS) links: a `BufferedProtocol` feeding the sans-I/O `FrameDecoder`."""

from __future__ import annotations

import asyncio

from netbus.errors import ProtocolError
from netbus.protocol.framing import LENGTH, FrameDecoder
from netbus.transport.link import Link, LinkHandler, scratch_buffer
from netbus.transport.reasons import CloseReason

__all__ = ["TcpLink"]


class TcpLink(Link, asyncio.BufferedProtocol):
    """One length-prefixed TCP connection: client↔gateway, gateway↔service, or a client's."""

    kind = "tcp"
    __slots__ = ("_batch", "_decoder", "_scratch")

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int = 65533,
        max_buffered_out: int = 4 * 1024 * 1024,
        batch_writes: bool = False,
    ) -> None:
        """Args:
        batch_writes: coalesce every packet sent during one event-loop iteration into one
            write (one syscall). For trunk links (gateway↔service) that carry many users;
            a player's link sends too little per iteration to gain from it.
        """
        super().__init__(handler, max_cmd_buf=max_cmd_buf, max_buffered_out=max_buffered_out)
        self._decoder = FrameDecoder(max_cmd_buf)
        self._scratch = scratch_buffer()
        self._batch: list[bytes | bytearray | memoryview] | None = [] if batch_writes else None

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

    def _write_cmd(
        self, transport: asyncio.Transport, cmd_buf: bytes | bytearray | memoryview
    ) -> None:
        batch = self._batch
        if batch is None:
            transport.write(LENGTH.pack(len(cmd_buf) + 2) + cmd_buf)
            return
        if not batch:
            asyncio.get_running_loop().call_soon(self._flush)
        batch.append(LENGTH.pack(len(cmd_buf) + 2))
        batch.append(cmd_buf)  # the caller hands the buffer over; it is joined at flush

    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch = []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(batch))

    def close(
        self, reason: CloseReason = CloseReason.NORMAL, detail: str = "", *, abort: bool = False
    ) -> None:
        if not abort and not self.closed:
            self._flush()
        super().close(reason, detail, abort=abort)
