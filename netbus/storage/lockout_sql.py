"""`AttemptLimiter` over the ``login_failures`` table: lockout shared by every center.

Why an upsert: counting a failure must be atomic across processes without reading first. One
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite) / ``ON DUPLICATE KEY UPDATE`` (MySQL/MariaDB)
either creates the row with one failure or increments the existing count (restarting at 1 when
the previous count was forgotten). It takes the row's write lock, so the SELECT of the new
count and the UPDATE of the lock deadline that follow in the same transaction see no one
else's change. On MySQL the assignments run left to right, so ``failures`` is computed before
``forget_at`` changes (SQLite evaluates every assignment against the old row anyway).

This is the one dialect-specific statement of the package (with `guest_batch`'s SQL). Rows
of keys that neither count nor lock any more are deleted by `SqlAttemptLimiter.purge` in
bounded chunks. Times are unix milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, case, delete, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from netbus.storage.errors import storage_errors
from netbus.storage.lockout import LockoutPolicy, check_key
from netbus.storage.schema import login_failures

__all__ = ["SqlAttemptLimiter"]

_f = login_failures.c


class SqlAttemptLimiter:
    """`AttemptLimiter` in the database (`netbus.storage.lockout` has the rules).

    Args:
        engine: from :func:`netbus.storage.create_engine`, schema migrated.
        policy: the lockout policy. Several limiters may share the table as long as their
            keys differ (callers namespace them).
        clock: unix time in seconds; injected for tests.
        timeout: upper bound in seconds for one call.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        policy: LockoutPolicy,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float | None = 10.0,
    ) -> None:
        self.policy = policy
        self._engine = engine
        self._clock = clock
        self._timeout = timeout
        self._window_ms = round(policy.window * 1000)
        self._count = _count_statement(engine.dialect.name)
        self._select = select(_f.failures, _f.locked_until).where(_f.subject == bindparam("s"))
        self._lock = (
            update(login_failures)
            .where(_f.subject == bindparam("s"), _f.locked_until < bindparam("until"))
            .values(locked_until=bindparam("until"))
        )
        self._delete = delete(login_failures).where(_f.subject == bindparam("s"))
        stale = (_f.forget_at <= bindparam("now")) & (_f.locked_until <= bindparam("now"))
        self._stale = select(_f.subject).where(stale).limit(bindparam("n"))
        self._delete_stale = delete(login_failures).where(
            _f.subject.in_(bindparam("ss", expanding=True)), stale
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def locked_for(self, key: str) -> float:
        check_key(key)
        now = self._now_ms()
        async with storage_errors("lockout check", self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._select, {"s": key})).first()
        return 0.0 if row is None else max(0, int(row.locked_until) - now) / 1000

    async def record_failure(self, key: str) -> float:
        check_key(key)
        now = self._now_ms()
        params = {"s": key, "now": now, "forget": now + self._window_ms}
        async with storage_errors("lockout count", self._timeout), self._engine.connect() as conn:
            await conn.execute(self._count, params)
            row = (await conn.execute(self._select, {"s": key})).one()
            locked_until = int(row.locked_until)
            lock_ms = round(self.policy.lock_for(int(row.failures)) * 1000)
            if lock_ms and now + lock_ms > locked_until:
                locked_until = now + lock_ms
                await conn.execute(self._lock, {"s": key, "until": locked_until})
            await conn.commit()
        return max(0, locked_until - now) / 1000

    async def reset(self, key: str) -> None:
        check_key(key)
        async with storage_errors("lockout reset", self._timeout), self._engine.connect() as conn:
            await conn.execute(self._delete, {"s": key})
            await conn.commit()

    async def purge(self, *, limit: int = 1000) -> int:
        now = self._now_ms()
        async with storage_errors("lockout purge", self._timeout), self._engine.connect() as conn:
            stale = list((await conn.execute(self._stale, {"now": now, "n": limit})).scalars())
            if not stale:
                return 0
            result = await conn.execute(self._delete_stale, {"ss": stale, "now": now})
            await conn.commit()
        return int(result.rowcount)


def _count_statement(dialect: str) -> Any:
    """The upsert that counts one failure (see the module docstring)."""
    values = {
        "subject": bindparam("s"),
        "failures": 1,
        "forget_at": bindparam("forget"),
        "locked_until": 0,
    }
    failures = case((_f.forget_at <= bindparam("now"), 1), else_=_f.failures + 1)
    if dialect == "sqlite":
        return (
            sqlite.insert(login_failures)
            .values(values)
            .on_conflict_do_update(
                index_elements=[_f.subject],
                set_={"failures": failures, "forget_at": bindparam("forget")},
            )
        )
    if dialect in ("mysql", "mariadb"):
        return (
            mysql.insert(login_failures)
            .values(values)
            .on_duplicate_key_update([("failures", failures), ("forget_at", bindparam("forget"))])
        )
    raise ValueError(f"unsupported database dialect {dialect!r}")  # pragma: no cover
