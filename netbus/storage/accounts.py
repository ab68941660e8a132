"""Account queries for guest login (PROTOCOL.md §4.2), over SQLAlchemy Core.

Why it is written this way:

* **The key is a credential, so only its HMAC is stored.** ``hash_guest_key`` is
  HMAC-SHA256 under a server-side pepper: guest keys are random 16-64 character strings, so a
  keyed fast hash is enough (no argon2), and a leaked table without the pepper reveals nothing.
* **Select first, insert only for unknown keys.** InnoDB spends an ``AUTO_INCREMENT`` value on
  every ``INSERT`` that hits a duplicate, including ``INSERT IGNORE`` and
  ``ON DUPLICATE KEY UPDATE``. An upsert per login would burn one uid per returning player,
  and uids must stay below 2**31 (checked: ids 1, then 5 after three upserts of one key). So a
  login reads by digest, and only a miss inserts.
* **The UNIQUE index settles races.** N concurrent first logins of one key (any number of
  processes) all miss, all insert; one wins, the others get ``IntegrityError``, end their
  transaction (under REPEATABLE READ the old snapshot would not show the winner) and re-read.
  Each loser burns one id at most.
* **Few round trips.** Every statement is prebuilt once. A login is a SELECT, one INSERT or
  UPDATE and a COMMIT; on MySQL the pool adds its pre-ping and rollback-on-return, 5 round
  trips in all. (Skipping the reset when the server reports no open transaction gained
  about 5%, within noise, so the pool's safe default stays.)
* **One error type.** Anything the database does wrong becomes ``StorageError`` with the
  driver error chained, and a message naming only the operation and error class/code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import bindparam, exc, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from netbus.errors import ConfigError
from netbus.storage.errors import AccountNotFound, StorageError, db_error_code, storage_errors
from netbus.storage.schema import MAX_UID, uinfo

__all__ = [
    "ACCOUNT_COLUMNS",
    "GUEST_NICK_PREFIX",
    "Account",
    "AccountStore",
    "account_from_row",
    "hash_guest_key",
]

#: Nickname prefix of new guests ("visitor"), followed by 6 random digits, as in the original.
GUEST_NICK_PREFIX = "遊客"

#: The uinfo columns an `Account` is built from (`account_from_row`).
ACCOUNT_COLUMNS = (
    uinfo.c.uid,
    uinfo.c.unick,
    uinfo.c.usex,
    uinfo.c.uface,
    uinfo.c.uvip,
    uinfo.c.vip_endtime,
    uinfo.c.is_guest,
    uinfo.c.status,
    uinfo.c.uname,
)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
#: MySQL errors worth another try: InnoDB deadlock (1213), e.g. when the winner of a
#: first-login race rolls back and the waiting losers collide on the freed index record.
_RETRYABLE_MYSQL_CODES = frozenset({1213})
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Account:
    """What the center server needs of an account to answer GUEST_LOGIN.

    Attributes:
        uid: account id, always in ``1..MAX_UID``.
        unick: nickname.
        usex: 0 or 1.
        uface: avatar number.
        uvip: VIP level.
        vip_endtime: VIP expiry, unix seconds (0 = none).
        is_guest: created by guest login (still true after a username was registered).
        status: 0 = active; anything else = disabled.
        username: the registered username (NFKC, case as typed), or None.
    """

    uid: int
    unick: str
    usex: int
    uface: int
    uvip: int
    vip_endtime: int
    is_guest: bool
    status: int
    username: str | None = None

    @property
    def is_disabled(self) -> bool:
        """True when the account must be refused (ILLEGAL_ACCOUNT, PROTOCOL.md §4.2)."""
        return self.status != 0


def hash_guest_key(pepper: bytes, key: str) -> str:
    """Return the stored form of a guest key: hex ``HMAC-SHA256(pepper, key)`` (64 chars).

    Deterministic, so it can be looked up by equality through the UNIQUE index. Validating
    the key's format is the caller's job (PROTOCOL.md §4.2); any ``str`` hashes.
    """
    return hmac.new(pepper, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


class AccountStore:
    """Guest login and account lookups over one engine.

    The store does not own the engine: dispose the engine at shutdown. The store is
    stateless apart from prebuilt statements, so any number of stores (in one process or
    many) may share a database.

    Args:
        engine: from :func:`netbus.storage.create_engine`, with the schema migrated.
        pepper: server-side secret for :func:`hash_guest_key`; 32 random bytes recommended.
            Changing it orphans every guest account.
        timeout: upper bound in seconds for one store call, covering pool waits, connects,
            lock waits and a database that stops answering; ``None`` disables it.

    Raises:
        ConfigError: the pepper is empty.
    """

    def __init__(self, engine: AsyncEngine, pepper: bytes, *, timeout: float | None = 10.0) -> None:
        if not isinstance(pepper, bytes | bytearray) or not pepper:
            raise ConfigError("the guest-key pepper must be non-empty bytes")
        self._engine = engine
        self._pepper = bytes(pepper)
        self._timeout = timeout
        c = uinfo.c
        columns = ACCOUNT_COLUMNS
        self._select_by_key = select(*columns).where(c.guest_key == bindparam("digest"))
        self._select_by_uid = select(*columns).where(c.uid == bindparam("id"))
        self._touch = (
            update(uinfo).where(c.uid == bindparam("id")).values(last_login_at=bindparam("now"))
        )
        self._set_status = (
            update(uinfo).where(c.uid == bindparam("id")).values(status=bindparam("new_status"))
        )
        self._insert = insert(uinfo)

    async def guest_login(self, guest_key: str) -> tuple[Account, bool]:
        """Log in with a guest key, creating the guest account if the key is new.

        Also records the login time. A disabled account is returned as is: check
        :attr:`Account.is_disabled` and answer ILLEGAL_ACCOUNT.

        Returns:
            ``(account, created)``: ``created`` is true for exactly one of any number of
            concurrent first logins of the same key.

        Raises:
            StorageError: the database failed, or handed out a uid above ``MAX_UID``.
        """
        digest = hash_guest_key(self._pepper, guest_key)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._guard("guest_login"), self._engine.connect() as conn:
                    return await self._guest_login(conn, digest)
            except StorageError as err:
                if attempt == _ATTEMPTS or not _is_retryable(err.__cause__):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, uid: int) -> Account | None:
        """Return the account with this uid, or ``None``.

        Raises:
            StorageError: the database failed.
        """
        if not 1 <= uid <= MAX_UID:
            return None
        async with self._guard("get"), self._engine.connect() as conn:
            row = (await conn.execute(self._select_by_uid, {"id": uid})).first()
        return None if row is None else account_from_row(row._mapping)

    async def set_status(self, uid: int, status: int) -> None:
        """Disable (``status != 0``) or re-enable (``status == 0``) an account.

        Raises:
            ValueError: ``status`` does not fit a 32-bit signed integer.
            AccountNotFound: no account has this uid.
            StorageError: the database failed.
        """
        if not _INT32_MIN <= status <= _INT32_MAX:
            raise ValueError(f"status {status} does not fit a 32-bit signed integer")
        if not 1 <= uid <= MAX_UID:
            raise AccountNotFound(uid)
        async with self._guard("set_status"), self._engine.connect() as conn:
            result = await conn.execute(self._set_status, {"id": uid, "new_status": status})
            await conn.commit()
        if result.rowcount == 0:
            raise AccountNotFound(uid)

    async def _guest_login(self, conn: AsyncConnection, digest: str) -> tuple[Account, bool]:
        now = int(time.time())
        row = (await conn.execute(self._select_by_key, {"digest": digest})).first()
        if row is None:
            unick = f"{GUEST_NICK_PREFIX}{secrets.randbelow(1_000_000):06d}"
            usex = secrets.randbelow(2)
            values = {
                "unick": unick,
                "usex": usex,
                "uface": 0,
                "guest_key": digest,
                "is_guest": True,
                "uvip": 0,
                "vip_endtime": 0,
                "status": 0,
                "created_at": now,
                "last_login_at": now,
            }
            try:
                result = await conn.execute(self._insert, values)
                pk = result.inserted_primary_key
                uid = int(pk[0]) if pk is not None and pk[0] is not None else 0
                if not 1 <= uid <= MAX_UID:
                    await conn.rollback()
                    raise StorageError(
                        f"guest_login: the database assigned uid {uid}, not in 1..{MAX_UID}"
                    )
                await conn.commit()
            except exc.IntegrityError:
                # Another login of the same key won the race. End this transaction before
                # reading again: its snapshot (REPEATABLE READ) predates the winner's commit.
                await conn.rollback()
            else:
                account = Account(
                    uid=uid,
                    unick=unick,
                    usex=usex,
                    uface=0,
                    uvip=0,
                    vip_endtime=0,
                    is_guest=True,
                    status=0,
                )
                return account, True
            row = (await conn.execute(self._select_by_key, {"digest": digest})).first()
            if row is None:
                raise StorageError("guest_login: duplicate guest key, but no account has it")
        account = account_from_row(row._mapping)
        await conn.execute(self._touch, {"id": account.uid, "now": now})
        await conn.commit()
        return account, False

    def _guard(self, op: str) -> AbstractAsyncContextManager[None]:
        """Bound ``op`` by the store timeout and turn database failures into StorageError."""
        return storage_errors(op, self._timeout)


def account_from_row(row: RowMapping) -> Account:
    """Build an `Account` from a row of `ACCOUNT_COLUMNS`.

    Raises:
        StorageError: the row's uid is outside ``1..MAX_UID``.
    """
    uid = int(row["uid"])
    if not 1 <= uid <= MAX_UID:
        raise StorageError(f"account uid {uid} is outside 1..{MAX_UID}")
    return Account(
        uid=uid,
        unick=row["unick"],
        usex=int(row["usex"]),
        uface=int(row["uface"]),
        uvip=int(row["uvip"]),
        vip_endtime=int(row["vip_endtime"]),
        is_guest=bool(row["is_guest"]),
        status=int(row["status"]),
        username=row["uname"],
    )


def _is_retryable(err: BaseException | None) -> bool:
    return db_error_code(err) in _RETRYABLE_MYSQL_CODES
