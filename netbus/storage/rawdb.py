"""A dedicated driver-level connection for hot statements, taken from an engine's pool.

Why: through SQLAlchemy's async layer every statement costs a pool checkout, a greenlet hop,
statement compilation (cached) and result processing; the peers benchmark measured 68 % of
the center's CPU per guest login there. The hot path (`netbus.storage.guest_batch`) keeps
SQLAlchemy for connecting (URL, SQLite pragmas, MySQL settings) and for the schema, but holds
one connection out of the pool and talks to the driver underneath it (asyncmy or aiosqlite)
with SQL text prepared once per batch size.

`RawConnection` is the small interface both drivers get: ``begin``/``commit``/``rollback``,
``fetch`` (rows) and ``execute`` (row count), ``insert_one`` (the new row id or ``None`` when
the insert was ignored). Parameters are positional, in the driver's placeholder style
(`RawConnection.placeholder`).

Autocommit: on MySQL/MariaDB with ``INSERT ... RETURNING`` every statement of a guest-login
batch is atomic on its own (the batch needs no transaction around it, see `guest_batch`), so
the connection runs in autocommit mode, which saves the COMMIT round trip: ``begin`` and
``commit`` do nothing then. The mode is switched once when the connection is opened and
switched back before it returns to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["RawConnection", "open_raw"]

Row = Sequence[Any]


class RawConnection(Protocol):
    """What the hot path needs of a driver connection. See the module docstring."""

    #: ``%s`` (asyncmy) or ``?`` (sqlite3)
    placeholder: str
    #: the server supports ``INSERT ... RETURNING`` (MariaDB >= 10.5, SQLite >= 3.35)
    returning: bool
    #: ``INSERT IGNORE`` (MySQL) or ``INSERT OR IGNORE`` (SQLite)
    insert_ignore: str
    #: each statement commits itself; ``begin`` and ``commit`` do nothing
    autocommit: bool

    async def begin(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]: ...
    async def execute(self, sql: str, params: Sequence[Any]) -> int: ...
    async def insert_one(self, sql: str, params: Sequence[Any]) -> int | None: ...
    async def close(self, *, broken: bool) -> None: ...


async def open_raw(engine: AsyncEngine, *, returning: bool | None = None) -> RawConnection:
    """Check a connection out of ``engine``'s pool for exclusive, driver-level use.

    Args:
        engine: the engine whose pool (and connect settings) to use.
        returning: use ``INSERT ... RETURNING`` (True), avoid it (False), or use it when the
            server supports it (None). On MySQL/MariaDB it also selects autocommit mode.

    Close it with ``close(broken=...)``: a broken connection is invalidated (dropped from
    the pool), a good one goes back (rolled back by the pool).

    Raises:
        sqlalchemy.exc.SQLAlchemyError, OSError: connecting failed.
    """
    conn = await engine.connect()
    try:
        fairy = await conn.get_raw_connection()
        driver = fairy.driver_connection
        if driver is None:  # pragma: no cover - a checked-out connection always has one
            raise RuntimeError("the pool handed out a connection without a driver connection")
        dialect = engine.dialect
        supported = bool(getattr(dialect, "insert_returning", False))
        use = supported if returning is None else returning
        if dialect.name == "sqlite":
            return _Sqlite(conn, driver, returning=use)
        raw = _Mysql(conn, driver, returning=use)
        if use:
            await driver.autocommit(True)
            raw.autocommit = True
        return raw
    except BaseException:
        await conn.close()
        raise


class _Base:
    autocommit = False

    def __init__(self, conn: AsyncConnection, driver: Any, *, returning: bool) -> None:
        self._conn = conn
        self._driver = driver
        self.returning = returning

    async def commit(self) -> None:
        if not self.autocommit:
            await self._driver.commit()

    async def rollback(self) -> None:
        if not self.autocommit:
            await self._driver.rollback()

    async def close(self, *, broken: bool) -> None:
        # Bounded: closing a connection whose server hangs must not hang the caller.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                if not broken and self.autocommit:
                    try:  # the pool's other users expect the driver's default
                        await self._driver.autocommit(False)
                    except Exception:
                        broken = True
                if broken:
                    await self._conn.invalidate()
                await self._conn.close()


def _quiet_cursor_class() -> type:
    """asyncmy's cursor, minus its server-warning log.

    After a statement with warnings, asyncmy runs ``SHOW WARNINGS`` (one more round trip) and
    logs each text at WARNING. ``INSERT IGNORE`` turns every duplicate key into a warning
    whose text quotes the key, here a guest-key digest, which must not reach the logs.
    """
    from asyncmy.cursors import Cursor

    class QuietCursor(Cursor):
        async def _show_warnings(self, conn: Any) -> None:
            return None

    return QuietCursor


class _Mysql(_Base):
    placeholder = "%s"
    insert_ignore = "INSERT IGNORE"

    def __init__(self, conn: AsyncConnection, driver: Any, *, returning: bool) -> None:
        super().__init__(conn, driver, returning=returning)
        self._cursor_class = _quiet_cursor_class()

    def _cursor(self) -> Any:
        return self._driver.cursor(self._cursor_class)

    async def begin(self) -> None:
        pass  # without autocommit, the first statement opens the transaction

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        cursor = self._cursor()
        try:
            await cursor.execute(sql, params)
            rows: Sequence[Row] = await cursor.fetchall()
            return rows
        finally:
            await cursor.close()

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        cursor = self._cursor()
        try:
            await cursor.execute(sql, params)
            return int(cursor.rowcount)
        finally:
            await cursor.close()

    async def insert_one(self, sql: str, params: Sequence[Any]) -> int | None:
        cursor = self._cursor()
        try:
            await cursor.execute(sql, params)
            return int(cursor.lastrowid) if cursor.rowcount == 1 else None
        finally:
            await cursor.close()


class _Sqlite(_Base):
    placeholder = "?"
    insert_ignore = "INSERT OR IGNORE"

    async def begin(self) -> None:
        # Take the write lock up front (waiting up to busy_timeout), so the batch's read
        # and writes see one state of the database, as one MySQL transaction would.
        await self._driver.execute("BEGIN IMMEDIATE")

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        rows: Sequence[Row] = list(await self._driver.execute_fetchall(sql, params))
        return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        async with self._driver.execute(sql, params) as cursor:
            return int(cursor.rowcount)

    async def insert_one(self, sql: str, params: Sequence[Any]) -> int | None:
        async with self._driver.execute(sql, params) as cursor:
            return int(cursor.lastrowid) if cursor.rowcount == 1 else None
