"""Usernames and passwords on existing accounts: register, log in, change the password.

Why it is written this way (docs/security.md "Accounts"):

* **Registering upgrades the account in place.** `CredentialStore.register` sets ``uname``,
  ``uname_key`` and ``upwd`` on the guest's own row, so the uid and everything keyed by it
  stay. The guest key keeps working too: the device that created the account still logs in
  with it. The UPDATE only touches a row without a username (``uname_key IS NULL``), and the
  UNIQUE index on ``uname_key`` decides which of two accounts racing for a name gets it.
* **One answer for "no such user" and "wrong password".** `CredentialStore.login` takes the
  same steps for both: lockout check, one SELECT, one argon2 verification (against the dummy
  hash when there is no row, `netbus.storage.passwords`), one failure counted on the same
  two limiters, and ``AuthRefused(BAD_CREDENTIALS)``. Only a correct password differs.
* **Lockout before hashing.** A locked username or address is refused before the password
  is looked at, so a locked attacker costs one indexed read, not an argon2 hash. The limiter
  keys are ``HMAC-SHA256(pepper, "lockout:acct:" + username key)`` and ``... "lockout:ip:" +
  address``: the counters hold no usernames or addresses in clear.
* **Rehash on login.** When ``[center.accounts] argon2_*`` changed, the next successful login
  stores a hash with the new parameters (compare-and-set on the old hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import unicodedata
from collections.abc import Callable

from sqlalchemy import bindparam, exc, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from netbus.errors import ConfigError
from netbus.storage.accounts import ACCOUNT_COLUMNS, Account, account_from_row
from netbus.storage.errors import AccountNotFound, AuthRefused, Refusal, storage_errors
from netbus.storage.lockout import AttemptLimiter
from netbus.storage.passwords import PASSWORD_MAX_LENGTH, Argon2Hasher, normalize_password
from netbus.storage.schema import MAX_UID, uinfo
from netbus.storage.usernames import normalize_username

__all__ = ["CredentialStore", "lockout_key"]

_c = uinfo.c


def lockout_key(pepper: bytes, scope: str, value: str) -> str:
    """The limiter key of ``value`` (a username key or an address) in ``scope``."""
    message = f"lockout:{scope}:{value}".encode("utf-8", "surrogatepass")
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


class CredentialStore:
    """Username/password operations on ``uinfo``. See the module docstring.

    Args:
        engine: from :func:`netbus.storage.create_engine`, schema migrated.
        pepper: the server secret (the guest-key pepper) for the limiter keys.
        hasher: the argon2id hasher (owns the hashing threads).
        account_limiter: lockout per username.
        ip_limiter: lockout per source address; ``None`` to count per username only.
        timeout: upper bound in seconds for each database step.
        clock: unix time in seconds (``last_login_at``); injected for tests.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        pepper: bytes,
        hasher: Argon2Hasher,
        *,
        account_limiter: AttemptLimiter,
        ip_limiter: AttemptLimiter | None = None,
        timeout: float | None = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(pepper, bytes | bytearray) or not pepper:
            raise ConfigError("the pepper must be non-empty bytes")
        self.hasher = hasher
        self.account_limiter = account_limiter
        self.ip_limiter = ip_limiter
        self._engine = engine
        self._pepper = bytes(pepper)
        self._timeout = timeout
        self._clock = clock
        secret_columns = (*ACCOUNT_COLUMNS, _c.uname_key, _c.upwd)
        self._by_name = select(*secret_columns).where(_c.uname_key == bindparam("k"))
        self._by_uid = select(*secret_columns).where(_c.uid == bindparam("id"))
        self._register = (
            update(uinfo)
            .where(_c.uid == bindparam("id"), _c.uname_key.is_(None), _c.status == 0)
            .values(uname=bindparam("name"), uname_key=bindparam("k"), upwd=bindparam("h"))
        )
        self._set_hash = (
            update(uinfo)
            .where(_c.uid == bindparam("id"), _c.upwd == bindparam("old"))
            .values(upwd=bindparam("h"))
        )
        self._touch = (
            update(uinfo).where(_c.uid == bindparam("id")).values(last_login_at=bindparam("now"))
        )

    async def register(self, uid: int, username: object, password: object) -> Account:
        """Give the account ``uid`` a username and password; it keeps its uid and guest key.

        Returns:
            The account, with ``username`` set.

        Raises:
            AuthRefused: ``INVALID_USERNAME``, ``INVALID_PASSWORD``, ``USERNAME_TAKEN``,
                ``ALREADY_REGISTERED``, ``ACCOUNT_DISABLED`` or ``BUSY``.
            AccountNotFound: no account has this uid.
            StorageError: the database failed.
        """
        name = normalize_username(username)
        secret = normalize_password(password)
        if not 1 <= uid <= MAX_UID:
            raise AccountNotFound(uid)
        row = await self._load_uid(uid, "register")
        self._check_can_register(row)
        hashed = await self.hasher.hash(secret)
        params = {"id": uid, "name": name.display, "k": name.key, "h": hashed}
        async with storage_errors("register", self._timeout), self._engine.connect() as conn:
            try:
                result = await conn.execute(self._register, params)
                await conn.commit()
            except exc.IntegrityError:
                raise AuthRefused(Refusal.USERNAME_TAKEN) from None
        if result.rowcount != 1:  # changed since we looked: say what it is now
            self._check_can_register(await self._load_uid(uid, "register"))
            raise AuthRefused(Refusal.ALREADY_REGISTERED)
        return dataclasses.replace(account_from_row(row), username=name.display)

    async def login(
        self, username: object, password: object, *, source: str | None = None
    ) -> Account:
        """Check a username and password; return the account (disabled ones too: check
        :attr:`Account.is_disabled`).

        Args:
            username: as the client sent it.
            password: as the client sent it.
            source: the client's address key (the one the gateway's per-IP limits use), for
                the per-address lockout; ``None`` counts per username only.

        Raises:
            AuthRefused: ``BAD_CREDENTIALS`` (unknown username, wrong password, malformed
                input: one answer for all), ``LOCKED`` (``retry_after`` set) or ``BUSY``.
            StorageError: the database or the limiter backend failed.
        """
        try:
            name = normalize_username(username)
        except AuthRefused:
            raise AuthRefused(Refusal.BAD_CREDENTIALS) from None
        secret = _login_password(password)
        account_key = lockout_key(self._pepper, "acct", name.key)
        ip_key = None if source is None else lockout_key(self._pepper, "ip", source)
        await self._refuse_if_locked(account_key, ip_key)
        async with storage_errors("login", self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._by_name, {"k": name.key})).mappings().first()
        stored = None if row is None else row["upwd"]
        ok = secret is not None and await self.hasher.verify(stored, secret)
        if not ok or row is None or secret is None:  # verify() is False without a row
            await self.account_limiter.record_failure(account_key)
            if ip_key is not None and self.ip_limiter is not None:
                await self.ip_limiter.record_failure(ip_key)
            raise AuthRefused(Refusal.BAD_CREDENTIALS)
        account = account_from_row(row)
        await self.account_limiter.reset(account_key)
        if self.hasher.needs_rehash(row["upwd"]):
            await self._store_hash(account.uid, row["upwd"], await self.hasher.hash(secret))
        async with storage_errors("login", self._timeout), self._engine.connect() as conn:
            await conn.execute(self._touch, {"id": account.uid, "now": int(self._clock())})
            await conn.commit()
        return account

    async def change_password(self, uid: int, old_password: object, new_password: object) -> None:
        """Replace the password of ``uid`` after checking the current one.

        A wrong ``old_password`` counts as a failed login of that username (lockout).
        Revoking the account's resume tokens is the caller's step (`AuthStore` does it).

        Raises:
            AuthRefused: ``INVALID_PASSWORD`` (the new one), ``BAD_CREDENTIALS`` (the old
                one is wrong), ``LOCKED``, ``NOT_REGISTERED``, ``ACCOUNT_DISABLED`` or ``BUSY``.
            AccountNotFound: no account has this uid.
            StorageError: the database failed.
        """
        secret = normalize_password(new_password)
        if not 1 <= uid <= MAX_UID:
            raise AccountNotFound(uid)
        row = await self._load_uid(uid, "change_password")
        if row["uname_key"] is None or row["upwd"] is None:
            raise AuthRefused(Refusal.NOT_REGISTERED)
        if row["status"] != 0:
            raise AuthRefused(Refusal.ACCOUNT_DISABLED)
        account_key = lockout_key(self._pepper, "acct", row["uname_key"])
        await self._refuse_if_locked(account_key, None)
        old = _login_password(old_password)
        if old is None or not await self.hasher.verify(row["upwd"], old):
            await self.account_limiter.record_failure(account_key)
            raise AuthRefused(Refusal.BAD_CREDENTIALS)
        await self.account_limiter.reset(account_key)
        if not await self._store_hash(uid, row["upwd"], await self.hasher.hash(secret)):
            raise AuthRefused(Refusal.BAD_CREDENTIALS)  # changed concurrently: old is stale

    async def _refuse_if_locked(self, account_key: str, ip_key: str | None) -> None:
        wait = await self.account_limiter.locked_for(account_key)
        if ip_key is not None and self.ip_limiter is not None:
            wait = max(wait, await self.ip_limiter.locked_for(ip_key))
        if wait > 0:
            raise AuthRefused(Refusal.LOCKED, retry_after=wait)

    async def _load_uid(self, uid: int, op: str) -> RowMapping:
        async with storage_errors(op, self._timeout), self._engine.connect() as conn:
            row = (await conn.execute(self._by_uid, {"id": uid})).mappings().first()
        if row is None:
            raise AccountNotFound(uid)
        return row

    @staticmethod
    def _check_can_register(row: RowMapping) -> None:
        if row["status"] != 0:
            raise AuthRefused(Refusal.ACCOUNT_DISABLED)
        if row["uname_key"] is not None:
            raise AuthRefused(Refusal.ALREADY_REGISTERED)

    async def _store_hash(self, uid: int, old: str, new: str) -> bool:
        params = {"id": uid, "old": old, "h": new}
        async with storage_errors("store password", self._timeout), self._engine.connect() as conn:
            result = await conn.execute(self._set_hash, params)
            await conn.commit()
        return bool(result.rowcount == 1)


def _login_password(value: object) -> str | None:
    """The password to verify at login, or None when no account can have it.

    Only type and maximum length are checked, so a later change of the rules for new
    passwords never locks out an existing one.
    """
    if not isinstance(value, str) or len(value) > 4 * PASSWORD_MAX_LENGTH:
        return None
    password = unicodedata.normalize("NFKC", value)
    return password if len(password) <= PASSWORD_MAX_LENGTH else None
