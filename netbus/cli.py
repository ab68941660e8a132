"""The ``netbus`` command: run roles, the whole cluster, the chat client, migrations, benches."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import orjson

from netbus.cli_plugins import plugin_commands
from netbus.cluster import cluster_secret
from netbus.config import ListenerConfig, Settings, load_settings
from netbus.errors import ConfigError, StartError
from netbus.layout import (
    GatewaySlot,
    chat_command,
    cluster_health_targets,
    gateway_client_url,
    gateway_layout,
    launch_plan,
    listener_url,
)
from netbus.log import setup_logging
from netbus.runtime import LoopName, run

__all__ = ["main"]

log = logging.getLogger("netbus.cli")

#: the config file read when neither --config nor NETBUS_CONFIG names one, if it exists
DEFAULT_CONFIG = "netbus.toml"

_config_option = click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="NETBUS_CONFIG",
    help=f"TOML config file (default: ./{DEFAULT_CONFIG} if there is one, else the built-in"
    " defaults).",
)
_loop_option = click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop implementation.",
)


def _config_file(config: str | None) -> str | None:
    """``config``, else ``./netbus.toml`` when it exists (a project made by `netbus new`)."""
    if config is None and not os.environ.get("NETBUS_CONFIG") and Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return config


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(_config_file(config))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _serve(
    role: str,
    settings: Settings,
    loop: LoopName,
    factory: Callable[[], Awaitable[Any]],
    *,
    admin: bool = True,
    admin_address: tuple[str, int] | None = None,
) -> None:
    """Run a role's server as this process (`netbus.serve.run_server`): admin app, READY
    line, drain on SIGINT/SIGTERM/SIGHUP. ``admin=False`` for a role that serves its own
    admin app (web)."""
    from netbus.serve import run_server

    try:
        run_server(
            role, settings, factory, loop=loop, admin=admin, admin_address=admin_address
        )
    except (ConfigError, StartError) as exc:
        raise click.ClickException(str(exc)) from None


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
    from netbus.gateway import build_gateway

    settings = _settings(config)

    async def factory() -> Any:
        _warn_split_talkroom(settings)  # once logging is set up
        return build_gateway(settings)

    _serve("gateway", settings, loop, factory)


def _warn_split_talkroom(settings: Settings) -> None:
    """The talkroom keeps its one room in one process: several instances need "primary"."""
    from netbus.roles import Stype

    for name, route in settings.gateway.services.items():
        if route.stype == Stype.TalkRoom and len(route.addresses) > 1 and route.policy != "primary":
            log.warning(
                "service %s has %d instances with policy %r: its one room would be"
                ' split; set policy = "primary" (docs/scaling.md)',
                name,
                len(route.addresses),
                route.policy,
            )


@main.command()
@_config_option
@_loop_option
@click.option("--host", default=None, help="Listen address (default web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="HTTP port (default web.port, 8080).")
def web(config: str | None, loop: LoopName, host: str | None, port: int | None) -> None:
    """Run the web role: browser client, /config.js, public /healthz (ok/degraded); the
    cluster's detailed /healthz and /metrics on web.admin_port."""
    from netbus.roles.web.app import build_web

    settings = _settings(config)

    async def factory() -> Any:
        return build_web(settings, host=host, port=port)

    _serve("web", settings, loop, factory, admin=False)


