"""From the typed configuration to `ListenerSpec`: where listener keys become runtime limits.

Every client listener (the gateway's, a standalone service's) is built here, so each key of
``[[gateway.listeners]]`` and ``[gateway.limits]`` means the same thing everywhere
(docs/config.md). Also the default ``allowed_origins``: the web role's own origin(s).
"""

from __future__ import annotations

import socket

from netbus.config import ListenerConfig, Settings, WebConfig
from netbus.transport.budget import InputBudget
from netbus.transport.guard import ListenerLimits
from netbus.transport.listener import ListenerSpec
from netbus.transport.trust import OriginPolicy, ProxyTrust, TrustedNetworks

__all__ = ["default_origins", "listener_spec"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = ("0.0.0.0", "::", "")


def default_origins(web: WebConfig) -> list[str]:
    """The origin(s) the web role serves its page from, derived from ``[web]``.

    A loopback host is reachable as 127.0.0.1, localhost and [::1]; a wildcard host (0.0.0.0)
    as any of this machine's names, of which the loopback ones and the host name are known
    here. A page served under another name (a domain, a TLS proxy) needs
    ``allowed_origins`` set explicitly (docs/security.md).
    """
    host, port = web.host, web.port
    if host in _WILDCARDS:
        names = [*_LOOPBACK_NAMES, socket.gethostname(), socket.getfqdn()]
    elif host in ("127.0.0.1", "localhost", "::1"):
        names = list(_LOOPBACK_NAMES)
    else:
        names = [f"[{host}]" if ":" in host else host]
    suffix = "" if port == 80 else f":{port}"
    return list(dict.fromkeys(f"http://{name.lower()}{suffix}" for name in names if name))


def listener_spec(
    cfg: ListenerConfig,
    settings: Settings,
    max_buffered_out: int,
    *,
    input_budget: InputBudget | None = None,
) -> ListenerSpec:
    """The `ListenerSpec` of one configured client listener.

    Args:
        max_buffered_out: bytes queued to one client before it is cut as a slow reader.
        input_budget: the process's shared budget for unfinished input (one per process;
            None: a budget of this listener's own).
    """
    limits = settings.gateway.limits
    proxy = None
    if cfg.trusted_proxies:
        proxy = ProxyTrust(TrustedNetworks(cfg.trusted_proxies), proxy_protocol=cfg.proxy_protocol)
    origins = None
    if cfg.kind == "ws":
        allowed = (
            cfg.allowed_origins
            if cfg.allowed_origins is not None
            else default_origins(settings.web)
        )
        origins = OriginPolicy(allowed)
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
            frame_timeout=cfg.frame_timeout,
            ipv4_prefix=limits.ipv4_prefix,
            ipv6_prefix=limits.ipv6_prefix,
        ),
        proxy=proxy,
        origins=origins,
        input_budget=input_budget,
    )
