"""The talkroom role: `TalkroomService` in a `ServiceServer`, optionally with client listeners."""

from __future__ import annotations

from netbus.cluster import cluster_secret
from netbus.config import Settings
from netbus.metrics import Metrics
from netbus.roles.talkroom.service import TalkroomService
from netbus.service.server import ServiceServer
from netbus.transport.specs import listener_spec

__all__ = ["build_talkroom"]


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
        cluster_secret=cluster_secret(settings),
    )
