"""Start client and service listeners: TCP or WebSocket, plain or TLS, one call each."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netbus.errors import ConfigError
from netbus.protocol.header import MAX_CMD_BUF
from netbus.protocol.linkauth import ServiceHandshake
from netbus.transport.budget import InputBudget
from netbus.transport.guard import Guard, ListenerLimits
from netbus.transport.link import LinkHandler
from netbus.transport.tcp import TcpLink
from netbus.transport.trust import OriginPolicy, ProxyTrust
from netbus.transport.ws import WsLink

__all__ = [
    "DEFAULT_INPUT_BUDGET",
    "Listener",
    "ListenerSpec",
    "server_ssl_context",
    "start_listener",
]

#: bytes of unfinished input a guarded listener may hold when no shared budget is given
DEFAULT_INPUT_BUDGET = 32 * 1024 * 1024


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
    #: the cluster secret: every connection must pass the service-link handshake
    #: (`netbus.protocol.linkauth`) before a frame is read; None: no link authentication
    auth_secret: bytes | None = field(default=None, repr=False)
    proxy: ProxyTrust | None = None  #: trusted proxies (PROXY protocol, X-Forwarded-For)
    origins: OriginPolicy | None = None  #: WS only: allowed page origins; None: any
    #: unfinished input shared by every listener of the process; None with ``limits``: a
    #: budget of `DEFAULT_INPUT_BUDGET` for this listener alone
    input_budget: InputBudget | None = None



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


def link_factory(
    spec: ListenerSpec, handler: LinkHandler, budget: InputBudget | None = None
) -> Callable[[], TcpLink | WsLink]:
    """Makes one link per accepted connection, configured by ``spec``."""
    if spec.kind == "tcp":
        handshake = (
            functools.partial(ServiceHandshake, spec.auth_secret)
            if spec.auth_secret is not None
            else None
        )
        return functools.partial(
            TcpLink,
            handler,
            max_cmd_buf=spec.max_cmd_buf,
            max_buffered_out=spec.max_buffered_out,
            batch_writes=spec.batch_writes,
            handshake=handshake,
            proxy=spec.proxy,
            budget=budget,
        )
    if spec.kind == "ws":
        if spec.auth_secret is not None:
            raise ConfigError("link authentication is for TCP service listeners only")
        return functools.partial(
            WsLink,
            handler,
            max_cmd_buf=spec.max_cmd_buf,
            max_buffered_out=spec.max_buffered_out,
            proxy=spec.proxy,
            origins=spec.origins,
            budget=budget,
        )
    raise ConfigError(f"listener kind must be 'tcp' or 'ws', not {spec.kind!r}")


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

    With ``spec.limits`` the handler sits behind a `Guard` (connection caps, idle and frame
    deadlines, rate limit) and the links' unfinished input counts against an `InputBudget`;
    the metrics of ``handler`` (if it has ``metrics``) count what the guard refuses.
    """
    ctx = server_ssl_context(spec.certfile, spec.keyfile) if spec.is_encrypt else None
    guard = None
    budget = spec.input_budget
    if spec.limits is not None:
        guard = Guard(handler, spec.limits, metrics=getattr(handler, "metrics", None))
        handler = guard
        if budget is None:
            budget = InputBudget(DEFAULT_INPUT_BUDGET)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        link_factory(spec, handler, budget),
        spec.host,
        spec.port,
        ssl=ctx,
        reuse_port=spec.reuse_port or None,
        backlog=4096,
    )
    return Listener(server, guard)
