"""One configuration for every role: a TOML file, overridden by ``NETBUS_`` environment vars.

Precedence: explicit arguments > environment (``NETBUS_GATEWAY__ID=gw2``, ``__`` nests) >
TOML file (``--config`` or ``NETBUS_CONFIG``) > defaults. Defaults run the whole cluster on
one machine with no external services: SQLite under ``.netbus/``, in-process registry.
docs/config.md lists every key.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from netbus.errors import ConfigError
from netbus.protocol.header import HEADER_SIZE, MAX_CMD_BUF

__all__ = [
    "CenterConfig",
    "GatewayConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "RedisConfig",
    "ServiceRoute",
    "Settings",
    "TalkroomConfig",
    "TlsConfig",
    "WebConfig",
    "load_settings",
    "parse_address",
]

_config_path: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "netbus_config", default=None
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); ``[::1]:6084`` works too."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be host:port, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ListenerConfig(_Model):
    kind: Literal["tcp", "ws"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(6080, ge=0, le=65535)
    is_encrypt: bool = False  #: TLS for tcp, WSS for ws; certificate from [tls]
    max_cmd_buf: int = Field(MAX_CMD_BUF, ge=HEADER_SIZE, le=MAX_CMD_BUF)
    max_connections: int = Field(20000, ge=0)  #: 0 = unlimited
    max_per_ip: int = Field(512, ge=0)  #: connections from one address; 0 = unlimited
    idle_timeout: float = Field(90.0, ge=0)  #: seconds with no byte from the client; 0 = off
    rate: float = Field(200.0, ge=0)  #: packets/s per connection (token bucket); 0 = off
    burst: float = Field(400.0, ge=1)  #: bucket size
    max_dropped: int = Field(2000, ge=1)  #: rate-limited packets before disconnecting


class TlsConfig(_Model):
    certfile: str | None = None
    keyfile: str | None = None


class LimitsConfig(_Model):
    max_buffered_out: int = Field(1024 * 1024, ge=16 * 1024)  #: bytes queued to one client
    login_rate: float = Field(5.0, ge=0)  #: GUEST_LOGIN per second per client IP; 0 = off
    login_burst: float = Field(20.0, ge=1)  #: login attempts one IP may make at once
    #: loopback peers skip the login limit: behind a proxy on the same host every client
    #: shares 127.0.0.1, and local tools (tests, `netbus bench`) log in by the thousand
    login_exempt_loopback: bool = True


class ServiceRoute(_Model):
    """Where the gateway finds one service type, and which instance each user goes to.

    ``policy`` (docs/scaling.md): ``"hash"`` spreads users over the instances that are up
    (rendezvous hashing on the uid, sticky); ``"primary"`` sends every user to the first
    address that is up (active/standby), which a service with one shared state needs.
    """

    stype: int = Field(ge=1, le=0xFFFF)
    addresses: list[str] = Field(min_length=1)
    policy: Literal["hash", "primary"] = "hash"

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_address(item)
        return value


def _default_routes() -> dict[str, ServiceRoute]:
    return {
        # one room for everybody: with several instances it must live on one of them
        "talkroom": ServiceRoute(stype=1, addresses=["127.0.0.1:6084"], policy="primary"),
        "auth": ServiceRoute(stype=2, addresses=["127.0.0.1:6086"]),
    }


class GatewayConfig(_Model):
    id: str = Field("gw1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [
            ListenerConfig(kind="tcp", port=6080),
            ListenerConfig(kind="ws", port=6081),
        ]
    )
    services: dict[str, ServiceRoute] = Field(default_factory=_default_routes)
    auth_stype: int = 2  #: the service whose GUEST_LOGIN replies bind uids
    limits: LimitsConfig = LimitsConfig()
    admin_host: str = "127.0.0.1"  #: admin HTTP (/metrics, /healthz); 0.0.0.0 for scrapers
    admin_port: int = Field(9080, ge=0, le=65535)  #: 0 = pick a free one
    #: seconds between heartbeats on each service link; a link silent for 3 of them is
    #: closed and redialled (half-open detection); 0 = off
    heartbeat_interval: float = Field(5.0, ge=0)

    @field_validator("services")
    @classmethod
    def _unique_stypes(cls, value: dict[str, ServiceRoute]) -> dict[str, ServiceRoute]:
        stypes = [route.stype for route in value.values()]
        if len(stypes) != len(set(stypes)):
            raise ValueError("two services share one stype")
        return value


class CenterConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(6086, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.netbus/netbus.db"
    #: secret for the keyed hash of guest keys; if unset, read/created at ``pepper_file``
    pepper: SecretStr | None = None
    pepper_file: str = ".netbus/pepper"
    migrate_on_start: bool = True
    admin_host: str = "127.0.0.1"  #: admin HTTP (/metrics, /healthz)
    admin_port: int = Field(9086, ge=0, le=65535)  #: 0 = pick a free one


class TalkroomConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(6084, ge=0, le=65535)  #: where gateways connect
    max_msg_len: int = Field(1024, ge=1, le=16000)
    #: client listeners for standalone mode (``netbus talkroom --standalone``)
    client_listeners: list[ListenerConfig] = Field(default_factory=list)
    admin_host: str = "127.0.0.1"  #: admin HTTP (/metrics, /healthz)
    admin_port: int = Field(9084, ge=0, le=65535)  #: 0 = pick a free one


class WebConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  #: the public page (+ a bare ok/degraded /healthz)
    admin_host: str = "127.0.0.1"  #: admin HTTP: the detailed cluster /healthz and /metrics
    admin_port: int = Field(9081, ge=0, le=65535)  #: 0 = pick a free one
    #: the gateway WebSocket URL the browser page connects to; default: same host, port 6081
    gateway_url: str | None = None
    #: role name -> admin base URL whose /healthz the web role aggregates; empty = the
    #: gateway, center and talkroom admin addresses of this same configuration
    health_targets: dict[str, str] = Field(default_factory=dict)
    health_timeout: float = Field(1.0, gt=0, le=30)  #: seconds per role /healthz fetch


class RedisConfig(_Model):
    """Shared login state for several gateways (docs/scaling.md)."""

    url: str | None = None  #: e.g. redis://127.0.0.1:6379/0; unset = in-process registry
    prefix: str = "netbus:"  #: prepended to every key and channel
    #: seconds a login entry survives its gateway: a crashed gateway's users are free after it
    lease: float = Field(15.0, gt=0, le=3600)
    #: seconds between lease renewals (which also repair lost kicks); default lease / 3
    refresh_interval: float | None = Field(None, gt=0)
    #: seconds a login may wait for Redis before it is answered SYSTEM_ERROR
    timeout: float = Field(1.5, gt=0, le=30)
    #: seconds a cached profile (``user:<uid>``) lives after the last login; 0 = no expiry
    profile_ttl: int = Field(7 * 86400, ge=0)

    @field_validator("refresh_interval")
    @classmethod
    def _refresh_below_lease(cls, value: float | None, info: Any) -> float | None:
        lease = info.data.get("lease")
        if value is not None and lease is not None and value >= lease:
            raise ValueError("refresh_interval must be shorter than lease")
        return value


class LogConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NETBUS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    gateway: GatewayConfig = GatewayConfig()
    center: CenterConfig = CenterConfig()
    talkroom: TalkroomConfig = TalkroomConfig()
    web: WebConfig = WebConfig()
    redis: RedisConfig = RedisConfig()
    tls: TlsConfig = TlsConfig()
    log: LogConfig = LogConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration.

    Raises:
        ConfigError: the file is missing or invalid; the message names each bad key.
    """
    path = path or os.environ.get("NETBUS_CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    token = _config_path.set(str(path) if path else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"invalid configuration file {path}: {exc}") from None
    finally:
        _config_path.reset(token)
