"""The gateway's service links: their link handler, and what users hear when instances change.

Each configured service instance is one `Upstream` whose link handler is the gateway's
`ServiceLinks`. Packets from a service go straight to `Gateway.from_service`. When a link goes
up or down, the set of live instances of that stype changes, and `ServiceRoute.choose` over the
old and the new set tells which logged-in users moved (docs/scaling.md). Such a user hears it,
so the client can re-enter: SERVICE_UNAVAILABLE when no instance is left, SERVICE_AVAILABLE
when one came back, both (in that order) when it moved to another instance, whose state it
must rebuild. The instance it left, if still up (fail-back), gets USER_DISCONNECT: no ghosts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from netbus.errors import ProtocolError
from netbus.protocol.control import CONTROL_CODECS, USER_DISCONNECT, GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.protocol.registry import Direction
from netbus.transport.link import Link
from netbus.transport.reasons import CloseReason
from netbus.transport.upstream import Upstream

if TYPE_CHECKING:
    from netbus.roles.gateway.gateway import Gateway

__all__ = ["ServiceLinks"]

log = logging.getLogger("netbus.gateway")


class ServiceLinks:
    """Link handler for the gateway's service links (one object for all of them)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def link_opened(self, link: Link) -> None:
        self.changed(link.owner, True)

    def packet_received(self, link: Link, cmd_buf: bytearray) -> None:
        self.gateway.from_service(link, cmd_buf)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        self.gateway.metrics.protocol_errors.labels("service_" + exc.kind).inc()
        log.error("service link %s broke framing: %s", link.peer, exc)

    def link_closed(self, link: Link, reason: CloseReason) -> None:
        self.changed(link.owner, False)

    def changed(self, upstream: Upstream, up: bool) -> None:
        """``upstream``'s link went up or down: metrics, then notices to the users it moved."""
        gateway = self.gateway
        metrics = gateway.metrics
        metrics.link_up.labels(upstream.name).set(1 if up else 0)
        if up and upstream.reconnects:
            metrics.reconnects.labels(upstream.name).inc()
        route = next((r for r in gateway.routes.values() if upstream in r.upstreams), None)
        if route is None:
            return
        live = [u for u in route.upstreams if u.is_up]
        before = [u for u in route.upstreams if (not up if u is upstream else u.is_up)]
        for session in gateway.sessions:
            uid = session.uid
            if not uid:
                # A login may be in flight on the lost link: tell whoever used the service.
                if not live and route.stype in session.protos:
                    proto = session.protos[route.stype]
                    gateway.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, route.stype, 0, proto)
                continue
            old, new = route.choose(uid, before), route.choose(uid, live)
            if old is new:
                continue
            proto = session.protos.get(route.stype, ProtoType.JSON)
            if old is not None:
                if old.is_up:
                    old.send_raw(
                        CONTROL_CODECS.encode(
                            route.stype,
                            USER_DISCONNECT,
                            None,
                            utag=uid,
                            direction=Direction.TO_SERVER,
                        )
                    )
                gateway.notice(session, GatewayCmd.SERVICE_UNAVAILABLE, route.stype, 0, proto)
            if new is not None:
                gateway.notice(session, GatewayCmd.SERVICE_AVAILABLE, route.stype, 0, proto)
