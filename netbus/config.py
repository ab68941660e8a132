"""One configuration for every role: a TOML file, overridden by ``NETBUS_`` environment vars.

Precedence: explicit arguments > environment (``NETBUS_GATEWAY__ID=gw2``, ``__`` nests) >
TOML file (``--config`` or ``NETBUS_CONFIG``) > defaults. Defaults run the whole cluster on
one machine with no external services: SQLite under ``.netbus/``, in-process registry.
docs/config.md lists every key.
"""

from __future__ import annotations

import contextvars
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from netbus.errors import ConfigError
from netbus.protocol.header import HEADER_SIZE, MAX_CMD_BUF

__all__ = [
    "RESERVED_SERVICE_NAMES",
    "AccountsConfig",
    "CenterConfig",
    "ClusterConfig",
    "GatewayConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "RedisConfig",
    "ServiceConfig",
    "ServiceRoute",
    "Settings",
    "TalkroomConfig",
    "TlsConfig",
    "WebConfig",
    "check_target",
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
    #: seconds one frame may stay unfinished (a peer trickling a frame is cut); 0 = off
    frame_timeout: float = Field(15.0, ge=0)
    #: proxies (IPs or networks) whose word on the client's address is believed: their
    #: PROXY header (with ``proxy_protocol``) or, on WS, their X-Forwarded-For
    trusted_proxies: list[str] = Field(default_factory=list)
    #: connections from ``trusted_proxies`` start with a PROXY v1/v2 header (required);
    #: a header from anyone else is a protocol error
    proxy_protocol: bool = False
    #: WS: page origins browsers may connect from (``"*"``: any); unset = the web role's
    #: own origin(s), derived from ``[web]``; requests without Origin always pass
    allowed_origins: list[str] | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)  # ValueError names the entry
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        from netbus.transport.trust import normalize_origin

        for entry in value or ():
            if entry != "*":
                normalize_origin(entry)
        return value


class TlsConfig(_Model):
    certfile: str | None = None
    keyfile: str | None = None


class LimitsConfig(_Model):
    max_buffered_out: int = Field(1024 * 1024, ge=16 * 1024)  #: bytes queued to one client
    login_rate: float = Field(5.0, ge=0)  #: GUEST_LOGIN per second per client IP; 0 = off
    login_burst: float = Field(20.0, ge=1)  #: login attempts one IP may make at once
    #: loopback peers skip the login limit (local load tools); off by default: behind a
    #: proxy on the same host every client would be exempt (use ``trusted_proxies``)
    login_exempt_loopback: bool = False
    #: per-IP limits (listener caps, login limit) count IPv4 clients by this prefix
    ipv4_prefix: int = Field(32, ge=8, le=32)
    #: ... and IPv6 clients by this one (a /64 is usually one subscriber)
    ipv6_prefix: int = Field(64, ge=16, le=128)
    #: bytes of unfinished input all client connections of the process may hold at once;
    #: past it the connections holding theirs the longest are cut; 0 = no limit
    max_partial_input: int = Field(32 * 1024 * 1024, ge=0)


class ServiceRoute(_Model):
    """Where the gateway finds one service type, and which instance each user goes to.

    ``policy`` (docs/scaling.md): ``"hash"`` spreads users over the instances that are up
    (rendezvous hashing on the uid, sticky); ``"primary"`` sends every user to the first
    address that is up (active/standby), which a service with one shared state needs.
    """

    stype: int = Field(ge=1, le=0xFFFF)
    addresses: list[str] = Field(min_length=1)
    policy: Literal["hash", "primary"] = "hash"
    #: players reach this service without logging in (pre-login connections by their key)
    public: bool = False

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


class AccountsConfig(_Model):
    """``[center.accounts]``: passwords, lockout, resume tokens, the guest-login batch.

    The field names are those of `netbus.storage.AuthOptions` (docs/config.md, docs/security.md).
    """

    argon2_time_cost: int = Field(2, ge=1, le=100)  #: argon2id passes
    argon2_memory_kib: int = Field(19456, ge=1024, le=4 * 1024 * 1024)  #: KiB per hash
    argon2_parallelism: int = Field(1, ge=1, le=64)  #: lanes per hash
    hash_workers: int = Field(2, ge=1, le=64)  #: password hashes computed at once (threads)
    hash_queue: int = Field(64, ge=0)  #: hashes allowed to wait; more answer BUSY
    account_max_failures: int = Field(5, ge=1)  #: failed logins that lock a username
    account_lockout: float = Field(30.0, gt=0)  #: seconds of its first lock (then doubling)
    account_lockout_max: float = Field(900.0, gt=0)  #: longest lock of a username
    account_failure_window: float = Field(86400.0, gt=0)  #: seconds until failures are forgotten
    ip_max_failures: int = Field(20, ge=1)  #: failed logins that lock a source address
    ip_lockout: float = Field(60.0, gt=0)
    ip_lockout_max: float = Field(3600.0, gt=0)
    ip_failure_window: float = Field(3600.0, gt=0)
    token_ttl: int = Field(86400, ge=60)  #: seconds a resume token lives
    #: where tokens and lockout counters live: "auto" = Redis when [redis] url is set
    session_store: Literal["auto", "database", "redis"] = "auto"
    login_batch: bool = True  #: group-commit guest logins
    login_batch_max: int = Field(128, ge=1, le=1000)  #: logins per transaction at most
    login_batch_connections: int = Field(1, ge=1, le=16)  #: connections running batches
    purge_interval: float = Field(60.0, ge=0)  #: seconds between purges; 0 = never
    purge_limit: int = Field(1000, ge=1)  #: rows deleted per purge and kind

    @field_validator("account_lockout_max")
    @classmethod
    def _account_cap(cls, value: float, info: Any) -> float:
        if value < info.data.get("account_lockout", 0):
            raise ValueError("account_lockout_max must be at least account_lockout")
        return value

    @field_validator("ip_lockout_max")
    @classmethod
    def _ip_cap(cls, value: float, info: Any) -> float:
        if value < info.data.get("ip_lockout", 0):
            raise ValueError("ip_lockout_max must be at least ip_lockout")
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
    accounts: AccountsConfig = AccountsConfig()


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


