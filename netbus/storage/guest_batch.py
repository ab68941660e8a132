"""Guest login with group commit: many concurrent logins, one transaction, one connection.

`GuestLoginBatcher.guest_login` has the semantics of `AccountStore.guest_login` (create on an
unknown key, only the key's HMAC stored, disabled accounts returned as such, one ``created``
per key however many logins race) at a fraction of the cost per login:

* **Group commit.** Logins queue; a flusher task takes up to ``max_batch`` of them and runs
  them on a dedicated connection (`netbus.storage.rawdb`): one SELECT of every digest
  (``IN (...)``), one UPDATE of ``last_login_at`` for the known ones, one multi-row
  ``INSERT IGNORE ... RETURNING`` for the unknown ones. On MariaDB each of these statements
  is atomic by itself and the connection runs in autocommit mode, so a batch of new players
  is two round trips and one log flush; on SQLite the batch is one ``BEGIN IMMEDIATE``
  transaction. Logins that arrive meanwhile form the next batch, which starts as soon as a
  connection is free: an idle server adds no delay (a lone login is a batch of one), a busy
  one amortises each round trip and each commit over the whole batch. With ``connections``
  > 1, logins waiting together are shared out over the free connections.
* **Several processes, one database.** Nothing about uid allocation is assumed in-process:
  the database assigns uids and ``RETURNING`` reports them (on MySQL, which lacks it, rows
  are inserted one by one inside one transaction and read back through ``lastrowid``). A key
  that another process inserts concurrently is ignored by ``INSERT IGNORE`` (which waits for
  that insert's lock) and read back afterwards, so it is one account, and only the process
  that inserted it says ``created``. InnoDB deadlocks are retried (up to 3 attempts); the
  UPDATE runs before the INSERT so that a retry never repeats a write that matters.
* **Errors stay per login.** A row whose uid is out of range fails its own login only (a new
  one is deleted again at once), and so does a key whose account cannot be found. When a
  batch itself fails (the database is down, hangs past ``timeout``, or refuses a statement),
  every login waiting at that moment is answered with that `StorageError`, and the
  connection is replaced before its next batch. A connection that died while idle (server
  restart, ``wait_timeout``, ``KILL``) is noticed by the first statement, and the batch is
  retried once on a fresh connection.

A login waits for a free connection, then its own batch: at most about twice ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from netbus.errors import ConfigError
from netbus.storage.accounts import GUEST_NICK_PREFIX, Account, hash_guest_key
from netbus.storage.errors import (
    StorageError,
    describe_db_error,
    describe_driver_error,
    driver_error_code,
)
from netbus.storage.rawdb import RawConnection, Row, open_raw
from netbus.storage.schema import MAX_UID, uinfo

__all__ = ["GuestLoginBatcher"]

Outcome = tuple[Account, bool] | StorageError
_Waiter = tuple[str, "asyncio.Future[tuple[Account, bool]]"]

_COLUMNS = ("uid", "unick", "usex", "uface", "uvip", "vip_endtime", "is_guest", "status", "uname")
#: the other columns (uface, uvip, vip_endtime, status) take their server default, 0
_INSERT_COLUMNS = ("unick", "usex", "guest_key", "is_guest", "created_at", "last_login_at")
_DEADLOCK = 1213
_ATTEMPTS = 3
#: driver errors about the statement or the data, not the connection
_LOGIC_ERRORS = frozenset({"IntegrityError", "ProgrammingError", "DataError", "NotSupportedError"})


class _Lane:
    """One connection of the batcher and the task flushing batches on it."""

    __slots__ = ("busy", "conn", "task")

    def __init__(self) -> None:
        self.conn: RawConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.busy = False


class GuestLoginBatcher:
    """Guest logins in group commits. See the module docstring.

    Create it on the event loop that uses it; `close` it before disposing the engine.

    Args:
        engine: from :func:`netbus.storage.create_engine`, schema migrated. One connection
            of its pool is held while the batcher runs.
        pepper: the guest-key pepper (as for `AccountStore`).
        max_batch: logins per transaction at most.
        max_waiting: logins allowed to queue; more fail at once with `StorageError`.
        timeout: upper bound in seconds for one batch (``None``: none).
        clock: unix time in seconds (``created_at``, ``last_login_at``).
        returning: force (True) or avoid (False) ``INSERT ... RETURNING``; default: whatever
            the server supports.
        connections: connections (each with its own flusher) at most.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        pepper: bytes,
        *,
        max_batch: int = 128,
        max_waiting: int = 10_000,
        timeout: float | None = 10.0,
        clock: Callable[[], float] = time.time,
        returning: bool | None = None,
        connections: int = 1,
    ) -> None:
        if not isinstance(pepper, bytes | bytearray) or not pepper:
            raise ConfigError("the guest-key pepper must be non-empty bytes")
        if max_batch < 1 or max_waiting < 1 or connections < 1:
            raise ValueError("max_batch, max_waiting and connections must be at least 1")
        self._engine = engine
        self._pepper = bytes(pepper)
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._timeout = timeout
        self._clock = clock
        self._returning = returning
        self._queue: list[_Waiter] = []
        self._lanes = [_Lane() for _ in range(connections)]
        self._closed = False
        self._sql: dict[tuple[str, int], str] = {}
        #: counters for metrics and benchmarks
        self.stats = {
            "logins": 0,
            "batches": 0,
            "largest_batch": 0,
            "failed_batches": 0,
            "retries": 0,
        }

    async def guest_login(self, guest_key: str) -> tuple[Account, bool]:
        """Log in with a guest key, creating the account if the key is new.

        Same contract as `AccountStore.guest_login`.

        Raises:
            StorageError: the database failed, too many logins are waiting, or the batcher
                is closed.
        """
        if self._closed:
            raise StorageError("guest_login: the login batcher is closed")
        if len(self._queue) >= self._max_waiting:
            raise StorageError("guest_login: too many logins waiting for the database")
        future: asyncio.Future[tuple[Account, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((hash_guest_key(self._pepper, guest_key), future))
        for lane in self._lanes:
            if lane.task is None:  # an idle connection: start it now, no waiting
                lane.task = asyncio.get_running_loop().create_task(
                    self._flush(lane), name="guest-login-batcher"
                )
                break
        return await future

    async def close(self) -> None:
        """Answer every waiting login with `StorageError`, give the connections back.

        Idempotent.
        """
        self._closed = True
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        self._fail(self._take_all(), StorageError("guest_login: the login batcher is closed"))
        for lane in self._lanes:
            await self._drop_connection(lane, broken=False)

    # ----------------------------------------------------------------------------- flushing
    async def _flush(self, lane: _Lane) -> None:
        try:
            while self._queue:
                # Share the queue with the connections that started alongside this one.
                starting = sum(1 for x in self._lanes if x.task is not None and not x.busy)
                size = min(self._max_batch, -(-len(self._queue) // max(1, starting)))
                batch = self._queue[:size]
                del self._queue[:size]
                lane.busy = True
                try:
                    await self._flush_one(lane, batch)
                finally:
                    lane.busy = False
        except asyncio.CancelledError:
            self._fail(self._take_all(), StorageError("guest_login: the login batcher is closed"))
            raise
        finally:
            lane.task = None

    async def _flush_one(self, lane: _Lane, batch: list[_Waiter]) -> None:
        waiting: dict[str, list[asyncio.Future[tuple[Account, bool]]]] = {}
        for digest, future in batch:
            waiting.setdefault(digest, []).append(future)
        self.stats["batches"] += 1
        self.stats["logins"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        try:
            outcomes = await self._run(lane, list(waiting))
        except asyncio.CancelledError:
            self._fail(batch, StorageError("guest_login: the login batcher is closed"))
            raise
        except BaseException as err:
            self.stats["failed_batches"] += 1
            error = err if isinstance(err, StorageError) else StorageError(f"guest_login: {err!r}")
            self._fail([*batch, *self._take_all()], error)  # an outage: answer everyone now
            return
        for digest, futures in waiting.items():
            outcome = outcomes.get(digest)
            if outcome is None:  # pragma: no cover - _run answers every digest
                outcome = StorageError("guest_login: no outcome for a login")
            for i, future in enumerate(futures):
                if future.done():  # the caller gave up
                    continue
                if isinstance(outcome, StorageError):
                    future.set_exception(outcome)
                else:  # the first of several logins of one new key made it; not the others
                    future.set_result(outcome if i == 0 else (outcome[0], False))

    def _take_all(self) -> list[_Waiter]:
        queued, self._queue = self._queue, []
        return queued

    @staticmethod
    def _fail(waiters: list[_Waiter], error: StorageError) -> None:
        for _, future in waiters:
            if not future.done():
                future.set_exception(error)

    # ------------------------------------------------------------------------ one batch
    async def _run(self, lane: _Lane, digests: list[str]) -> dict[str, Outcome]:
        """Run one batch, retrying deadlocks and a connection that died while idle."""
        for attempt in range(1, _ATTEMPTS + 1):
            fresh = lane.conn is None
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await self._connection(lane)
                    return await self._transaction(conn, digests)
            except TimeoutError as err:
                await self._drop_connection(lane, broken=True)
                raise StorageError(
                    f"guest_login: no answer from the database within {self._timeout}s"
                ) from err
            except StorageError:
                raise
            except Exception as err:
                code = driver_error_code(err)
                logic = type(err).__name__ in _LOGIC_ERRORS
                retry = code == _DEADLOCK or (not fresh and not logic)
                if code == _DEADLOCK or logic:
                    await self._rollback(lane)
                else:
                    await self._drop_connection(lane, broken=True)
                if attempt == _ATTEMPTS or not retry:
                    raise StorageError(f"guest_login: {describe_driver_error(err)}") from err
                self.stats["retries"] += 1
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self, lane: _Lane) -> RawConnection:
        if lane.conn is None:
            try:
                lane.conn = await open_raw(self._engine, returning=self._returning)
            except Exception as err:
                raise StorageError(f"guest_login: {describe_db_error(err)}") from err
        return lane.conn

    @staticmethod
    async def _drop_connection(lane: _Lane, *, broken: bool) -> None:
        conn, lane.conn = lane.conn, None
        if conn is not None:
            await conn.close(broken=broken)

    async def _rollback(self, lane: _Lane) -> None:
        if lane.conn is not None:
            try:
                await lane.conn.rollback()
            except Exception:
                await self._drop_connection(lane, broken=True)

    async def _transaction(self, conn: RawConnection, digests: list[str]) -> dict[str, Outcome]:
        now = int(self._clock())
        outcomes: dict[str, Outcome] = {}
        await conn.begin()
        found = await self._select(conn, digests)
        known = [_uid(row) for row in found.values()]
        known = [uid for uid in known if 1 <= uid <= MAX_UID]
        if known:  # first: touching is idempotent, so a retry after it is harmless
            await conn.execute(self._in_sql("touch", len(known), conn), [now, *known])
        missing = [d for d in digests if d not in found]
        created: dict[str, Account] = {}
        if missing:
            created = await self._insert(conn, missing, now, outcomes)
        await conn.commit()
        for digest, row in found.items():
            outcomes[digest] = _loaded(row)
        for digest, account in created.items():
            outcomes[digest] = (account, True)
        lost = [d for d in digests if d not in outcomes]
        if lost:  # another process inserted these keys meanwhile: read them back
            await conn.begin()
            again = await self._select(conn, lost)
            uids = [_uid(row) for row in again.values()]
            uids = [uid for uid in uids if 1 <= uid <= MAX_UID]
            if uids:
                await conn.execute(self._in_sql("touch", len(uids), conn), [now, *uids])
            await conn.commit()
            for digest in lost:
                reread = again.get(digest)
                outcomes[digest] = (
                    _loaded(reread)
                    if reread is not None
                    else StorageError("guest_login: duplicate guest key, but no account has it")
                )
        return outcomes

    async def _select(self, conn: RawConnection, digests: list[str]) -> dict[str, Row]:
        rows = await conn.fetch(self._in_sql("select", len(digests), conn), digests)
        return {row[len(_COLUMNS)]: row for row in rows}

    async def _insert(
        self, conn: RawConnection, digests: list[str], now: int, outcomes: dict[str, Outcome]
    ) -> dict[str, Account]:
        profiles = {
            d: (f"{GUEST_NICK_PREFIX}{secrets.randbelow(1_000_000):06d}", secrets.randbelow(2))
            for d in digests
        }
        uids: dict[str, int] = {}
        if conn.returning:
            params: list[Any] = []
            for d in digests:
                params.extend(_insert_values(d, *profiles[d], now))
            sql = self._insert_sql(len(digests), conn, True)
            for uid, digest in await conn.fetch(sql, params):
                uids[digest] = int(uid)
        else:
            sql = self._insert_sql(1, conn, False)
            for d in digests:
                uid = await conn.insert_one(sql, _insert_values(d, *profiles[d], now))
                if uid is not None:
                    uids[d] = uid
        bad = [uid for uid in uids.values() if not 1 <= uid <= MAX_UID]
        if bad:  # past the wire's uid range: undo those rows, fail those logins only
            await conn.execute(self._in_sql("delete", len(bad), conn), bad)
            for digest, uid in list(uids.items()):
                if uid in bad:
                    del uids[digest]
                    outcomes[digest] = StorageError(
                        f"guest_login: the database assigned uid {uid}, not in 1..{MAX_UID}"
                    )
        return {
            d: Account(uid, profiles[d][0], profiles[d][1], 0, 0, 0, True, 0, None)
            for d, uid in uids.items()
        }

    # ------------------------------------------------------------------------------- SQL
    def _in_sql(self, kind: str, n: int, conn: RawConnection) -> str:
        sql = self._sql.get((kind, n))
        if sql is None:
            marks = ", ".join([conn.placeholder] * n)
            table, p = uinfo.name, conn.placeholder
            if kind == "select":
                columns = ", ".join((*_COLUMNS, "guest_key"))
                sql = f"SELECT {columns} FROM {table} WHERE guest_key IN ({marks})"
            elif kind == "touch":
                sql = f"UPDATE {table} SET last_login_at = {p} WHERE uid IN ({marks})"
            else:
                sql = f"DELETE FROM {table} WHERE uid IN ({marks})"
            self._sql[(kind, n)] = sql
        return sql

    def _insert_sql(self, n: int, conn: RawConnection, returning: bool) -> str:
        key = ("insert+returning" if returning else "insert", n)
        sql = self._sql.get(key)
        if sql is None:
            row = "(" + ", ".join([conn.placeholder] * len(_INSERT_COLUMNS)) + ")"
            sql = (
                f"{conn.insert_ignore} INTO {uinfo.name} ({', '.join(_INSERT_COLUMNS)})"
                f" VALUES {', '.join([row] * n)}"
            )
            if returning:
                sql += " RETURNING uid, guest_key"
            self._sql[key] = sql
        return sql


def _insert_values(digest: str, unick: str, usex: int, now: int) -> Sequence[Any]:
    return (unick, usex, digest, 1, now, now)


def _uid(row: Row) -> int:
    return int(row[0])


def _loaded(row: Row) -> Outcome:
    uid = int(row[0])
    if not 1 <= uid <= MAX_UID:
        return StorageError(f"account uid {uid} is outside 1..{MAX_UID}")
    try:
        account = Account(
            uid=uid,
            unick=row[1],
            usex=int(row[2]),
            uface=int(row[3]),
            uvip=int(row[4]),
            vip_endtime=int(row[5]),
            is_guest=bool(row[6]),
            status=int(row[7]),
            username=row[8],
        )
    except (TypeError, ValueError) as err:
        return StorageError(f"guest_login: unreadable account row ({type(err).__name__})")
    return account, False