@main.command()
@click.argument("target", required=False)
@_config_option
@_loop_option
@click.option(
    "--service", "-s", "section", default=None, help="Run [services.NAME] of the config."
)
@click.option(
    "--instance",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Which instance of --service (its port is port + INSTANCE - 1).",
)
@click.option("--name", default=None, help="Process name in logs and READY line.")
@click.option("--host", default=None, help="Where gateways connect (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Gateway port (default: free one).")
@click.option("--admin-host", default=None, help="Admin HTTP address (default 127.0.0.1).")
@click.option("--admin-port", type=int, default=None, help="Admin HTTP port (default: free).")
def serve(
    target: str | None,
    config: str | None,
    loop: LoopName,
    section: str | None,
    instance: int,
    name: str | None,
    host: str | None,
    port: int | None,
    admin_host: str | None,
    admin_port: int | None,
) -> None:
    """Run your service(s): TARGET is package.module:attr naming a Service, a Service class,
    a list of them, or a factory; or --service NAME runs [services.NAME] of the config
    (module, stype, ports, settings). Gateways connect to it; /healthz and /metrics on its
    admin port; SIGINT/SIGTERM/SIGHUP drain it (docs/services.md)."""
    from netbus.serve import serve_target, service_server

    settings = _settings(config)
    _here_on_path()
    try:
        spec = serve_target(
            settings,
            target=target,
            service=section,
            instance=instance,
            name=name,
            host=host,
            port=port,
            admin_host=admin_host,
            admin_port=admin_port,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def factory() -> Any:
        return service_server(spec, settings)

    _serve(spec.role, settings, loop, factory, admin_address=spec.admin_address)


@main.command()
@click.argument("name")
@click.option(
    "--directory",
    "-C",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    help="Where to create the project's directory (default: here).",
)
def new(name: str, directory: str) -> None:
    """Create a game project NAME: a service, its netbus.toml, a test, a README.

    Refuses to touch an existing directory."""
    from netbus.scaffold import new_project

    try:
        path = new_project(name, Path(directory))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except FileExistsError:
        raise click.ClickException(
            f"{Path(directory) / name} already exists; nothing was written"
        ) from None
    click.echo(f"created {path}/: a netbus game project. Next, in it:")
    click.echo(f"  cd {path}")
    click.echo("  python -m pip install -e '.[test]' && python -m netbus up")
    click.echo("  python -m pytest")


#: the Redis that `netbus up --gateways N` (N > 1) uses when ``[redis] url`` is unset
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@main.command()
@_config_option
@_loop_option
@click.option(
    "--gateways",
    "-g",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Gateway processes gw1..gwN sharing Redis; each one's ports are the configured ones"
    " + 2*(i-1), skipping ports of the other roles (docs/scaling.md).",
)
def up(config: str | None, loop: LoopName, gateways: int) -> None:
    """Run the whole cluster on this machine: center, talkroom, the [services.*] of the
    config, gateway(s) (and web)."""
    from netbus.supervisor import RoleProcess, Supervisor

    config = _config_file(config)
    settings = _settings(config)
    _check_service_packages(settings)
    setup_logging("up", level=settings.log.level, json_format=settings.log.json_format)
    base = [sys.executable, "-m", "netbus"]
    extra = (["--config", config] if config else []) + ["--loop", loop]
    common_env: dict[str, str] = {}
    redis_url = settings.redis.url
    if gateways > 1 and not redis_url:
        redis_url = DEFAULT_REDIS_URL
        common_env["NETBUS_REDIS__URL"] = redis_url
        settings = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"url": redis_url})}
        )
    if redis_url:
        _check_redis(redis_url)
    try:  # before the roles start, so they all find the same one (docs/security.md)
        cluster_secret(settings)
        layout = gateway_layout(settings, gateways)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    web_env = dict(common_env)
    if gateways > 1 and not settings.web.health_targets:
        targets = cluster_health_targets(settings, layout)
        web_env["NETBUS_WEB__HEALTH_TARGETS"] = orjson.dumps(targets).decode()
    plan = launch_plan(
        settings,
        layout,
        roles=_cluster_roles(),
        command=[*base],
        options=extra,
        env=common_env,
        web_env=web_env,
    )
    roles = [RoleProcess(launch.name, launch.argv, env=launch.env) for launch in plan]

    exit_code = 0

    async def main_() -> None:
        nonlocal exit_code
        from netbus.supervisor import Output, RoleFailed

        # One event stops the cluster: a stop signal, or our output breaking. The handlers
        # stay installed until the children are gone, so a second signal (or a write to a
        # closed pipe) during the stop cannot kill `up` half way. SIGHUP: the terminal was
        # closed; SIGPIPE: whoever read our output is gone.
        stopping = asyncio.Event()
        running_loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            running_loop.add_signal_handler(sig, stopping.set)
        out = Output(sys.stdout, on_broken=stopping.set)
        err = Output(sys.stderr, on_broken=stopping.set)
        sup = Supervisor(roles, out=out, err=err)
        starting = asyncio.ensure_future(sup.start())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                try:
                    starting.result()
                except RoleFailed as exc:
                    err.line(f"netbus up: {exc}; stopping the cluster")
                    exit_code = 1
                    return
                out.line(_banner(settings, layout if gateways > 1 else None, config))
                # A role given up on from now on leaves the rest serving (degraded, and
                # `up` exits non-zero when it stops).
                await stop
        finally:
            starting.cancel()
            stop.cancel()
            out.line("netbus up: stopping")
            await sup.stop()
            if sup.failed_roles:
                exit_code = 1

    try:
        run(main_, loop=loop)
    finally:
        # Closing the loop put SIGPIPE back to its default action (death); Python ignores
        # it, so a broken pipe is an exception we handle.
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.exit(exit_code)


