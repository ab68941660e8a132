"""`AuthStore`: every account operation the auth service needs, one call each.

It composes the pieces of this package, so a service handler does not have to:

=====================  ==================================================================
guest login            `GuestLoginBatcher` (group commit) or `AccountStore` (one by one)
username / password    `CredentialStore` over an `Argon2Hasher`, two `AttemptLimiter` s
resume tokens          `SqlTokenStore` or `RedisTokenStore`
=====================  ==================================================================

and adds the rules that span them: every login of an enabled account returns a fresh resume
token (a disabled account gets none, and the caller answers ILLEGAL_ACCOUNT as today); a
password change ends every session of the account and returns a new token; resuming a
disabled account ends its sessions. `open_auth_store` builds one from `AuthOptions`, whose
fields are the ``[center.accounts]`` keys (docs/config.md), and `AuthStore.start` runs the
periodic purge of expired tokens and idle lockout counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from netbus.errors import ConfigError
from netbus.storage.accounts import Account, AccountStore
from netbus.storage.credentials import CredentialStore
from netbus.storage.errors import AccountNotFound, AuthRefused, Refusal, StorageError
from netbus.storage.guest_batch import GuestLoginBatcher
from netbus.storage.lockout import AttemptLimiter, LockoutPolicy, MemoryAttemptLimiter
from netbus.storage.lockout_sql import SqlAttemptLimiter
from netbus.storage.passwords import Argon2Hasher, Argon2Params
from netbus.storage.tokens import IssuedToken, TokenInfo, TokenStore
from netbus.storage.tokens_sql import SqlTokenStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["AuthOptions", "AuthStore", "Login", "open_auth_store"]

log = logging.getLogger("netbus.storage")


@dataclass(frozen=True, slots=True)
class Login:
    """The outcome of a login or a resume.

    Attributes:
        account: the account (check :attr:`Account.is_disabled` first).
        created: a guest login created this account just now.
        token: the new resume token; ``None`` for a disabled account.
    """

    account: Account
    created: bool = False
    token: IssuedToken | None = None


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """Tunables of `open_auth_store`; the field names are the ``[center.accounts]`` keys,
    so ``AuthOptions(**settings.center.accounts.model_dump())`` builds one from config.
    docs/config.md describes each; docs/security.md says which attack each limit stops.
    """

    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    hash_workers: int = 2
    hash_queue: int = 64
    account_max_failures: int = 5
    account_lockout: float = 30.0
    account_lockout_max: float = 900.0
    account_failure_window: float = 86400.0
    ip_max_failures: int = 20
    ip_lockout: float = 60.0
    ip_lockout_max: float = 3600.0
    ip_failure_window: float = 3600.0
    token_ttl: int = 86400
    session_store: Literal["auto", "database", "redis"] = "auto"
    login_batch: bool = True
    login_batch_max: int = 128
    login_batch_connections: int = 1
    purge_interval: float = 60.0
    purge_limit: int = 1000

    @property
    def account_policy(self) -> LockoutPolicy:
        return LockoutPolicy(
            self.account_max_failures,
            self.account_lockout,
            self.account_lockout_max,
            self.account_failure_window,
        )

    @property
    def ip_policy(self) -> LockoutPolicy:
        return LockoutPolicy(
            self.ip_max_failures, self.ip_lockout, self.ip_lockout_max, self.ip_failure_window
        )


class AuthStore:
    """Account operations for the auth service. See the module docstring.

    Build it with `open_auth_store`; ``await start()`` after, ``await close()`` before the
    engine is disposed. Every method raises `StorageError` when a backend fails (answer
    SYSTEM_ERROR) and `AuthRefused` with a `Refusal` for every refusal.
    """

    def __init__(
        self,
        *,
        accounts: AccountStore,
        credentials: CredentialStore,
        tokens: TokenStore,
        guests: GuestLoginBatcher | None = None,
        purge_interval: float = 60.0,
        purge_limit: int = 1000,
    ) -> None:
        self.accounts = accounts
        self.credentials = credentials
        self.tokens = tokens
        self.guests = guests
        self._purge_interval = purge_interval
        self._purge_limit = purge_limit
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make the dummy password hash and start the periodic purge."""
        await self.credentials.hasher.warm_up()
        if self._purger is None and self._purge_interval > 0:
            self._purger = asyncio.get_running_loop().create_task(
                self._purge_loop(), name="auth-purge"
            )

    async def close(self) -> None:
        """Stop the purge, answer waiting guest logins, stop the hashing threads. Idempotent."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self.guests is not None:
            await self.guests.close()
        self.credentials.hasher.close()

    # ---------------------------------------------------------------------------- logins
    async def guest_login(self, guest_key: str) -> Login:
        """Log in (or sign up) with a guest key; see `AccountStore.guest_login`.

        Raises:
            StorageError: the database (or the token backend) failed.
        """
        if self.guests is not None:
            account, created = await self.guests.guest_login(guest_key)
        else:
            account, created = await self.accounts.guest_login(guest_key)
        return await self._logged_in(account, created)

    async def password_login(
        self, username: object, password: object, *, source: str | None = None
    ) -> Login:
        """Log in with a username and password; see `CredentialStore.login`.

        Raises:
            AuthRefused: ``BAD_CREDENTIALS``, ``LOCKED`` (``retry_after``) or ``BUSY``.
            StorageError: a backend failed.
        """
        account = await self.credentials.login(username, password, source=source)
        return await self._logged_in(account, False)

    async def resume(self, token: str, *, uid: int | None = None) -> Login:
        """Trade a resume token for its successor and the account it belongs to.

        Args:
            token: as the client presented it.
            uid: the account the session must belong to, when the caller knows it.

        Raises:
            AuthRefused: ``TOKEN_UNKNOWN``, ``TOKEN_EXPIRED``, ``TOKEN_REPLAYED``,
                ``TOKEN_WRONG_ACCOUNT``, or ``ACCOUNT_DISABLED`` (every session of the
                account is then revoked).
            StorageError: a backend failed.
        """
        # Look before consuming: if loading the account fails, the token still works.
        info = await self.tokens.check(token)
        if uid is not None and info.uid != uid:
            raise AuthRefused(Refusal.TOKEN_WRONG_ACCOUNT)
        account = await self.accounts.get(info.uid)
        if account is None or account.is_disabled:
            await self.tokens.revoke_uid(info.uid)
            if account is None:
                raise AccountNotFound(info.uid)
            raise AuthRefused(Refusal.ACCOUNT_DISABLED)
        issued = await self.tokens.rotate(token, uid=info.uid)
        return Login(account, False, issued)

    async def check_token(self, token: str) -> TokenInfo:
        """Owner, creation and expiry of a live token, without consuming it (`TokenStore.check`)."""
        return await self.tokens.check(token)

    async def logout(self, token: str) -> bool:
        """End the session the token belongs to (its family); False if it was unknown."""
        return await self.tokens.revoke(token)

    # --------------------------------------------------------------------- credentials
    async def register(self, uid: int, username: object, password: object) -> Account:
        """Give a (guest) account a username and password; see `CredentialStore.register`."""
        return await self.credentials.register(uid, username, password)

    async def change_password(
        self, uid: int, old_password: object, new_password: object
    ) -> IssuedToken:
        """Change the password, end every session of the account, return a new token.

        Raises:
            AuthRefused: see `CredentialStore.change_password`.
            AccountNotFound: no account has this uid.
            StorageError: a backend failed.
        """
        await self.credentials.change_password(uid, old_password, new_password)
        await self.tokens.revoke_uid(uid)
        return await self.tokens.issue(uid)

    # --------------------------------------------------------------------------- purge
    async def purge_expired(self) -> int:
        """Delete up to ``purge_limit`` expired tokens and idle counters of each kind."""
        limiters: list[AttemptLimiter] = [self.credentials.account_limiter]
        if self.credentials.ip_limiter is not None:
            limiters.append(self.credentials.ip_limiter)
        total = await self.tokens.purge(limit=self._purge_limit)
        for limiter in limiters:
            total += await limiter.purge(limit=self._purge_limit)
        return total

    async def _purge_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._purge_interval)
            try:
                await self.purge_expired()
            except StorageError as err:
                if not failing:  # once per outage, not once per interval
                    log.warning("purging expired tokens failed: %s", err)
                failing = True
            else:
                failing = False

    async def _logged_in(self, account: Account, created: bool) -> Login:
        if account.is_disabled:
            return Login(account, created, None)
        return Login(account, created, await self.tokens.issue(account.uid))


def open_auth_store(
    engine: AsyncEngine,
    pepper: bytes,
    options: AuthOptions | None = None,
    *,
    redis: Redis | None = None,
    redis_prefix: str = "netbus:",
    redis_timeout: float = 1.5,
    timeout: float | None = 10.0,
    clock: Callable[[], float] = time.time,
) -> AuthStore:
    """Build an `AuthStore` over ``engine`` (and Redis when given). Call its ``start()`` next.

    Where tokens and lockout counters live (``session_store``): ``"database"`` puts tokens
    and per-username counters in the database and per-address counters in this process's
    memory; ``"redis"`` puts all three in Redis (shared by every center); ``"auto"`` picks
    Redis when a client is given.

    Args:
        engine: from :func:`netbus.storage.create_engine`, schema migrated.
        pepper: the server secret (guest keys, tokens, limiter keys).
        options: the ``[center.accounts]`` settings.
        redis: a ``redis.asyncio.Redis`` with ``decode_responses=True``; not owned.
        redis_prefix: the ``[redis] prefix``.
        redis_timeout: bound on each Redis call.
        timeout: bound on each database call.
        clock: unix time in seconds.

    Raises:
        ConfigError: ``session_store = "redis"`` without a Redis client, or a bad pepper.
        ValueError: an option is out of range.
    """
    opts = options or AuthOptions()
    use_redis = opts.session_store == "redis" or (
        opts.session_store == "auto" and redis is not None
    )
    if use_redis and redis is None:
        raise ConfigError('[center.accounts] session_store = "redis" needs [redis] url')
    hasher = Argon2Hasher(
        Argon2Params(opts.argon2_time_cost, opts.argon2_memory_kib, opts.argon2_parallelism),
        workers=opts.hash_workers,
        max_waiting=opts.hash_queue,
    )
    tokens: TokenStore
    account_limiter: AttemptLimiter
    ip_limiter: AttemptLimiter
    if use_redis and redis is not None:
        from netbus.storage.lockout_redis import RedisAttemptLimiter
        from netbus.storage.tokens_redis import RedisTokenStore

        tokens = RedisTokenStore(
            redis,
            pepper,
            prefix=redis_prefix,
            ttl=opts.token_ttl,
            clock=clock,
            timeout=redis_timeout,
        )
        account_limiter = RedisAttemptLimiter(
            redis,
            opts.account_policy,
            prefix=f"{redis_prefix}acct:",
            clock=clock,
            timeout=redis_timeout,
        )
        ip_limiter = RedisAttemptLimiter(
            redis, opts.ip_policy, prefix=f"{redis_prefix}ip:", clock=clock, timeout=redis_timeout
        )
    else:
        tokens = SqlTokenStore(engine, pepper, ttl=opts.token_ttl, clock=clock, timeout=timeout)
        account_limiter = SqlAttemptLimiter(
            engine, opts.account_policy, clock=clock, timeout=timeout
        )
        ip_limiter = MemoryAttemptLimiter(opts.ip_policy, clock=clock)
    credentials = CredentialStore(
        engine,
        pepper,
        hasher,
        account_limiter=account_limiter,
        ip_limiter=ip_limiter,
        timeout=timeout,
        clock=clock,
    )
    guests = None
    if opts.login_batch:
        guests = GuestLoginBatcher(
            engine,
            pepper,
            max_batch=opts.login_batch_max,
            connections=opts.login_batch_connections,
            timeout=timeout,
            clock=clock,
        )
    return AuthStore(
        accounts=AccountStore(engine, pepper, timeout=timeout),
        credentials=credentials,
        tokens=tokens,
        guests=guests,
        purge_interval=opts.purge_interval,
        purge_limit=opts.purge_limit,
    )
