"""`build_gateway`: a `Gateway` from the typed configuration, as ``netbus gateway`` runs it.

The listeners come from ``[[gateway.listeners]]`` (with ``[tls]``), the routes from
``[gateway.services.*]``, and the registry from ``[redis]``: Redis when ``url`` is set, else
the in-process registry of this gateway alone (docs/config.md, docs/scaling.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netbus.cluster import cluster_secret
from netbus.config import Settings
from netbus.gateway.gateway import Gateway
from netbus.metrics import Metrics
from netbus.registry.base import Registry
from netbus.transport.budget import InputBudget
from netbus.transport.specs import listener_spec

__all__ = ["build_gateway"]


def build_gateway(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    registry: Registry | None = None,
    claim_timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    secret: bytes | None = None,
) -> Gateway:
    """The gateway of ``settings`` (not started: use ``async with`` or `Gateway.start`).

    Args:
        registry: overrides the one ``[redis]`` selects (tests share a `LocalHub`).
        claim_timeout: default ``[redis] timeout`` with Redis, 1.5 s otherwise.
        clock: monotonic seconds for the gateway's own limits (tests pass a fake).
        secret: the cluster secret its service links prove (default: ``[cluster]``).
    """
    cfg = settings.gateway
    budget = InputBudget(cfg.limits.max_partial_input)  # one for all of its listeners
    specs = [
        listener_spec(c, settings, cfg.limits.max_buffered_out, input_budget=budget)
        for c in cfg.listeners
    ]
    redis_cfg = settings.redis
    if registry is None and redis_cfg.url:
        from netbus.registry.redis import RedisRegistry

        registry = RedisRegistry(
            redis_cfg.url,
            cfg.id,
            prefix=redis_cfg.prefix,
            lease=redis_cfg.lease,
            refresh_interval=redis_cfg.refresh_interval,
            timeout=redis_cfg.timeout,
        )
        if claim_timeout is None:
            claim_timeout = redis_cfg.timeout
    return Gateway(
        cfg,
        specs,
        metrics=metrics,
        registry=registry,
        claim_timeout=1.5 if claim_timeout is None else claim_timeout,
        clock=clock,
        cluster_secret=cluster_secret(settings) if secret is None else secret,
    )
