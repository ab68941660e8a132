"""Async engine factory: one place that knows the per-backend settings.

Why a factory instead of ``create_async_engine`` at each call site: the settings that make a
backend behave in production are easy to forget and differ per dialect (STACK.md "Database"):

* SQLite (``sqlite+aiosqlite:///path``): WAL so readers never block the writer,
  ``synchronous=NORMAL`` (durable at checkpoints, fast commits), a ``busy_timeout`` so writers
  from several processes queue instead of failing at once, and foreign keys on. Pragmas are
  per connection, hence the ``connect`` event. The parent directory is created, so a fresh
  install can point at ``.netbus/gs.db``.
* MySQL/MariaDB (``mysql+asyncmy://`` or ``mariadb+asyncmy://``): ``pool_pre_ping`` so a
  connection killed by the server (``wait_timeout``, restart, ``KILL``) is replaced on checkout
  instead of failing a login, ``pool_recycle`` below any sane ``wait_timeout``, a pool sized
  for a login burst, and a short pool wait so an exhausted pool fails fast.

Every engine hides SQL parameters from logs and exception text (``hide_parameters``): the
parameters of a login are credential digests. Use :func:`redact_url` whenever a URL is logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from netbus.errors import ConfigError

__all__ = [
    "MYSQL_POOL_OPTIONS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "redact_url",
]

#: Default SQLite lock wait; a ``?timeout=<seconds>`` URL query overrides it.
SQLITE_BUSY_TIMEOUT_MS = 5000

#: Pool settings for MySQL/MariaDB. ``pool_recycle`` stays well below the server's
#: ``wait_timeout`` (8 h by default, often lowered to minutes behind proxies).
MYSQL_POOL_OPTIONS: dict[str, Any] = {
    "pool_pre_ping": True,
    "pool_recycle": 1800,
    "pool_size": 10,
    "max_overflow": 20,
    "pool_timeout": 10,
}

_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create an async engine for a SQLite or MySQL/MariaDB URL with netbus' settings.

    Nothing connects yet: the first query opens the first connection, so an unreachable
    database shows up as :class:`~netbus.storage.StorageError` from the store, not here.

    Args:
        url: ``sqlite+aiosqlite:///path/to/gs.db``, ``mysql+asyncmy://user:pw@host/db`` or
            ``mariadb+asyncmy://...``. Driver options go in the query string
            (e.g. ``?connect_timeout=2`` for asyncmy, ``?timeout=0.5`` for SQLite's lock wait).
        echo: log every statement (parameters stay hidden).

    Returns:
        The engine. The caller owns it and must ``await engine.dispose()`` at shutdown.

    Raises:
        ConfigError: the URL does not parse, names an unsupported backend or a sync driver.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise ConfigError(f"invalid database URL {redact_url(url)}") from err
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _create_sqlite_engine(parsed, echo=echo)
        if backend in ("mysql", "mariadb"):
            return create_async_engine(
                parsed, echo=echo, hide_parameters=True, **MYSQL_POOL_OPTIONS
            )
    except (exc.ArgumentError, exc.InvalidRequestError, exc.NoSuchModuleError, ValueError) as err:
        raise ConfigError(f"unusable database URL {redact_url(url)}: {err}") from err
    raise ConfigError(
        f"unsupported database backend {backend!r} in {redact_url(url)}: "
        "use sqlite+aiosqlite, mysql+asyncmy or mariadb+asyncmy"
    )


def redact_url(url: str | URL) -> str:
    """Render a database URL for logs: the password (and secret-looking query values) hidden.

    Never raises: a string that does not parse as a URL comes back as a placeholder, since it
    may still contain a password.
    """
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparseable database URL>"
    if any(_SECRET_QUERY_KEY.search(key) for key in parsed.query):
        query = {
            key: ("redacted" if _SECRET_QUERY_KEY.search(key) else value)
            for key, value in parsed.query.items()
        }
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=True)


def _create_sqlite_engine(url: URL, *, echo: bool) -> AsyncEngine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    busy_ms = SQLITE_BUSY_TIMEOUT_MS
    if "timeout" in url.query:
        busy_ms = max(0, int(float(str(url.query["timeout"])) * 1000))
    engine = create_async_engine(url, echo=echo, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # PRAGMA takes no bound parameters; busy_ms is an int computed above.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return engine
