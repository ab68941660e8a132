"""Client codec registries and JSON declarations built from service classes.

A client needs the same BUF layouts as the services it talks to. Rather than transcribing
them, build them from the services themselves::

    codecs = client_codecs(EchoService, TalkroomService)     # Python clients
    client = await Client.connect(url, codecs=codecs)

and for the browser (or any other language) export the JSON declaration, with
``python -m netbus.service.declare mygame.echo:EchoService`` (docs/services.md, "Client
codecs").
"""

from __future__ import annotations

from typing import Any

from netbus.protocol.control import CONTROL_CODECS
from netbus.protocol.registry import CodecRegistry
from netbus.service.base import Service, service_codecs

__all__ = ["client_codecs", "declaration"]


def client_codecs(*services: Service | type[Service]) -> CodecRegistry:
    """The control channel plus the layouts of ``services`` (classes or instances).

    Raises:
        ValueError: two services declare the same (stype, ctype) differently.
    """
    registry = CONTROL_CODECS
    for service in services:
        cls = service if isinstance(service, type) else type(service)
        registry = registry | service_codecs(cls, service.stype)
    return registry


def declaration(*services: Service | type[Service]) -> dict[str, Any]:
    """The JSON declaration of ``services``' layouts (the control channel is left out:
    every client has it built in)."""
    registry = CodecRegistry()
    for service in services:
        cls = service if isinstance(service, type) else type(service)
        registry = registry | service_codecs(cls, service.stype)
    return registry.declaration()
