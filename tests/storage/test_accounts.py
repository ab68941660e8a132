"""Guest login, lookups and status changes, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

import netbus.storage
from netbus.errors import ConfigError
from netbus.storage import (
    GUEST_NICK_PREFIX,
    MAX_UID,
    Account,
    AccountNotFound,
    AccountStore,
    StorageError,
    create_engine,
    hash_guest_key,
    uinfo,
)

from .conftest import HEAD_REVISION, PEPPER, RunSql

KEY = "Gk_0123456789abcdefXYZ"


# --- hash_guest_key and Account (no database) ------------------------------------------


def test_hash_guest_key_is_hmac_sha256_hex() -> None:
    # RFC 4231 test case 2.
    assert (
        hash_guest_key(b"Jefe", "what do ya want for nothing?")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    digest = hash_guest_key(PEPPER, KEY)
    assert digest == hmac.new(PEPPER, KEY.encode(), hashlib.sha256).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_guest_key(b"other pepper", KEY) != digest
    assert hash_guest_key(PEPPER, KEY + "x") != digest


def test_account_is_frozen_and_knows_disabled() -> None:
    account = Account(1, "n", 0, 0, 0, 0, True, 0)
    assert not account.is_disabled
    assert Account(1, "n", 0, 0, 0, 0, True, 2).is_disabled
    assert Account(1, "n", 0, 0, 0, 0, True, -1).is_disabled
    with pytest.raises(dataclasses.FrozenInstanceError):
        account.status = 1  # type: ignore[misc]
    assert not hasattr(account, "__dict__")  # slots


@pytest.mark.parametrize("pepper", [b"", "not-bytes"])
def test_store_rejects_bad_pepper(pepper: object) -> None:
    with pytest.raises(ConfigError):
        AccountStore(None, pepper)  # type: ignore[arg-type]


# --- guest login ---------------------------------------------------------------------


async def test_first_login_creates_second_loads(store: AccountStore, run_sql: RunSql) -> None:
    account, created = await store.guest_login(KEY)
    assert created
    assert 1 <= account.uid <= MAX_UID
    assert re.fullmatch(rf"{GUEST_NICK_PREFIX}\d{{6}}", account.unick)
    assert account.usex in (0, 1)
    assert (account.uface, account.uvip, account.vip_endtime, account.status) == (0, 0, 0, 0)
    assert account.is_guest and not account.is_disabled

    await run_sql("UPDATE uinfo SET last_login_at = 5 WHERE uid = :u", {"u": account.uid})
    again, created_again = await store.guest_login(KEY)
    assert not created_again
    assert again == account
    assert await store.get(account.uid) == account
    [(last_login, created_at)] = await run_sql(
        "SELECT last_login_at, created_at FROM uinfo WHERE uid = :u", {"u": account.uid}
    )
    assert last_login >= created_at > 1_600_000_000  # touched by the second login


async def test_nickname_round_trips_unicode(store: AccountStore) -> None:
    account, _ = await store.guest_login(KEY)
    loaded = await store.get(account.uid)
    assert loaded is not None
    assert loaded.unick == account.unick
    assert loaded.unick.startswith("遊客")


async def test_different_keys_get_different_accounts(store: AccountStore) -> None:
    keys = [f"key-{i:02d}-abcdefghijklmnop" for i in range(20)]
    uids = [(await store.guest_login(k))[0].uid for k in keys]
    assert len(set(uids)) == len(keys)
    assert [(await store.guest_login(k))[0].uid for k in keys] == uids


async def test_only_the_hmac_is_stored(store: AccountStore, run_sql: RunSql) -> None:
    account, _ = await store.guest_login(KEY)
    [row] = await run_sql("SELECT * FROM uinfo WHERE uid = :u", {"u": account.uid})
    assert KEY not in [v for v in row if isinstance(v, str)]
    assert not any(KEY in v for v in row if isinstance(v, str))
    [(stored,)] = await run_sql("SELECT guest_key FROM uinfo WHERE uid = :u", {"u": account.uid})
    assert stored == hash_guest_key(PEPPER, KEY)
    assert stored != KEY


async def test_a_different_pepper_is_a_different_account(
    db_url: str, make_engine: Callable[[str], AsyncEngine]
) -> None:
    engine = make_engine(db_url)
    store = AccountStore(engine, PEPPER)
    other = AccountStore(engine, b"another pepper entirely")
    first, _ = await store.guest_login(KEY)
    second, created = await other.guest_login(KEY)
    assert created and second.uid != first.uid


async def test_concurrent_first_logins_make_one_account(
    db_url: str, make_engine: Callable[[str], AsyncEngine], run_sql: RunSql
) -> None:
    engines = [make_engine(db_url) for _ in range(5)]  # 5 engines = 5 independent pools
    stores = [AccountStore(engine, PEPPER) for engine in engines]
    for i, current in enumerate(stores):  # open a connection in every pool first
        await current.guest_login(f"warm-up-key-{i}-0123456789")
    integrity_errors: list[str] = []
    for engine in engines:
        event.listen(
            engine.sync_engine,
            "handle_error",
            lambda ctx: integrity_errors.append(type(ctx.original_exception).__name__),
        )

    key = "brand-new-key-concurrency-0001"
    gathered = await asyncio.gather(
        *(stores[i % 5].guest_login(key) for i in range(50)), return_exceptions=True
    )
    assert not [r for r in gathered if isinstance(r, BaseException)]
    results = [r for r in gathered if isinstance(r, tuple)]

    assert len({account.uid for account, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len({account for account, _ in results}) == 1  # everyone sees the same account
    [(count,)] = await run_sql(
        select(func.count())
        .select_from(uinfo)
        .where(uinfo.c.guest_key == hash_guest_key(PEPPER, key))
    )
    assert count == 1
    # The race really happened: losers hit the UNIQUE index and re-read the winner's row.
    assert integrity_errors and set(integrity_errors) == {"IntegrityError"}


INJECTION_KEYS = [
    "' OR 1=1 --",
    '"; DROP TABLE uinfo; --',
    "x'); DELETE FROM uinfo; --",
    "1; UPDATE uinfo SET status = 1",
    "\\'; SELECT SLEEP(5); --",
    "%s %(key)s :digest ?",
    "Robert'); DROP TABLE alembic_version;--",
    "ʼ OR ʼ1ʼ=ʼ1",
    "\x00\n\r\t'\"`",
]


async def test_sql_injection_keys_are_plain_data(store: AccountStore, run_sql: RunSql) -> None:
    normal, _ = await store.guest_login(KEY)
    uids = []
    for key in INJECTION_KEYS:
        account, created = await store.guest_login(key)
        assert created, key
        uids.append(account.uid)
    assert len(set(uids)) == len(INJECTION_KEYS)
    for key, uid in zip(INJECTION_KEYS, uids, strict=True):
        account, created = await store.guest_login(key)
        assert (account.uid, created, account.status) == (uid, False, 0)
    [(count,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert count == len(INJECTION_KEYS) + 1
    assert await store.get(normal.uid) == normal
    [(version,)] = await run_sql("SELECT version_num FROM alembic_version")
    assert version == HEAD_REVISION


# --- get and set_status ----------------------------------------------------------------


async def test_get_unknown_uid(store: AccountStore) -> None:
    assert await store.get(12345) is None
    assert await store.get(0) is None
    assert await store.get(-1) is None
    assert await store.get(MAX_UID + 1) is None


async def test_disabled_status_round_trips(store: AccountStore) -> None:
    account, _ = await store.guest_login(KEY)
    await store.set_status(account.uid, 1)
    disabled, created = await store.guest_login(KEY)
    assert not created
    assert disabled.uid == account.uid
    assert disabled.is_disabled and disabled.status == 1
    got = await store.get(account.uid)
    assert got is not None and got.is_disabled

    await store.set_status(account.uid, 1)  # same value again is fine
    await store.set_status(account.uid, 0)
    enabled, _ = await store.guest_login(KEY)
    assert not enabled.is_disabled


async def test_set_status_unknown_uid(store: AccountStore) -> None:
    with pytest.raises(AccountNotFound) as info:
        await store.set_status(424242, 1)
    assert isinstance(info.value, StorageError)
    assert isinstance(info.value, LookupError)
    with pytest.raises(AccountNotFound):
        await store.set_status(0, 1)
    with pytest.raises(ValueError):
        await store.set_status(1, 2**31)


# --- uid range (PROTOCOL.md §5: the utag's top bit is reserved) --------------------------


async def test_uid_above_31_bits_is_refused(store: AccountStore, run_sql: RunSql) -> None:
    # Take the last legal uid, so the database's next one is 2**31.
    await run_sql(insert(uinfo).values(uid=MAX_UID, unick="last", guest_key=None))
    [(before,)] = await run_sql("SELECT COUNT(*) FROM uinfo")

    with pytest.raises(StorageError, match="uid"):
        await store.guest_login("one-key-too-many-0000")
    [(after,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert after == before  # the out-of-range row was rolled back

    # A row that somehow already holds a too-large uid is refused on load as well.
    big_key = "already-too-big-key-0000"
    await run_sql(
        insert(uinfo).values(
            uid=MAX_UID + 5, unick="big", guest_key=hash_guest_key(PEPPER, big_key)
        )
    )
    with pytest.raises(StorageError, match="uid"):
        await store.guest_login(big_key)


async def test_returning_logins_do_not_burn_uids(store: AccountStore) -> None:
    # InnoDB spends an AUTO_INCREMENT value on every failed or upserting INSERT.
    first, _ = await store.guest_login("returning-player-key-01")
    for _ in range(5):
        await store.guest_login("returning-player-key-01")
    second, _ = await store.guest_login("another-new-player-key")
    assert second.uid == first.uid + 1


_ROOT = str(Path(netbus.storage.__file__).resolve().parents[2])  # so children import netbus
_CHILD = """
import asyncio, sys
from netbus.storage import AccountStore, create_engine

async def main(url, pepper, key):
    engine = create_engine(url)
    store = AccountStore(engine, pepper.encode())
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()  # start line: every process logs in at the same moment
    try:
        for account, created in await asyncio.gather(*(store.guest_login(key) for _ in range(10))):
            print(account.uid, int(created))
    finally:
        await engine.dispose()

asyncio.run(main(*sys.argv[1:]))
"""


def test_concurrent_first_logins_from_several_processes(db_url: str) -> None:
    # A plain (sync) test: it runs once per backend, not once per event loop too.
    key = "brand-new-key-multiprocess-01"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, db_url, PEPPER.decode(), key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
        outputs = [proc.communicate(b"go\n", timeout=30)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    lines = [line.split() for out in outputs for line in out.decode().splitlines()]
    assert len(lines) == 30
    assert len({uid for uid, _ in lines}) == 1
    assert sum(int(created) for _, created in lines) == 1
    assert asyncio.run(_count_rows(db_url)) == 1


async def _count_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(uinfo))).scalar_one())
    finally:
        await engine.dispose()
