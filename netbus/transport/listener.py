"""Start client and service listeners: TCP or WebSocket, plain or TLS, one call each."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netbus.config import ListenerConfig, Settings
from netbus.errors import ConfigError
from netbus.protocol.header import MAX_CMD_BUF
from netbus.transport.guard import Guard, ListenerLimits
from netbus.transport.link import LinkHandler
from netbus.transport.tcp import TcpLink
from netbus.transport.ws import WsLink

__all__ = ["Listener", "ListenerSpec", "listener_spec", "server_ssl_context", "start_listener"]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """Where and how to listen. ``port=0`` picks a free port (tests)."""

    kind: str = "tcp"  #: "tcp" or "ws"
    host: str = "127.0.0.1"
    port: int = 0
    is_encrypt: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    max_cmd_buf: int = MAX_CMD_BUF
    max_buffered_out: int = 4 * 1024 * 1024
    reuse_port: bool = False
    limits: ListenerLimits | None = None  #: None: no caps (trusted peers, e.g. gateways)
    batch_writes: bool = False  #: coalesce writes per loop iteration (trunk links, TCP only)


def listener_spec(cfg: ListenerConfig, settings: Settings, max_buffered_out: int) -> ListenerSpec:
    """The `ListenerSpec` of a configured client listener (``[[gateway.listeners]]`` and the
    talkroom's standalone ``client_listeners``), with the TLS files of ``[tls]``."""
    return ListenerSpec(
        kind=cfg.kind,
        host=cfg.host,
        port=cfg.port,
        is_encrypt=cfg.is_encrypt,
        certfile=settings.tls.certfile,
        keyfile=settings.tls.keyfile,
        max_cmd_buf=cfg.max_cmd_buf,
        max_buffered_out=max_buffered_out,
        limits=ListenerLimits(
            max_connections=cfg.max_connections,
            max_per_ip=cfg.max_per_ip,
            idle_timeout=cfg.idle_timeout,
            rate=cfg.rate,
            burst=cfg.burst,
            max_dropped=cfg.max_dropped,
        ),
    )


def server_ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) from PEM files.

    Raises:
        ConfigError: a file is missing or unreadable, with the path in the message.
    """
    if not certfile:
        raise ConfigError("is_encrypt is set but no TLS certfile is configured")
    for path in (certfile, keyfile):
        if path and not Path(path).is_file():
            raise ConfigError(f"TLS file not found: {path}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load TLS certificate {certfile}: {exc}") from None
    return ctx


def link_factory(spec: ListenerSpec, handler: LinkHandler) -> Callable[[], TcpLink | WsLink]:
    cls: type[TcpLink] | type[WsLink]
    if spec.kind == "tcp":
        cls = TcpLink
    elif spec.kind == "ws":
        cls = WsLink
    else:
        raise ConfigError(f"listener kind must be 'tcp' or 'ws', not {spec.kind!r}")

    if spec.batch_writes and spec.kind == "tcp":
        return functools.partial(
            TcpLink,
            handler,
            max_cmd_buf=spec.max_cmd_buf,
            max_buffered_out=spec.max_buffered_out,
            batch_writes=True,
        )

    def make() -> TcpLink | WsLink:
        return cls(handler, max_cmd_buf=spec.max_cmd_buf, max_buffered_out=spec.max_buffered_out)

    return make


class Listener:
    """A listening socket, the `Guard` enforcing its limits, and its bound port."""

    def __init__(self, server: asyncio.Server, guard: Guard | None) -> None:
        self.server = server
        self.guard = guard

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self.server.sockets)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        self.server.close()
        if self.guard is not None:
            self.guard.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


async def start_listener(spec: ListenerSpec, handler: LinkHandler) -> Listener:
    """Listen per ``spec``; every accepted connection becomes a `Link` reporting to ``handler``.

    With ``spec.limits`` the handler sits behind a `Guard` (connection caps, idle timeout,
    rate limit); the metrics of ``handler`` (if it has ``metrics``) count what it refuses.
    """
    ctx = server_ssl_context(spec.certfile, spec.keyfile) if spec.is_encrypt else None
    guard = None
    if spec.limits is not None:
        guard = Guard(handler, spec.limits, metrics=getattr(handler, "metrics", None))
        handler = guard
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        link_factory(spec, handler),
        spec.host,
        spec.port,
        ssl=ctx,
        reuse_port=spec.reuse_port or None,
        backlog=4096,
    )
    return Listener(server, guard)
