"""`TokenStore` over the ``session_tokens`` table (SQLite or MySQL/MariaDB).

How rotation stays atomic across any number of center processes: the presented token's row
is read, then consumed with ``UPDATE ... SET used_at = now WHERE digest = ? AND used_at = 0``.
Only one transaction can change that row from 0, so only one presenter sees one changed row
and inserts the successor; every other one sees zero rows, which is a replay, and deletes the
family. The read and the conditional update run in one transaction; on MySQL/MariaDB the
UPDATE is a locking read, so it sees a concurrent winner even under REPEATABLE READ.

Expired rows are deleted by `SqlTokenStore.purge` in bounded chunks (select up to ``limit``
digests by the ``expires_at`` index, delete those): the center calls it periodically.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from netbus.errors import ConfigError
from netbus.storage.errors import AuthRefused, Refusal, storage_errors
from netbus.storage.schema import session_tokens
from netbus.storage.tokens import (
    DEFAULT_TOKEN_TTL,
    IssuedToken,
    TokenInfo,
    check_uid,
    hash_token,
    new_family,
    new_token,
    parse_token,
)

__all__ = ["SqlTokenStore"]

_t = session_tokens.c


class SqlTokenStore:
    """`TokenStore` in the database. See `netbus.storage.tokens` for the rules.

    Args:
        engine: from :func:`netbus.storage.create_engine`, schema migrated.
        pepper: the server secret of the token digests (the guest-key pepper).
        ttl: token lifetime in seconds.
        clock: unix time in seconds; injected for tests.
        timeout: upper bound in seconds for one call (``None``: none).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        pepper: bytes,
        *,
        ttl: int = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        timeout: float | None = 10.0,
    ) -> None:
        if not isinstance(pepper, bytes | bytearray) or not pepper:
            raise ConfigError("the token pepper must be non-empty bytes")
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.ttl = ttl
        self._engine = engine
        self._pepper = bytes(pepper)
        self._clock = clock
        self._timeout = timeout
        self._select = select(_t.uid, _t.family, _t.created_at, _t.expires_at, _t.used_at).where(
            _t.digest == bindparam("d")
        )
        self._consume = (
            update(session_tokens)
            .where(_t.digest == bindparam("d"), _t.used_at == 0)
            .values(used_at=bindparam("now"))
        )
        self._insert = insert(session_tokens)
        self._delete_family = delete(session_tokens).where(_t.family == bindparam("f"))
        self._delete_uid = delete(session_tokens).where(_t.uid == bindparam("u"))
        self._expired = (
            select(_t.digest).where(_t.expires_at <= bindparam("now")).limit(bindparam("n"))
        )
        self._delete_digests = delete(session_tokens).where(
            _t.digest.in_(bindparam("ds", expanding=True)), _t.expires_at <= bindparam("now")
        )

    def _now(self) -> int:
        return int(self._clock())

    async def issue(self, uid: int) -> IssuedToken:
        check_uid(uid)
        async with storage_errors("token issue", self._timeout), self._engine.connect() as conn:
            issued = await self._add(conn, uid, new_family(), self._now())
            await conn.commit()
        return issued

    async def check(self, token: str) -> TokenInfo:
        digest = hash_token(self._pepper, parse_token(token))
        now = self._now()
        async with storage_errors("token check", self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._select, {"d": digest})).first()
            if row is None:
                raise AuthRefused(Refusal.TOKEN_UNKNOWN)
            if row.used_at:
                await self._revoke_family(conn, row.family)
                raise AuthRefused(Refusal.TOKEN_REPLAYED)
            if row.expires_at <= now:
                raise AuthRefused(Refusal.TOKEN_EXPIRED)
            return TokenInfo(int(row.uid), int(row.created_at), int(row.expires_at))

    async def rotate(self, token: str, *, uid: int | None = None) -> IssuedToken:
        digest = hash_token(self._pepper, parse_token(token))
        now = self._now()
        async with storage_errors("token rotate", self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._select, {"d": digest})).first()
            if row is None:
                raise AuthRefused(Refusal.TOKEN_UNKNOWN)
            if uid is not None and int(row.uid) != uid:
                raise AuthRefused(Refusal.TOKEN_WRONG_ACCOUNT)
            if row.used_at:
                await self._revoke_family(conn, row.family)
                raise AuthRefused(Refusal.TOKEN_REPLAYED)
            if row.expires_at <= now:
                raise AuthRefused(Refusal.TOKEN_EXPIRED)
            consumed = await conn.execute(self._consume, {"d": digest, "now": now})
            if consumed.rowcount != 1:  # a concurrent presenter consumed it first
                await conn.rollback()
                await self._revoke_family(conn, row.family)
                raise AuthRefused(Refusal.TOKEN_REPLAYED)
            issued = await self._add(conn, int(row.uid), row.family, now)
            await conn.commit()
        return issued

    async def revoke(self, token: str) -> bool:
        try:
            digest = hash_token(self._pepper, parse_token(token))
        except AuthRefused:
            return False
        async with storage_errors("token revoke", self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._select, {"d": digest})).first()
            if row is None:
                return False
            await self._revoke_family(conn, row.family)
        return True

    async def revoke_uid(self, uid: int) -> int:
        async with storage_errors("token revoke", self._timeout), self._engine.connect() as conn:
            result = await conn.execute(self._delete_uid, {"u": uid})
            await conn.commit()
        return int(result.rowcount)

    async def purge(self, *, limit: int = 1000) -> int:
        now = self._now()
        async with storage_errors("token purge", self._timeout), self._engine.connect() as conn:
            digests = list((await conn.execute(self._expired, {"now": now, "n": limit})).scalars())
            if not digests:
                return 0
            result = await conn.execute(self._delete_digests, {"ds": digests, "now": now})
            await conn.commit()
        return int(result.rowcount)

    async def _add(self, conn: AsyncConnection, uid: int, family: str, now: int) -> IssuedToken:
        token = new_token()
        expires = now + self.ttl
        await conn.execute(
            self._insert,
            {
                "digest": hash_token(self._pepper, token),
                "uid": uid,
                "family": family,
                "created_at": now,
                "expires_at": expires,
                "used_at": 0,
            },
        )
        return IssuedToken(token, uid, now, expires)

    async def _revoke_family(self, conn: AsyncConnection, family: str) -> None:
        await conn.execute(self._delete_family, {"f": family})
        await conn.commit()
