"""Alembic environment for netbus (async template, batch mode), driven from netbus.storage.migrate.

Why it looks like this: there is no alembic.ini. :func:`netbus.storage.migrate.upgrade` builds
the ``Config`` in code and hands the database URL over in ``config.attributes["url"]`` (not
through ``ConfigParser``, which would choke on ``%`` in an encoded password and keep the
password in the config). The engine comes from :func:`netbus.storage.create_engine`, so a
migration sees the same SQLite pragmas and MySQL settings as the server. ``render_as_batch``
lets the same migration ALTER tables on SQLite, which cannot ALTER most things in place.
Logging is left alone: the application configured it.

Several processes may migrate at once (every center server does on start), so a run first
takes a database-wide lock: ``GET_LOCK`` on MySQL/MariaDB, and on SQLite one write
transaction (``BEGIN IMMEDIATE``) around the whole run. The second runner waits, then finds
the database at head and does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from netbus.storage.engine import create_engine
from netbus.storage.errors import StorageError
from netbus.storage.schema import metadata

__all__: list[str] = []

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass one to netbus.storage.upgrade(url)")
    return str(url)


def run_migrations_offline() -> None:
    """Emit the migration SQL as a script instead of running it (``--sql`` mode)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


#: Seconds a MySQL/MariaDB runner waits for another one to finish.
LOCK_TIMEOUT = 60


@contextmanager
def exclusive(connection: Connection) -> Iterator[None]:
    """Hold the database's migration lock (see the module docstring) while migrating."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # Writers queue on busy_timeout; alembic sees the open transaction and leaves the
        # commit to us, so the version check and every step happen under one write lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    elif dialect in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(CONCAT('netbus_migrate.', DATABASE()), :timeout)"),
            {"timeout": LOCK_TIMEOUT},
        ).scalar()
        connection.commit()  # the lock is per session; alembic must begin its own transaction
        if got != 1:
            raise StorageError(f"upgrade: another migration held the lock for {LOCK_TIMEOUT}s")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(CONCAT('netbus_migrate.', DATABASE()))"))
            connection.commit()
    else:
        yield


def do_run_migrations(connection: Connection) -> None:
    with exclusive(connection):
        _run_migrations(connection)


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a sync Connection handed in: the caller does the locking
        _run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
