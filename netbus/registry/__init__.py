"""Who is logged in where: in-process by default, Redis for several gateways.

`Registry` is the protocol; `LocalRegistry` serves one gateway (or several in one process),
`RedisRegistry` a cluster of gateway processes. docs/scaling.md describes the Redis layout.
The Redis-backed names are imported on first use, so a gateway without ``[redis] url`` does
not pay for importing redis-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from netbus.registry.base import KickHandler, Owner, Registry
from netbus.registry.local import LocalHub, LocalRegistry

if TYPE_CHECKING:
    from netbus.registry.profiles import ProfileCache
    from netbus.registry.redis import RedisRegistry, redact_redis_url, redis_client

__all__ = [
    "KickHandler",
    "LocalHub",
    "LocalRegistry",
    "Owner",
    "ProfileCache",
    "RedisRegistry",
    "Registry",
    "redact_redis_url",
    "redis_client",
]

_LAZY = {
    "ProfileCache": "netbus.registry.profiles",
    "RedisRegistry": "netbus.registry.redis",
    "redact_redis_url": "netbus.registry.redis",
    "redis_client": "netbus.registry.redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
