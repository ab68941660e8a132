"""TCP (and TLS) links: a `BufferedProtocol` feeding the sans-I/O `FrameDecoder`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from netbus.errors import ProtocolError
from netbus.protocol.framing import LENGTH, FrameDecoder
from netbus.protocol.linkauth import GatewayHandshake, ServiceHandshake
from netbus.transport.budget import InputBudget
from netbus.transport.link import Link, LinkHandler, scratch_buffer
from netbus.transport.preamble import AuthStep, ProxyStep, SniffStep, Step
from netbus.transport.reasons import CloseReason
from netbus.transport.trust import ProxyTrust

__all__ = ["TcpLink"]


class TcpLink(Link, asyncio.BufferedProtocol):
    """One length-prefixed TCP connection: client↔gateway, gateway↔service, or a client's."""

    kind = "tcp"
    __slots__ = ("_batch", "_decoder", "_handshake", "_proxy", "_scratch")

    def __init__(
        self,
        handler: LinkHandler,
        *,
        max_cmd_buf: int = 65533,
        max_buffered_out: int = 4 * 1024 * 1024,
        batch_writes: bool = False,
        handshake: Callable[[], GatewayHandshake | ServiceHandshake] | None = None,
        proxy: ProxyTrust | None = None,
        budget: InputBudget | None = None,
    ) -> None:
        """Args:
        batch_writes: coalesce every packet sent during one event-loop iteration into one
            write (one syscall). For trunk links (gateway↔service) that carry many users;
            a player's link sends too little per iteration to gain from it.
        handshake: makes this link's service-link handshake (`netbus.protocol.linkauth`),
            run before any frame is read; None: no link authentication.
        proxy: the listener's trusted proxies (PROXY protocol); None: every peer is itself.
        """
        super().__init__(
            handler, max_cmd_buf=max_cmd_buf, max_buffered_out=max_buffered_out, budget=budget
        )
        self._decoder = FrameDecoder(max_cmd_buf)
        self._scratch = scratch_buffer()
        self._batch: list[bytes | bytearray | memoryview] | None = [] if batch_writes else None
        self._handshake = handshake
        self._proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        steps: list[Step] = []
        proxy = self._proxy
        if proxy is not None and proxy.proxy_protocol:
            steps.append(ProxyStep() if self.peer_ip in proxy.trusted else SniffStep())
        if self._handshake is not None:
            steps.append(AuthStep(self._handshake()))
        self._begin(steps)

    def _drop_input(self) -> None:
        self._decoder.clear()
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
            if not self.opened:  # the gating steps are done: the owner may see the link
                self._cancel_deadline()
                self._open()
                if self.closed:
                    return
            data = rest
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            self._violation(exc)
            return
        for cmd_buf in frames:
            if self.closed:
                return
            self._deliver(cmd_buf)
        held = decoder.held
        if held or self.partial_in:
            self._hold(held, bool(frames))

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
