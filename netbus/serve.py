"""Running one server as a process: what every ``netbus`` role and ``netbus serve`` share.

`run_server` is the whole life of a role process (docs/operations.md §1):

1. logging set up for the role; refuse to start if the ``netbus up`` that spawned it is
   already gone (`arm_parent_death_signal`);
2. the server started, then its admin HTTP app (``/healthz``, ``/metrics``: `build_admin`);
3. SIGINT, SIGTERM and SIGHUP handled *before* the READY line, so a supervisor (or a test)
   that stops the role as soon as it reads the line still gets a drain;
4. ``NETBUS-READY <role> {"port": ..., "admin_port": ...}`` on stdout (`announce_ready`);
5. on a stop signal, or when ``netbus up`` is gone (the lifeline): the admin app closes,
   then the server drains and closes (a `ServiceServer` finishes running handlers first).

`ServeTarget` and `service_server` are ``netbus serve``'s part: which services a target (or
a ``[services.<name>]`` table) names, built with that table's settings and stype, in a
`ServiceServer` on its port with the cluster secret.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from netbus.cluster import cluster_secret
from netbus.config import Settings
from netbus.errors import ConfigError, StartError
from netbus.layout import service_slots
from netbus.log import setup_logging
from netbus.metrics import Metrics
from netbus.runtime import LoopName, run, wait_for_signal
from netbus.service.base import Service
from netbus.service.loader import build_services, import_target
from netbus.service.server import ServiceServer
from netbus.supervisor import announce_ready, arm_parent_death_signal, watch_lifeline

__all__ = [
    "STOP_SIGNALS",
    "RoleServer",
    "ServeTarget",
    "run_server",
    "serve_target",
    "service_server",
]

log = logging.getLogger("netbus.serve")

#: signals that drain and stop a role (SIGHUP: its terminal is gone)
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class RoleServer(Protocol):
    """What `run_server` runs: a server with start/close and what its admin app reports
    (`netbus.admin.HealthReporter`). Its ``port``/``ports``/``client_ports``/``admin_port``
    attributes, where it has them, go into the READY line."""

    @property
    def metrics(self) -> Metrics: ...

    def health_facts(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def run_server(
    role: str,
    settings: Settings,
    factory: Callable[[], Awaitable[RoleServer]],
    *,
    loop: LoopName = "auto",
    admin: bool = True,
    admin_address: tuple[str, int] | None = None,
) -> None:
    """Run the server ``factory`` makes (on the loop) as this process, until a stop signal.

    Args:
        role: names the process in logs, in the READY line and in ``/healthz``.
        admin: False for a server that serves its own admin app (the web role; its
            ``admin_port`` attribute is announced).
        admin_address: where the admin app listens; default the role's entry in
            `netbus.admin.admin_addresses`.

    Raises:
        StartError: the server or its admin app cannot start, or ``netbus up`` is gone.
        ConfigError: ``factory`` found the configuration invalid.
    """
    setup_logging(role, level=settings.log.level, json_format=settings.log.json_format)
    if not arm_parent_death_signal():
        raise StartError(f"{role}: netbus up is gone; not starting")

    async def main() -> None:
        from netbus.admin import build_admin  # aiohttp: only in the process that serves

        server = await factory()
        try:
            await server.start()
        except (ConfigError, OSError) as exc:  # a misconfigured listener, a port taken
            raise StartError(f"{role}: cannot start: {exc}") from None
        admin_app = None
        try:
            if admin:
                admin_app = build_admin(role, server, settings, address=admin_address)
                await admin_app.start()
        except (OSError, ValueError) as exc:
            await server.close()
            raise StartError(f"{role}: cannot start the admin HTTP: {exc}") from None
        admin_port = admin_app.port if admin_app is not None else getattr(server, "admin_port", 0)
        # The handlers go in before READY (see the module docstring, step 3).
        stop = asyncio.ensure_future(wait_for_signal(*STOP_SIGNALS))
        await asyncio.sleep(0)  # lets wait_for_signal install its handlers
        orphaned = watch_lifeline()  # under `netbus up`: done when the supervisor is gone
        announce_ready(role, **_ports(server), admin_port=admin_port)
        await asyncio.wait(
            {stop} | ({orphaned} if orphaned else set()), return_when=asyncio.FIRST_COMPLETED
        )
        if stop.done():
            log.info("%s: %s received, shutting down", role, stop.result().name)
        else:  # its SIGTERM (parent-death signal) may follow: `stop` still catches it
            log.warning("%s: netbus up is gone, shutting down", role)
        if orphaned is not None:
            orphaned.cancel()
        if admin_app is not None:
            await admin_app.close()
        await server.close()
        stop.cancel()

    run(main, loop=loop)


def _ports(server: object) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for attr in ("port", "ports", "client_ports"):
        if hasattr(server, attr):
            info[attr] = getattr(server, attr)
    return info


# ------------------------------------------------------------------------- netbus serve
@dataclass(frozen=True)
class ServeTarget:
    """What one ``netbus serve`` process runs, and where."""

    role: str  #: process name (logs, READY line, ``/healthz``, metrics)
    services: list[Service] = field(repr=False)
    host: str = "127.0.0.1"  #: where gateways connect
    port: int = 0  #: 0 picks a free port (announced in the READY line)
    admin_address: tuple[str, int] = ("127.0.0.1", 0)


def serve_target(
    settings: Settings,
    *,
    target: str | None = None,
    service: str | None = None,
    instance: int = 1,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    admin_host: str | None = None,
    admin_port: int | None = None,
) -> ServeTarget:
    """Load what ``netbus serve`` runs: ``target`` (``package.module:attr``), or instance
    ``instance`` of ``[services.<service>]`` (its module, stype, settings, ports). The
    other arguments override the table's values (or the defaults: 127.0.0.1, free ports).

    Raises:
        ConfigError: neither or both of ``target``/``service``; no such table or instance;
            the target does not load or is not a service (`netbus.service.loader`); the
            service declares another stype than its table.
    """
    if target is not None and service is None:
        services = build_services(import_target(target), origin=target)
        spec = ServeTarget(name or "+".join(s.name for s in services), services)
    elif service is not None and target is None:
        spec = _from_table(settings, service, instance, name)
    else:
        raise ConfigError("give a target (package.module:attr) or --service NAME, not both")
    return ServeTarget(
        role=spec.role,
        services=spec.services,
        host=spec.host if host is None else host,
        port=spec.port if port is None else port,
        admin_address=(
            spec.admin_address[0] if admin_host is None else admin_host,
            spec.admin_address[1] if admin_port is None else admin_port,
        ),
    )


def _from_table(settings: Settings, service: str, instance: int, name: str | None) -> ServeTarget:
    cfg = settings.services.get(service)
    if cfg is None:
        have = ", ".join(settings.services) or "none"
        raise ConfigError(f"no [services.{service}] in the configuration (it has: {have})")
    slots = [s for s in service_slots(settings) if s.service == service]
    if not 1 <= instance <= len(slots):
        raise ConfigError(f"services.{service} has {len(slots)} instance(s), not {instance}")
    slot = slots[instance - 1]
    origin = f"services.{service}"
    services = build_services(import_target(cfg.module), settings=cfg.settings, origin=origin)
    if len(services) != 1:
        raise ConfigError(
            f"{origin}: {cfg.module} gave {len(services)} services; a [services.<name>] "
            "table routes one stype, so declare one table per service"
        )
    declared = services[0].stype
    if declared == Service.stype:  # the class left it to the configuration
        services[0].stype = cfg.stype
    elif declared != cfg.stype:
        raise ConfigError(f"{origin}.stype is {cfg.stype} but {cfg.module} declares {declared}")
    return ServeTarget(
        role=name or slot.role,
        services=services,
        host=slot.host,
        port=slot.port,
        admin_address=(slot.admin_host, slot.admin_port),
    )


def service_server(spec: ServeTarget, settings: Settings) -> ServiceServer:
    """The `ServiceServer` of ``spec``: its services on its port, proving the cluster secret.

    Raises:
        ConfigError: two services share an stype, or the cluster secret is unusable.
    """
    try:
        return ServiceServer(
            spec.services,
            host=spec.host,
            port=spec.port,
            metrics=Metrics(spec.role),
            name=spec.role,
            cluster_secret=cluster_secret(settings),
        )
    except ValueError as exc:  # the dispatcher refuses duplicate or missing stypes
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{spec.role}: {exc}") from None
