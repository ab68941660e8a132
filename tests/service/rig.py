"""An in-process rig for the service SDK: a `Dispatcher` fed by hand, links that record.

`RecordingLink` is a real `Link` whose writes land in a list instead of a socket, so a test
sees exactly the cmd_bufs a service sends, in order, with their utags.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from netbus.metrics import Metrics
from netbus.protocol import CONTROL_CODECS, Direction, GatewayCmd, ProtoType, unpack_header
from netbus.protocol.registry import CodecRegistry
from netbus.service import Service
from netbus.service.dispatch import Dispatcher
from netbus.service.user import Route
from netbus.transport.link import Link

__all__ = ["RecordingLink", "Rig", "Sent", "failed"]

JSON, BUF = ProtoType.JSON, ProtoType.BUF


class Sent(NamedTuple):
    stype: int
    ctype: int
    utag: int
    proto_type: int
    body: Any


def failed(stype: int, ctype: int, status: int, utag: int = 0, proto: int = JSON) -> Sent:
    """The REQUEST_FAILED a request of (stype, ctype) gets."""
    body = {"stype": stype, "ctype": ctype, "status": status}
    return Sent(0, GatewayCmd.REQUEST_FAILED, utag, proto, body)


class RecordingLink(Link):
    kind = "test"
    __slots__ = ("out",)

    def __init__(self, peer: str = "peer") -> None:
        super().__init__(None, max_cmd_buf=65533, max_buffered_out=1 << 20)  # type: ignore[arg-type]
        self.peer = peer
        self.out: list[bytes] = []

    def send_raw(self, cmd_buf: bytes | bytearray | memoryview) -> bool:
        if self.closed:
            return False
        self.out.append(bytes(cmd_buf))
        return True


class Rig:
    """Services in a dispatcher; ``gateway()``/``player()`` open routes that record output."""

    def __init__(self, *services: Service, clock: Any = None) -> None:
        self.metrics = Metrics("test")
        kwargs = {"clock": clock} if clock is not None else {}
        self.dispatcher = Dispatcher(services, metrics=self.metrics, **kwargs)
        self.codecs: CodecRegistry = self.dispatcher.codecs

    def gateway(self, name: str = "gw") -> Route:
        return Route(RecordingLink(name), direct=False)

    def player(self, name: str = "player") -> Route:
        return Route(RecordingLink(name), direct=True)

    def send(
        self,
        route: Route,
        stype: int,
        ctype: int,
        body: Any = None,
        *,
        utag: int = 0,
        proto: int = JSON,
    ) -> bool:
        data = self.codecs.encode(
            stype, ctype, body, utag=utag, proto_type=proto, direction=Direction.TO_SERVER
        )
        return self.dispatcher.packet(route, bytearray(data))

    def raw(self, route: Route, data: bytes) -> bool:
        return self.dispatcher.packet(route, bytearray(data))

    def sent(self, route: Route) -> list[Sent]:
        """Everything sent on ``route`` since the last call, decoded."""
        link = route.link
        assert isinstance(link, RecordingLink)
        out = []
        for data in link.out:
            h = unpack_header(data)
            codecs = CONTROL_CODECS if h.stype == 0 else self.codecs
            body = codecs.decode_body(data, h.stype, h.ctype, h.proto_type, Direction.TO_CLIENT)
            out.append(Sent(h.stype, h.ctype, h.utag, h.proto_type, body))
        link.out.clear()
        return out

    def count(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value("netbus_dropped_total", {"reason": reason})
        return value or 0.0

    def protocol_errors(self, kind: str) -> float:
        labels = {"kind": kind}
        value = self.metrics.registry.get_sample_value("netbus_protocol_errors_total", labels)
        return value or 0.0
