"""A persistent link from a gateway to one service address, reconnecting forever.

Backoff is "full jitter" exponential: the first retry comes fast (a service restart should
cost users as little as possible) and the delay is capped at a few seconds, so a returning
service is found quickly without a thundering herd of gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from enum import Enum

from netbus.errors import ProtocolError
from netbus.protocol.control import CONTROL_CODECS, CONTROL_STYPE, GatewayCmd
from netbus.protocol.linkauth import GatewayHandshake
from netbus.protocol.registry import Direction
from netbus.transport.link import Link, LinkHandler
from netbus.transport.reasons import CloseReason
from netbus.transport.tcp import TcpLink

__all__ = ["Backoff", "LinkState", "Upstream"]

_HEARTBEAT = CONTROL_CODECS.encode(
    CONTROL_STYPE, GatewayCmd.HEARTBEAT, None, direction=Direction.TO_SERVER
)

log = logging.getLogger("netbus.upstream")


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    def __init__(self, base: float = 0.05, cap: float = 3.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        # Bound the exponent: 2**n overflows a float after ~1024 failures (about an hour
        # of a service being down), which would kill the reconnect loop for good.
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 64)))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def _factory(link: TcpLink) -> Callable[[], TcpLink]:
    """A protocol factory for ``create_connection`` handing out the link already built."""
    return lambda: link


def _end_half_open(link: Link) -> None:
    """Finish the life cycle of a link whose connect was cancelled or timed out.

    uvloop closes the socket of a cancelled ``create_connection`` without calling
    ``connection_lost`` when ``connection_made`` already ran, so the owner never hears
    ``link_closed`` and ``wait_closed`` never returns. The stdlib loop has already called it
    (``link.lost``); calling it again is harmless.
    """
    if link.transport is not None and not link.lost:
        link.close(CloseReason.CONNECT_CANCELLED, abort=True)
        link.connection_lost(None)


class LinkState(Enum):
    CONNECTING = "connecting"  #: no link yet, trying
    UP = "up"  #: connected; packets flow
    DOWN = "down"  #: lost; waiting for the next retry
    STOPPED = "stopped"  #: closed on purpose


class Upstream:
    """Keeps one `TcpLink` to ``host:port`` alive; reports opens/closes to ``handler``.

    Args:
        name: for logs and metrics, e.g. ``"talkroom@127.0.0.1:6084"``.
        handler: gets ``link_opened`` / ``packet_received`` / ``link_closed`` for each link.
        secret: the cluster secret: each link proves it, and checks that the service holds
            it too, before a frame is read (`netbus.protocol.linkauth`); None: no link
            authentication (the service must not ask for it either).
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: LinkHandler,
        *,
        name: str = "",
        backoff: Backoff | None = None,
        connect_timeout: float = 3.0,
        max_buffered_out: int = 64 * 1024 * 1024,
        heartbeat: float = 5.0,
        secret: bytes | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name or f"{host}:{port}"
        self.handler = handler
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.max_buffered_out = max_buffered_out
        self.heartbeat = heartbeat
        self.link: TcpLink | None = None
        self.state = LinkState.CONNECTING
        self.reconnects = 0
        self.refused = 0  #: links closed before they opened (handshake failed or timed out)
        self._handshake = (
            functools.partial(GatewayHandshake, secret) if secret is not None else None
        )
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        # Packets and framing errors go from the link straight to the handler: this object
        # only follows the link's life, so the service -> client path has no relay hop.
        self.packet_received: Callable[[Link, bytearray], None] = handler.packet_received
        self.protocol_error: Callable[[Link, ProtocolError], None] = handler.protocol_error
        self._opened: Link | None = None  #: the last link that opened

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP and self.link is not None and not self.link.closed

    async def wait_up(self) -> None:
        await self._up.wait()

    def send_raw(self, cmd_buf: bytes | bytearray | memoryview) -> bool:
        link = self.link
        if link is None or link.closed:
            return False
        return link.send_raw(cmd_buf)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            link = TcpLink(
                self,
                max_buffered_out=self.max_buffered_out,
                batch_writes=True,
                handshake=self._handshake,
            )
            link.owner = self
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(_factory(link), self.host, self.port)
            except BaseException as exc:
                _end_half_open(link)
                if not isinstance(exc, (OSError, TimeoutError)):
                    raise  # cancelled: close() is stopping us
                self.state = LinkState.DOWN
                delay = self.backoff.next_delay()
                if self.backoff.failures in (1, 10) or self.backoff.failures % 100 == 0:
                    log.warning("%s: connect failed (%s); retrying in %.2fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            await self._watch(link)
            if link is not self._opened:
                # Closed before it opened: the service failed the link handshake (another
                # cluster secret, or not a netbus service at all). Back off like a failed
                # connect, so a misconfiguration costs a line now and then, not a spin.
                self.refused += 1
                self.state = LinkState.DOWN
                delay = self.backoff.next_delay()
                if self.backoff.failures in (1, 10) or self.backoff.failures % 100 == 0:
                    log.warning(
                        "%s: link refused before it opened (%s %s); retrying in %.2fs",
                        self.name,
                        link.close_reason,
                        link.close_detail,
                        delay,
                    )
                await asyncio.sleep(delay)
                continue
            log.warning("%s: link lost (%s %s)", self.name, link.close_reason, link.close_detail)
            await asyncio.sleep(self.backoff.next_delay())

    async def _watch(self, link: TcpLink) -> None:
        """Heartbeat the link; a peer silent for 3 intervals is half-open: drop and redial."""
        if self.heartbeat <= 0:
            await link.wait_closed()
            return
        seen, silent = link.raw_in, 0
        while not link.closed:
            try:
                async with asyncio.timeout(self.heartbeat):
                    await link.wait_closed()
                return
            except TimeoutError:
                pass
            if link.raw_in != seen or not link.opened:  # (the handshake has its deadline)
                seen, silent = link.raw_in, 0
            else:
                silent += 1
                if silent >= 3:
                    link.close(CloseReason.HEARTBEAT_TIMEOUT, abort=True)
                    await link.wait_closed()
                    return
            link.send_raw(_HEARTBEAT)

    # ------------------------- LinkHandler: the link's life (packets: see __init__)
    def link_opened(self, link: Link) -> None:
        if self.reconnects or self.backoff.failures:
            log.info("%s: link up", self.name)
        self.backoff.reset()
        self._opened = link
        self.link = link  # type: ignore[assignment]
        self.state = LinkState.UP
        self._up.set()
        self.handler.link_opened(link)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        if self.link is link:
            self.link = None
        if self.state is not LinkState.STOPPED:
            self.state = LinkState.DOWN
            self.reconnects += 1
        self._up.clear()
        self.handler.link_closed(link, reason)

    async def close(self) -> None:
        self.state = LinkState.STOPPED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        link = self.link
        if link is not None:
            link.close(CloseReason.UPSTREAM_STOPPED)
            await link.wait_closed()
        self.state = LinkState.STOPPED
