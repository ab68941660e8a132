"""Where ``netbus up`` puts each role, and the URLs it prints: pure functions of `Settings`.

`gateway_layout` gives the N gateways of ``netbus up --gateways N`` their ports,
`service_slots` names the instances of each ``[services.<name>]`` and gives them theirs,
`launch_plan` is the list of processes ``netbus up`` starts, in order,
`cluster_health_targets` tells the web role about every one of them, `gateway_client_url`
is where ``netbus chat --config`` connects, and `chat_command` is the line the banner prints.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import orjson

from netbus.config import ListenerConfig, Settings
from netbus.errors import ConfigError

__all__ = [
    "GatewaySlot",
    "Launch",
    "ServiceSlot",
    "chat_command",
    "cluster_health_targets",
    "gateway_client_url",
    "gateway_layout",
    "launch_plan",
    "listener_url",
    "service_slots",
]

log = logging.getLogger("netbus.up")


class GatewaySlot(NamedTuple):
    """One gateway of `netbus up --gateways N`: its id, listeners, admin port and env."""

    id: str
    listeners: list[ListenerConfig]
    admin_port: int | None
    env: dict[str, str]


class ServiceSlot(NamedTuple):
    """One instance of a ``[services.<name>]`` service: one ``netbus serve`` process."""

    role: str  #: its process name: the service name, or ``name.i`` when it has several
    service: str  #: the ``[services.<name>]`` name
    instance: int  #: 1 .. instances
    host: str
    port: int
    admin_host: str
    admin_port: int  #: 0: a free port, announced in its READY line


def service_slots(settings: Settings) -> list[ServiceSlot]:
    """Every instance of every ``[services.<name>]``, in configuration order."""
    slots = []
    for name, cfg in settings.services.items():
        pairs = zip(cfg.ports, cfg.admin_ports, strict=True)
        for index, (port, admin_port) in enumerate(pairs, start=1):
            role = name if cfg.instances == 1 else f"{name}.{index}"
            slots.append(ServiceSlot(role, name, index, cfg.host, port, cfg.admin_host, admin_port))
    return slots


def gateway_layout(settings: Settings, count: int) -> list[GatewaySlot]:
    """Ids gw1..gwN and ports: gateway i (from 0) adds 2*k to every configured port, with
    k = i unless that would hit a port of another role (or of an earlier gateway); such
    offsets are skipped. Port 0 ("any free port") stays 0.

    Raises:
        ConfigError: the ports would pass 65535.
    """
    cfg = settings.gateway
    admin = getattr(cfg, "admin_port", None)
    reserved = {settings.talkroom.port, settings.center.port, settings.web.port}
    reserved.add(settings.web.admin_port)
    for role_cfg in (settings.talkroom, settings.center):
        reserved.add(getattr(role_cfg, "admin_port", 0))
    for slot in service_slots(settings):
        reserved |= {slot.port, slot.admin_port}
    reserved.discard(0)
    used: set[int] = set()
    slots: list[GatewaySlot] = []
    k = 0
    while len(slots) < count:
        ports = [lst.port + 2 * k if lst.port else 0 for lst in cfg.listeners]
        admin_k = admin + 2 * k if admin else admin
        taken = {p for p in ports if p} | ({admin_k} if admin_k else set())
        k += 1
        if any(p > 65535 for p in taken):
            raise ConfigError(f"{count} gateways do not fit below port 65536")
        if taken & (reserved | used):
            continue
        used |= taken
        gw_id = f"gw{len(slots) + 1}"
        listeners = [
            lst.model_copy(update={"port": p}) for lst, p in zip(cfg.listeners, ports, strict=True)
        ]
        env = {
            "NETBUS_GATEWAY__ID": gw_id,
            "NETBUS_GATEWAY__LISTENERS": orjson.dumps(
                [lst.model_dump(mode="json") for lst in listeners]
            ).decode(),
        }
        if admin_k is not None:
            env["NETBUS_GATEWAY__ADMIN_PORT"] = str(admin_k)
        slots.append(GatewaySlot(gw_id, listeners, admin_k, env))
    return slots


class Launch(NamedTuple):
    """One process of ``netbus up``: its name (output prefix), command line, extra env."""

    name: str
    argv: list[str]
    env: dict[str, str]


def launch_plan(
    settings: Settings,
    layout: list[GatewaySlot],
    *,
    roles: list[str],
    command: list[str],
    options: list[str],
    env: dict[str, str],
    web_env: dict[str, str],
) -> list[Launch]:
    """The processes of ``netbus up``, in start order: each built-in role of ``roles`` as
    ``command + [role] + options`` (``python -m netbus center --config F --loop L``), every
    instance of every ``[services.<name>]`` as ``command + ["serve", "--service", name,
    "--instance", i] + options`` right before the gateway(s), and one gateway per slot of
    ``layout`` (with the slot's env when there are several).
    """
    plan = []
    for name in roles:
        if name == "gateway":  # services are up before the gateway, like the built-in ones
            for slot in service_slots(settings):
                argv = [*command, "serve", "--service", slot.service]
                plan.append(
                    Launch(
                        slot.role, [*argv, "--instance", str(slot.instance), *options], dict(env)
                    )
                )
            for gw in layout:
                several = len(layout) > 1
                gw_env = {**env, **gw.env} if several else dict(env)
                plan.append(
                    Launch(gw.id if several else "gateway", [*command, "gateway", *options], gw_env)
                )
        else:
            role_env = dict(web_env) if name == "web" else dict(env)
            plan.append(Launch(name, [*command, name, *options], role_env))
    return plan


def cluster_health_targets(settings: Settings, layout: list[GatewaySlot]) -> dict[str, str]:
    """The web role's health targets for `netbus up --gateways N`: center and talkroom as
    configured, and every gateway of ``layout`` by its id (not only the configured one)."""
    from netbus.admin import admin_targets  # the admin app (aiohttp) only when needed

    targets = {name: url for name, url in admin_targets(settings).items() if name != "gateway"}
    host = settings.gateway.admin_host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    host = f"[{host}]" if ":" in host else host
    for slot in layout:
        if slot.admin_port:
            targets[slot.id] = f"http://{host}:{slot.admin_port}"
        else:
            log.warning("%s has no fixed admin port: the web role cannot check it", slot.id)
    return targets


def gateway_client_url(settings: Settings) -> str:
    """The URL ``netbus chat`` uses for a configuration: its gateway's first TCP listener
    (else its first WebSocket listener), with wildcard addresses reached over loopback.

    Raises:
        ConfigError: no listener has a fixed port.
    """
    listeners = [lst for lst in settings.gateway.listeners if lst.port]
    listeners.sort(key=lambda lst: lst.kind != "tcp")
    if not listeners:
        raise ConfigError("the gateway listeners of this config have no fixed port; pass --url")
    return listener_url(listeners[0])


def listener_url(lst: ListenerConfig) -> str:
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(lst.host, lst.host)
    if ":" in host:
        host = f"[{host}]"
    scheme = {"tcp": "tls", "ws": "wss"}[lst.kind] if lst.is_encrypt else lst.kind
    path = "/ws" if lst.kind == "ws" else ""
    return f"{scheme}://{host}:{lst.port}{path}"


def chat_command(settings: Settings, listeners: list[ListenerConfig], config: str | None) -> str:
    """A ``netbus chat`` command line that reaches the first gateway of this cluster.

    It names the program as this process was started (``netbus`` when that is what the PATH
    finds, else its path or ``python -m netbus``), the config file by its absolute path, and
    ``--url`` only when the config alone would lead elsewhere (``--gateways``, port 0).
    """
    argv0 = Path(sys.argv[0])
    if argv0.name == "netbus":
        found = shutil.which("netbus")
        same = found is not None and Path(found).resolve() == argv0.resolve()
        words = ["netbus" if same else str(argv0.resolve())]
    else:
        words = [sys.executable, "-m", "netbus"]
    words.append("chat")
    if config:
        words += ["--config", str(Path(config).resolve())]
    fixed = [lst for lst in listeners if lst.port]
    fixed.sort(key=lambda lst: lst.kind != "tcp")
    try:
        implied: str | None = gateway_client_url(settings)
    except ConfigError:
        implied = None
    if fixed and listener_url(fixed[0]) != implied:
        words += ["--url", listener_url(fixed[0])]
    return shlex.join(words)
