"""`ServiceHost`: the link handler of a server that runs services.

It accepts either direct player connections (standalone mode: each connection is one user)
or gateway links (each link carries many users, told apart by utag). Either way the services
see the same `User`s and handlers, which is why a service runs unchanged behind a gateway.
"""

from __future__ import annotations

import logging

from netbus.errors import ProtocolError
from netbus.metrics import Metrics
from netbus.protocol.control import CONTROL_STYPE, GatewayCmd
from netbus.protocol.header import UTAG_OFFSET
from netbus.service.dispatch import Dispatcher
from netbus.service.user import Route
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason

__all__ = ["ServiceHost"]

log = logging.getLogger("netbus.service")

#: stype 0 (gateway control), ctype 1 (HEARTBEAT), little-endian
_HEARTBEAT_PREFIX = bytes((CONTROL_STYPE, 0, GatewayCmd.HEARTBEAT, 0))
_ZERO_UTAG = b"\0\0\0\0"


class ServiceHost:
    """Link handler feeding a `Dispatcher`.

    Args:
        direct_players: connections are players (standalone mode) rather than gateways.
    """

    def __init__(self, dispatcher: Dispatcher, *, direct_players: bool, metrics: Metrics) -> None:
        self.dispatcher = dispatcher
        self.direct_players = direct_players
        self.metrics = metrics
        self._routes: dict[Link, Route] = {}

    @property
    def links(self) -> list[Link]:
        """The open links (gateway trunks, or direct players)."""
        return list(self._routes)

    def link_opened(self, link: Link) -> None:
        route = Route(link, direct=self.direct_players)
        link.owner = route
        self._routes[link] = route
        self.metrics.connections.labels(link.kind).inc()
        self.metrics.connections_total.labels(link.kind).inc()
        if not self.direct_players:
            log.info("gateway link from %s", link.peer)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        route: Route = link.owner
        if cmd_buf[:4] == _HEARTBEAT_PREFIX:
            # Liveness probe of the gateway link (or a player's heartbeat): echoed as is.
            if route.direct and cmd_buf[UTAG_OFFSET : UTAG_OFFSET + 4] != _ZERO_UTAG:
                cmd_buf[UTAG_OFFSET : UTAG_OFFSET + 4] = _ZERO_UTAG
            link.send_raw(cmd_buf)
            return
        if not self.dispatcher.packet(route, cmd_buf) and route.direct:
            link.close(CloseReason.MALFORMED_PACKET)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.metrics.protocol_errors.labels(exc.kind).inc()
        log.info("closing %s: %s", link.peer, exc)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        route = self._routes.pop(link, None)
        self.metrics.connections.labels(link.kind).dec()
        if reason is CloseReason.SLOW_CONSUMER:
            self.metrics.dropped.labels("slow_consumer").inc()
        if route is None:
            return
        if not route.direct:
            log.warning("gateway link from %s closed (%s %s)", link.peer, reason, link.close_detail)
        self.dispatcher.route_closed(route)

    def close_all(self, reason: CloseReason) -> None:
        for link in list(self._routes):
            link.close(reason)
