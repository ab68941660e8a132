"""The talkroom role: `TalkroomService` in a `ServiceServer`, optionally with client listeners."""

from __future__ import annotations

from netbus.config import ListenerConfig, Settings
from netbus.metrics import Metrics
from netbus.roles.talkroom.service import TalkroomService
from netbus.service.server import ServiceServer
from netbus.transport.guard import ListenerLimits
from netbus.transport.listener import ListenerSpec

__all__ = ["build_talkroom", "listener_spec"]


def listener_spec(cfg: ListenerConfig, settings: Settings, max_buffered_out: int) -> ListenerSpec:
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


def build_talkroom(settings: Settings, *, standalone: bool = False) -> ServiceServer:
    cfg = settings.talkroom
    clients = (
        [
            listener_spec(c, settings, settings.gateway.limits.max_buffered_out)
            for c in cfg.client_listeners
        ]
        if standalone
        else []
    )
    return ServiceServer(
        [TalkroomService(max_msg_len=cfg.max_msg_len)],
        host=cfg.host,
        port=cfg.port,
        client_listeners=clients,
        metrics=Metrics("talkroom"),
        name="talkroom",
    )
