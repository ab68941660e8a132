"""asyncio adapters around `netbus.protocol`: links, listeners and gateway upstreams."""

from netbus.transport.link import Link, LinkHandler, LinkStats
from netbus.transport.listener import ListenerSpec, server_ssl_context, start_listener
from netbus.transport.tcp import TcpLink
from netbus.transport.upstream import Backoff, LinkState, Upstream
from netbus.transport.ws import WsLink

__all__ = [
    "Backoff",
    "Link",
    "LinkHandler",
    "LinkState",
    "LinkStats",
    "ListenerSpec",
    "TcpLink",
    "Upstream",
    "WsLink",
    "server_ssl_context",
    "start_listener",
]
