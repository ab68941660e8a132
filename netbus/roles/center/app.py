"""The center role: the auth service over SQL storage, behind a gateway listener.

With ``[redis] url`` set, each successful login also caches the account's profile in Redis
(``<prefix>user:<uid>``, `netbus.registry.ProfileCache`) before the reply leaves.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from netbus.cluster import cluster_secret
from netbus.config import Settings
from netbus.errors import ConfigError
from netbus.metrics import Metrics
from netbus.roles.center.auth import AuthService
from netbus.service.server import ServiceServer
from netbus.storage import AccountStore, create_engine, redact_url, upgrade

__all__ = ["CenterServer", "load_pepper"]

log = logging.getLogger("netbus.center")


def load_pepper(settings: Settings) -> bytes:
    """The guest-key hashing secret: from config/env, else a file created on first start."""
    cfg = settings.center
    if cfg.pepper is not None:
        value = cfg.pepper.get_secret_value()
        if len(value) < 16:
            raise ConfigError("center.pepper must be at least 16 characters")
        return value.encode()
    path = Path(cfg.pepper_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        log.info("created a new guest-key pepper at %s", path)
    value = path.read_text().strip()
    if len(value) < 16:
        raise ConfigError(f"pepper file {path} holds fewer than 16 characters")
    return value.encode()


class CenterServer(ServiceServer):
    """`ServiceServer` with the auth service; owns the database engine."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.engine = create_engine(settings.center.database_url)
        self.store = AccountStore(self.engine, load_pepper(settings))
        self.redis: Any = None  #: redis.asyncio client of the profile cache, if configured
        on_login = None
        if settings.redis.url:
            from netbus.registry import ProfileCache, redis_client

            self.redis = redis_client(settings.redis.url, timeout=settings.redis.timeout)
            self.profiles = ProfileCache(
                self.redis,
                prefix=settings.redis.prefix,
                ttl=settings.redis.profile_ttl or None,
                timeout=min(0.5, settings.redis.timeout),
            )
            on_login = self.profiles.store
        super().__init__(
            [AuthService(self.store, on_login=on_login)],
            host=settings.center.host,
            port=settings.center.port,
            metrics=metrics or Metrics("center"),
            name="center",
            cluster_secret=cluster_secret(settings),
        )

    async def start(self) -> None:
        url = self.settings.center.database_url
        if self.settings.center.migrate_on_start:
            await upgrade(url)
        log.info("center: accounts in %s", redact_url(url))
        await super().start()

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        await super().close(drain_timeout=drain_timeout)
        await self.engine.dispose()
        if self.redis is not None:
            await self.redis.aclose()
