"""Storage layer: the account table, engine factory, migrations and guest-login queries.

Only the roles import this package (STYLE.md §1). Typical start-up::

    engine = create_engine(settings.db_url)
    await upgrade(settings.db_url)          # or `netbus db upgrade` once per deployment
    store = AccountStore(engine, pepper)
    account, created = await store.guest_login(key)
    ...
    await engine.dispose()
"""

from __future__ import annotations

from netbus.storage.accounts import GUEST_NICK_PREFIX, Account, AccountStore, hash_guest_key
from netbus.storage.engine import create_engine, redact_url
from netbus.storage.errors import AccountNotFound, StorageError
from netbus.storage.migrate import alembic_config, upgrade, upgrade_sync
from netbus.storage.schema import MAX_UID, metadata, uinfo

__all__ = [
    "GUEST_NICK_PREFIX",
    "MAX_UID",
    "Account",
    "AccountNotFound",
    "AccountStore",
    "StorageError",
    "alembic_config",
    "create_engine",
    "hash_guest_key",
    "metadata",
    "redact_url",
    "uinfo",
    "upgrade",
    "upgrade_sync",
]