#: signals that stop `netbus up` (and with it the cluster) cleanly
STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE")
    if hasattr(signal, name)  # SIGHUP and SIGPIPE are POSIX only
)


def _redacted(url: str) -> str:
    from netbus.registry import redact_redis_url

    return redact_redis_url(url)


def _cluster_roles() -> list[str]:
    roles = ["center", "talkroom", "gateway"]
    if "web" in main.commands:
        roles.append("web")
    return roles


def _here_on_path() -> None:
    """Like ``python -m``: modules in the current directory can be imported."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _check_service_packages(settings: Settings) -> None:
    """Fail `netbus up` at once when a ``[services.*]`` package cannot be found, rather than
    after its process failed three times. Only the top-level package is looked up: no code
    of it runs in the supervisor."""
    import importlib.util

    _here_on_path()
    for name, service in settings.services.items():
        package = service.module.partition(":")[0].split(".")[0]
        if importlib.util.find_spec(package) is None:
            raise click.ClickException(
                f"services.{name}: no module named {package!r} for {service.module} (is the"
                " package installed, or are you in its directory?)"
            )


def _check_redis(url: str) -> None:
    """Fail `netbus up` with a clear message when the configured Redis does not answer."""
    import redis
    from redis.exceptions import RedisError

    from netbus.registry import redact_redis_url

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise click.ClickException(
            f"Redis at {redact_redis_url(url)} does not answer ({exc}); several gateways share"
            " their login state there. Start redis-server, or set [redis] url"
            " (env NETBUS_REDIS__URL)."
        ) from None
    finally:
        client.close()


def _banner(
    settings: Settings, layout: list[GatewaySlot] | None = None, config: str | None = None
) -> str:
    lines = ["netbus up: cluster ready"]
    gateways = [(settings.gateway.id, settings.gateway.listeners)]
    if layout:
        gateways = [(slot.id, slot.listeners) for slot in layout]
        lines.append(f"  redis     {_redacted(settings.redis.url or '')}")
    for gw_id, listeners in gateways:
        for lst in listeners:
            label = gw_id if layout else "gateway"
            lines.append(f"  {label:<9} {listener_url(lst)}")
    for name, service in settings.services.items():
        public = ", public" if service.public else ""
        lines.append(f"  service   {name} (stype {service.stype}{public}) x{service.instances}")
    if "web" in main.commands:
        web = settings.web
        lines.append(f"  browser   http://{web.host}:{web.port}/")
        lines.append(f"  health    http://{web.admin_host}:{web.admin_port}/healthz")
    lines.append(f"  chat      {chat_command(settings, gateways[0][1], config)}")
    lines.append("  Ctrl-C stops everything.")
    return "\n".join(lines)


@main.command()
@_config_option
@click.option(
    "--url",
    default=None,
    help="Gateway URL: tcp://, tls://, ws://host:port/ws or wss://. Default: the first"
    " gateway listener of --config (tcp://127.0.0.1:6080 with the built-in defaults).",
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
def chat(
    config: str | None,
    url: str | None,
    key_file: str,
    name: str | None,
    sex: int,
    buf: bool,
    standalone: bool,
) -> None:
    """Chat in the talkroom from a terminal (logs in as a guest first).

    Exits when you type /quit or end the input (status 0), or as soon as the server closes
    the connection (status 1).
    """
    from netbus.client.chat import run_chat

    if url is None:
        try:
            url = gateway_client_url(_settings(config))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    code = asyncio.run(
        run_chat(url, key_file=key_file, name=name, sex=sex, buf=buf, login=not standalone)
    )
    sys.exit(code)


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


for _plugin in plugin_commands():  # netbus bench (netbus-bench), loaded only when run
    main.add_command(_plugin)
