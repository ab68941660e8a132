"""The gateway: framework core that holds client connections and routes packets to services.

`Gateway` (gateway.py) is the one object a process runs; `build_gateway` makes it from the
configuration. docs/architecture.md walks a packet through these modules.
"""

from netbus.gateway.build import build_gateway
from netbus.gateway.gateway import GATEWAY_ONLY_CTYPES, Gateway

__all__ = ["GATEWAY_ONLY_CTYPES", "Gateway", "build_gateway"]
