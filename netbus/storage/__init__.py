"""Storage layer: accounts, credentials, resume tokens, lockout, migrations.

Only the roles import this package (docs/architecture.md). Typical start-up::

    engine = create_engine(settings.center.database_url)
    await upgrade(settings.center.database_url)   # or `netbus db upgrade` once per deployment
    auth = open_auth_store(engine, pepper, AuthOptions(**settings.center.accounts.model_dump()),
                           redis=redis_client_or_none, redis_prefix=settings.redis.prefix)
    await auth.start()
    login = await auth.guest_login(key)            # Login(account, created, token)
    ...
    await auth.close()
    await engine.dispose()

`AuthStore` is the one object a service needs; the pieces it is made of (`AccountStore`,
`GuestLoginBatcher`, `CredentialStore`, the `TokenStore` and `AttemptLimiter`
implementations) are public for tests and other compositions.
"""

from __future__ import annotations

from netbus.storage.accounts import GUEST_NICK_PREFIX, Account, AccountStore, hash_guest_key
from netbus.storage.auth import AuthOptions, AuthStore, Login, open_auth_store
from netbus.storage.credentials import CredentialStore
from netbus.storage.engine import create_engine, redact_url
from netbus.storage.errors import AccountNotFound, AuthRefused, Refusal, StorageError
from netbus.storage.guest_batch import GuestLoginBatcher
from netbus.storage.lockout import AttemptLimiter, LockoutPolicy, MemoryAttemptLimiter
from netbus.storage.lockout_sql import SqlAttemptLimiter
from netbus.storage.migrate import alembic_config, upgrade, upgrade_sync
from netbus.storage.passwords import Argon2Hasher, Argon2Params
from netbus.storage.schema import MAX_UID, login_failures, metadata, session_tokens, uinfo
from netbus.storage.tokens import IssuedToken, TokenInfo, TokenStore
from netbus.storage.tokens_sql import SqlTokenStore
from netbus.storage.usernames import Username, normalize_username

__all__ = [
    "GUEST_NICK_PREFIX",
    "MAX_UID",
    "Account",
    "AccountNotFound",
    "AccountStore",
    "Argon2Hasher",
    "Argon2Params",
    "AttemptLimiter",
    "AuthOptions",
    "AuthRefused",
    "AuthStore",
    "CredentialStore",
    "GuestLoginBatcher",
    "IssuedToken",
    "LockoutPolicy",
    "Login",
    "MemoryAttemptLimiter",
    "Refusal",
    "SqlAttemptLimiter",
    "SqlTokenStore",
    "StorageError",
    "TokenInfo",
    "TokenStore",
    "Username",
    "alembic_config",
    "create_engine",
    "hash_guest_key",
    "login_failures",
    "metadata",
    "normalize_username",
    "open_auth_store",
    "redact_url",
    "session_tokens",
    "uinfo",
    "upgrade",
    "upgrade_sync",
]