class ClusterConfig(_Model):
    """The secret gateway<->service links prove at open (docs/security.md)."""

    #: the cluster secret (>= 16 characters); if unset, read/created at ``secret_file``
    secret: SecretStr | None = None
    secret_file: str = ".netbus/cluster_secret"


#: names a ``[services.<name>]`` table cannot take: the built-in roles of ``netbus up`` and
#: their routes (a custom service would be confused with them in logs, READY lines, health)
RESERVED_SERVICE_NAMES = frozenset({"auth", "center", "gateway", "talkroom", "up", "web"})
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: ``package.module:attr`` (the attribute may be dotted: ``mod:Class.factory``)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^{_DOTTED}:{_DOTTED}$")


def check_target(value: str) -> str:
    """``value`` if it is a ``package.module:attr`` import path.

    Raises:
        ValueError: it is not (the message shows the expected form).
    """
    if not _TARGET.match(value):
        raise ValueError(f"{value!r} is not an import path of the form package.module:attr")
    return value


def _route_host(host: str) -> str:
    """Where a gateway on this machine reaches a service bound to ``host``."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


class ServiceConfig(_Model):
    """``[services.<name>]``: a service of your own, run by ``netbus up`` and routed by the
    gateway (docs/services.md §9). ``settings`` is free-form: it is handed to the service's
    class or factory as keyword arguments; every other key is checked here.
    """

    module: str  #: ``package.module:attr``, what `netbus serve` runs
    stype: int = Field(ge=1, le=0xFFFF)
    host: str = "127.0.0.1"  #: where its gateway listener binds
    port: int = Field(ge=1, le=65535)  #: the first instance's port; instance i: port + i
    instances: int = Field(1, ge=1, le=64)  #: processes ``netbus up`` starts
    policy: Literal["hash", "primary"] = "hash"  #: how the gateway spreads users (scaling.md)
    public: bool = False  #: players reach it without logging in
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(0, ge=0, le=65535)  #: instance i: admin_port + i; 0 = free port
    settings: dict[str, Any] = Field(default_factory=dict)  #: the service's own keys

    _module = field_validator("module")(check_target)

    @model_validator(mode="after")
    def _ports_fit(self) -> ServiceConfig:
        last = self.instances - 1
        if self.port + last > 65535 or (self.admin_port and self.admin_port + last > 65535):
            raise ValueError(f"{self.instances} instances do not fit below port 65536")
        return self

    @property
    def ports(self) -> list[int]:
        """The gateway port of each instance."""
        return [self.port + i for i in range(self.instances)]

    @property
    def admin_ports(self) -> list[int]:
        """The admin HTTP port of each instance (0: a free one, announced when ready)."""
        return [self.admin_port + i if self.admin_port else 0 for i in range(self.instances)]

    def route(self) -> ServiceRoute:
        """The gateway route to this service's instances on this machine."""
        host = _route_host(self.host)
        return ServiceRoute(
            stype=self.stype,
            addresses=[f"{host}:{port}" for port in self.ports],
            policy=self.policy,
            public=self.public,
        )


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
    cluster: ClusterConfig = ClusterConfig()
    log: LogConfig = LogConfig()
    #: custom services: ``netbus up`` runs them and the gateway routes to them
    services: dict[str, ServiceConfig] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        for name in value:
            if not _SERVICE_NAME.match(name):
                raise ValueError(
                    f"service name {name!r}: 1-32 characters of a-z, 0-9, _ and -, "
                    "starting with a letter"
                )
            if name in RESERVED_SERVICE_NAMES:
                raise ValueError(f"service name {name!r} is taken by a built-in role")
        return value

    @model_validator(mode="after")
    def _derive_routes(self) -> Settings:
        """``[gateway.services]`` gets a route for each ``[services.<name>]`` (one place to
        edit); an explicit ``[gateway.services.<name>]`` of the same name overrides it."""
        if not self.services:
            return self
        gateway = self.gateway
        explicit = "services" in gateway.model_fields_set
        routes = dict(gateway.services)
        for name, service in self.services.items():
            given = routes.get(name) if explicit else None
            if given is None:
                routes[name] = service.route()
            elif given.stype != service.stype:
                raise ValueError(
                    f"services.{name}.stype is {service.stype} but gateway.services.{name}"
                    f".stype is {given.stype}"
                )
        by_stype: dict[int, str] = {}
        for name, route in routes.items():
            other = by_stype.setdefault(route.stype, name)
            if other != name:
                raise ValueError(f"services {other!r} and {name!r} share stype {route.stype}")
        # Settings are frozen: the derived routes replace the section before anyone reads it.
        object.__setattr__(self, "gateway", gateway.model_copy(update={"services": routes}))
        return self

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
