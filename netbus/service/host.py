"""`ServiceHost`: the link handler of a server that runs services.

It accepts either direct player connections (a standalone server: each connection is one
user) or gateway links (each link carries many users, told apart by utag). Either way the
services see the same `Request`s, which is why a service runs unchanged behind a gateway.
"""

from __future__ import annotations

import logging

from netbus.errors import ProtocolError
from netbus.protocol.commands import GatewayCmd, Stype
from netbus.service.manager import ServiceManager
from netbus.session import SessionTable
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason

__all__ = ["ServiceHost"]

log = logging.getLogger("netbus.service")

#: stype 0 (gateway control), ctype 1 (HEARTBEAT), little-endian
_HEARTBEAT_PREFIX = bytes((Stype.Gateway, 0, GatewayCmd.HEARTBEAT, 0))


class ServiceHost:
    """Link handler feeding a `ServiceManager`.

    Args:
        direct_players: connections are players (standalone mode) rather than gateways.
    """

    def __init__(self, manager: ServiceManager, *, direct_players: bool) -> None:
        self.manager = manager
        self.direct_players = direct_players
        self.sessions = SessionTable()

    def link_opened(self, link: Link) -> None:
        self.sessions.add(link, is_client=self.direct_players)
        self.manager.metrics.connections.labels(link.kind).inc()
        self.manager.metrics.connections_total.labels(link.kind).inc()
        if not self.direct_players:
            log.info("gateway link from %s", link.peer)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        session = link.owner
        if cmd_buf[:4] == _HEARTBEAT_PREFIX:
            session.send_raw(cmd_buf)  # liveness probe of the gateway link (or a player)
            return
        if not self.manager.on_player_cmd(session, cmd_buf) and self.direct_players:
            link.close(CloseReason.MALFORMED_PACKET)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.manager.metrics.protocol_errors.labels(exc.kind).inc()
        log.info("closing %s: %s", link.peer, exc)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        session = link.owner
        self.sessions.remove(session)
        self.manager.metrics.connections.labels(link.kind).dec()
        if reason is CloseReason.SLOW_CONSUMER:
            self.manager.metrics.dropped.labels("slow_consumer").inc()
        if self.direct_players:
            self.manager.player_disconnected(session, session.sid)
        else:
            log.warning("gateway link from %s closed (%s %s)", link.peer, reason, link.close_detail)
            self.manager.link_lost(session)
