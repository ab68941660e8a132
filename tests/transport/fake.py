"""An in-memory transport for driving links without sockets, with a fake clock.

`FakeTransport` implements the part of ``asyncio.Transport`` a `Link` uses and records what is
written. Like the real transports, ``close``/``abort`` report ``connection_lost`` from the
loop (``call_soon``), not from inside the call; `settle` lets it run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from netbus.errors import ProtocolError
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTransport:
    def __init__(self, protocol: Any, peer: tuple[str, int]) -> None:
        self.protocol = protocol
        self.peer = peer
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.buffered = 0  #: what get_write_buffer_size reports (a test sets it)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def _lost(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self._lost()

    def abort(self) -> None:
        self.aborted = True
        self._lost()


def connect(link: Link, peer: tuple[str, int] = ("203.0.113.1", 40000)) -> FakeTransport:
    transport = FakeTransport(link, peer)
    link.connection_made(transport)  # type: ignore[arg-type]
    return transport


def feed(link: Any, data: bytes) -> None:
    """Hand ``data`` to a BufferedProtocol link as one read."""
    buf = link.get_buffer(len(data))
    buf[: len(data)] = data
    link.buffer_updated(len(data))


async def settle() -> None:
    """Let connection_lost callbacks scheduled by close/abort run."""
    for _ in range(3):
        await asyncio.sleep(0)


class Recorder:
    """A `LinkHandler` that remembers everything; `wait` awaits a condition on it."""

    def __init__(self) -> None:
        self.opened: list[Link] = []
        self.packets: list[bytes] = []
        self.errors: list[ProtocolError] = []
        self.closed: list[CloseReason] = []
        self._changed = asyncio.Event()

    def link_opened(self, link: Link) -> None:
        self.opened.append(link)
        self._changed.set()

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        self.packets.append(bytes(cmd_buf))
        self._changed.set()

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.errors.append(exc)
        self._changed.set()

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.closed.append(reason)
        self._changed.set()

    async def wait(self, condition: Callable[[], object], timeout: float = 5.0) -> None:
        """Until ``condition()`` holds, re-checked whenever the handler hears something."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()
