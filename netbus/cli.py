"""The ``netbus`` command: run roles, the whole cluster, the chat client, migrations, benches."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from netbus.config import Settings, load_settings
from netbus.errors import ConfigError
from netbus.log import setup_logging
from netbus.runtime import LoopName, run, wait_for_signal
from netbus.supervisor import announce_ready

__all__ = ["main"]

log = logging.getLogger("netbus.cli")

_config_option = click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="NETBUS_CONFIG",
    help="TOML config file (default: built-in defaults).",
)
_loop_option = click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop implementation.",
)


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _serve(
    role: str,
    settings: Settings,
    loop: LoopName,
    factory: Callable[[], Awaitable[Any]],
    *,
    admin: bool = True,
) -> None:
    """Start a role server and its admin HTTP app, announce them, run until SIGINT/SIGTERM.

    ``admin=False`` for a role that serves /metrics and /healthz on its own port (web).
    """
    setup_logging(role, level=settings.log.level, json_format=settings.log.json_format)

    async def main() -> None:
        from netbus.admin import build_admin

        server = await factory()
        try:
            await server.start()
        except (ConfigError, OSError) as exc:
            raise click.ClickException(f"{role}: cannot start: {exc}") from None
        admin_app = build_admin(role, server, settings) if admin else None
        try:
            if admin_app is not None:
                await admin_app.start()
        except OSError as exc:
            await server.close()
            raise click.ClickException(f"{role}: cannot start the admin HTTP: {exc}") from None
        admin_port = admin_app.port if admin_app is not None else getattr(server, "port", 0)
        announce_ready(role, **_ports(server), admin_port=admin_port)
        sig = await wait_for_signal()
        log.info("%s: %s received, shutting down", role, sig.name)
        if admin_app is not None:
            await admin_app.close()
        await server.close()

    run(main, loop=loop)


def _ports(server: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for attr in ("port", "ports", "client_ports"):
        if hasattr(server, attr):
            info[attr] = getattr(server, attr)
    return info


@click.group()
@click.version_option(package_name="netbus")
def main() -> None:
    """netbus: a Python game-server framework."""


@main.command()
@_config_option
@_loop_option
@click.option("--standalone", is_flag=True, help="Also accept players directly (no gateway).")
@click.option("--tcp-port", type=int, default=None, help="Standalone TCP port (default 6082).")
@click.option("--ws-port", type=int, default=None, help="Standalone WebSocket port (default 6083).")
@click.option("--host", default=None, help="Standalone listen address (default 127.0.0.1).")
def talkroom(
    config: str | None,
    loop: LoopName,
    standalone: bool,
    tcp_port: int | None,
    ws_port: int | None,
    host: str | None,
) -> None:
    """Run the talkroom service (gateways connect to talkroom.port, default 6084)."""
    from netbus.config import ListenerConfig
    from netbus.roles.talkroom.app import build_talkroom

    settings = _settings(config)
    if standalone and (not settings.talkroom.client_listeners or tcp_port or ws_port):
        h = host or "127.0.0.1"
        listeners = [
            ListenerConfig(kind="tcp", host=h, port=6082 if tcp_port is None else tcp_port),
            ListenerConfig(kind="ws", host=h, port=6083 if ws_port is None else ws_port),
        ]
        settings = settings.model_copy(
            update={
                "talkroom": settings.talkroom.model_copy(update={"client_listeners": listeners})
            }
        )

    async def factory() -> Any:
        return build_talkroom(settings, standalone=standalone)

    _serve("talkroom", settings, loop, factory)


@main.command()
@_config_option
@_loop_option
def center(config: str | None, loop: LoopName) -> None:
    """Run the center server (auth service; gateways connect to center.port, default 6086)."""
    from netbus.roles.center.app import CenterServer

    settings = _settings(config)

    async def factory() -> Any:
        return CenterServer(settings)

    _serve("center", settings, loop, factory)


@main.command()
@_config_option
@_loop_option
def gateway(config: str | None, loop: LoopName) -> None:
    """Run a gateway (client listeners from gateway.listeners, default TCP 6080, WS 6081)."""
    from netbus.roles.gateway.gateway import build_gateway

    settings = _settings(config)

    async def factory() -> Any:
        return build_gateway(settings)

    _serve("gateway", settings, loop, factory)


@main.command()
@_config_option
@_loop_option
@click.option("--host", default=None, help="Listen address (default web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="HTTP port (default web.port, 8080).")
def web(config: str | None, loop: LoopName, host: str | None, port: int | None) -> None:
    """Run the web role: browser client, /config.js, cluster /healthz and /metrics."""
    from netbus.roles.web.app import build_web

    settings = _settings(config)

    async def factory() -> Any:
        return build_web(settings, host=host, port=port)

    _serve("web", settings, loop, factory, admin=False)


@main.command()
@_config_option
@_loop_option
def up(config: str | None, loop: LoopName) -> None:
    """Run the whole cluster on this machine: center, talkroom, gateway (and web)."""
    from netbus.supervisor import RoleProcess, Supervisor

    settings = _settings(config)
    setup_logging("up", level=settings.log.level, json_format=settings.log.json_format)
    base = [sys.executable, "-m", "netbus"]
    extra = (["--config", config] if config else []) + ["--loop", loop]
    roles = [RoleProcess(name, [*base, name, *extra]) for name in _cluster_roles()]

    async def main_() -> None:
        sup = Supervisor(roles)
        try:
            await sup.start()
            _print_banner(settings)
            await wait_for_signal()
        finally:
            print("netbus up: stopping", flush=True)
            await sup.stop()

    run(main_, loop=loop)


def _cluster_roles() -> list[str]:
    roles = ["center", "talkroom", "gateway"]
    if "web" in main.commands:
        roles.append("web")
    return roles


def _print_banner(settings: Settings) -> None:
    lines = ["netbus up: cluster ready"]
    for lst in settings.gateway.listeners:
        scheme = {"tcp": "tls", "ws": "wss"}[lst.kind] if lst.is_encrypt else lst.kind
        path = "/ws" if lst.kind == "ws" else ""
        lines.append(f"  gateway   {scheme}://{lst.host}:{lst.port}{path}")
    if "web" in main.commands:
        lines.append(f"  browser   http://{settings.web.host}:{settings.web.port}/")
        lines.append(f"  health    http://{settings.web.host}:{settings.web.port}/healthz")
    lines.append("  chat      netbus chat")
    lines.append("  Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


@main.command()
@click.option(
    "--url",
    default="tcp://127.0.0.1:6080",
    show_default=True,
    help="Gateway URL: tcp://, tls://, ws://host:port/ws or wss://.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    default=str(Path.home() / ".netbus" / "guest_key"),
    show_default=True,
    help="Where the guest key is kept (created on first use).",
)
@click.option("--name", default=None, help="Name shown in the room (default: your nickname).")
@click.option("--sex", type=click.IntRange(0, 1), default=0, show_default=True)
@click.option("--buf", is_flag=True, help="Use BUF bodies instead of JSON for the talkroom.")
@click.option("--standalone", is_flag=True, help="Talk to a standalone talkroom (no login).")
def chat(url: str, key_file: str, name: str | None, sex: int, buf: bool, standalone: bool) -> None:
    """Chat in the talkroom from a terminal (logs in as a guest first)."""
    from netbus.client.chat import run_chat

    asyncio.run(run_chat(url, key_file=key_file, name=name, sex=sex, buf=buf, login=not standalone))


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@_config_option
def db_upgrade(config: str | None) -> None:
    """Apply the schema migrations to center.database_url."""
    from netbus.storage import redact_url, upgrade_sync

    settings = _settings(config)
    upgrade_sync(settings.center.database_url)
    click.echo(f"schema is up to date: {redact_url(settings.center.database_url)}")
