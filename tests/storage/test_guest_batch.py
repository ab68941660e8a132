"""Group-commit guest login: AccountStore's semantics, batched, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import netbus.storage
from netbus.storage import (
    GUEST_NICK_PREFIX,
    MAX_UID,
    AccountStore,
    StorageError,
    create_engine,
    hash_guest_key,
    uinfo,
)
from netbus.storage.guest_batch import GuestLoginBatcher

from .conftest import PEPPER, RunSql
from .tcp_proxy import TcpProxy

MakeBatcher = Callable[..., GuestLoginBatcher]


@pytest.fixture
async def make_batcher(
    make_engine: Callable[[str], AsyncEngine],
) -> AsyncIterator[MakeBatcher]:
    batchers: list[GuestLoginBatcher] = []

    def make(url: str, **kwargs: object) -> GuestLoginBatcher:
        batcher = GuestLoginBatcher(make_engine(url), PEPPER, **kwargs)  # type: ignore[arg-type]
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:  # before make_engine disposes the engines
        await batcher.close()


@pytest.fixture(
    params=[(True, 1), (True, 2), (False, 1)], ids=["returning", "two-connections", "row-by-row"]
)
def batcher(
    request: pytest.FixtureRequest, db_url: str, make_batcher: MakeBatcher
) -> GuestLoginBatcher:
    """A batcher on each backend: multi-row RETURNING on one or two connections, and the
    row-by-row fallback MySQL 8 needs."""
    returning, connections = request.param
    return make_batcher(db_url, returning=returning, connections=connections)


def key(i: int) -> str:
    return f"guest-key-{i:06d}-abcdefghij"


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds (a few hundred turns at most)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- same semantics as AccountStore.guest_login --------------------------------------------


async def test_first_login_creates_second_loads(
    batcher: GuestLoginBatcher, run_sql: RunSql
) -> None:
    account, created = await batcher.guest_login(key(1))
    assert created and 1 <= account.uid <= MAX_UID
    assert re.fullmatch(rf"{GUEST_NICK_PREFIX}\d{{6}}", account.unick)
    assert account.usex in (0, 1) and account.is_guest and not account.is_disabled
    await run_sql("UPDATE uinfo SET last_login_at = 5 WHERE uid = :u", {"u": account.uid})
    again, created = await batcher.guest_login(key(1))
    assert (again, created) == (account, False)
    [(last, created_at, stored)] = await run_sql(
        "SELECT last_login_at, created_at, guest_key FROM uinfo WHERE uid = :u",
        {"u": account.uid},
    )
    assert last >= created_at > 1_600_000_000  # touched by the second login
    assert stored == hash_guest_key(PEPPER, key(1))


async def test_agrees_with_the_account_store(
    batcher: GuestLoginBatcher, db_url: str, make_engine: Callable[[str], AsyncEngine]
) -> None:
    store = AccountStore(make_engine(db_url), PEPPER)
    made_by_store, _ = await store.guest_login(key(1))
    made_by_batch, created = await batcher.guest_login(key(2))
    assert created
    assert await batcher.guest_login(key(1)) == (made_by_store, False)
    assert await store.guest_login(key(2)) == (made_by_batch, False)
    assert await store.get(made_by_batch.uid) == made_by_batch


async def test_concurrent_logins_are_batched(batcher: GuestLoginBatcher, run_sql: RunSql) -> None:
    known = [(await batcher.guest_login(key(i)))[0] for i in range(10)]
    batches_before = batcher.stats["batches"]
    results = await asyncio.gather(*(batcher.guest_login(key(i % 40)) for i in range(160)))
    assert batcher.stats["batches"] - batches_before < 10  # 160 logins, few transactions
    assert batcher.stats["largest_batch"] >= 40
    by_key: dict[int, set[int]] = {}
    for i, (account, _) in enumerate(results):
        by_key.setdefault(i % 40, set()).add(account.uid)
    assert all(len(uids) == 1 for uids in by_key.values())  # one account per key
    assert [by_key[i] for i in range(10)] == [{a.uid} for a in known]
    created = [i % 40 for i, (_, c) in enumerate(results) if c]
    assert sorted(created) == list(range(10, 40))  # exactly one `created` per new key
    [(count,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert count == 40


async def test_disabled_account_is_returned_disabled(batcher: GuestLoginBatcher) -> None:
    account, _ = await batcher.guest_login(key(1))
    store_engine = batcher._engine  # the same database
    await AccountStore(store_engine, PEPPER).set_status(account.uid, 3)
    disabled, created = await batcher.guest_login(key(1))
    assert (disabled.uid, disabled.status, created) == (account.uid, 3, False)
    assert disabled.is_disabled


async def test_returning_players_burn_no_uids(batcher: GuestLoginBatcher) -> None:
    first, _ = await batcher.guest_login(key(1))
    await asyncio.gather(*(batcher.guest_login(key(1)) for _ in range(20)))
    second, _ = await batcher.guest_login(key(2))
    assert second.uid == first.uid + 1


async def test_sql_injection_keys_are_plain_data(
    batcher: GuestLoginBatcher, run_sql: RunSql
) -> None:
    keys = ["' OR 1=1 --", '"; DROP TABLE uinfo; --', "x'); DELETE FROM uinfo; --", "?", "%s"]
    results = await asyncio.gather(*(batcher.guest_login(k) for k in keys))
    assert all(created for _, created in results)
    assert len({a.uid for a, _ in results}) == len(keys)
    [(count,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert count == len(keys)


# --- several centers ---------------------------------------------------------------------


async def test_concurrent_first_logins_across_batchers(
    db_url: str, make_batcher: MakeBatcher, run_sql: RunSql
) -> None:
    batchers = [make_batcher(db_url) for _ in range(4)]  # 4 "centers", 4 connections
    for i, b in enumerate(batchers):
        await b.guest_login(key(900 + i))  # every connection open before the race
    results = await asyncio.gather(
        *(batchers[i % 4].guest_login(key(i % 8)) for i in range(64)), return_exceptions=True
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    accounts = [r for r in results if isinstance(r, tuple)]
    for k in range(8):
        mine = [accounts[i] for i in range(64) if i % 8 == k]
        assert len({a.uid for a, _ in mine}) == 1
        assert sum(created for _, created in mine) == 1
    [(count,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert count == 8 + 4


_ROOT = str(Path(netbus.storage.__file__).resolve().parents[2])
_CHILD = """
import asyncio, sys
from netbus.storage import create_engine
from netbus.storage.guest_batch import GuestLoginBatcher

async def main(url, pepper):
    engine = create_engine(url)
    batcher = GuestLoginBatcher(engine, pepper.encode())
    await batcher.guest_login("warm-up-key-" + sys.argv[3] + "-0123456789")
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()
    keys = ["shared-key-%02d-0123456789abc" % (i % 5) for i in range(40)]
    try:
        for account, created in await asyncio.gather(*(batcher.guest_login(k) for k in keys)):
            print(account.uid, int(created))
    finally:
        await batcher.close()
        await engine.dispose()

asyncio.run(main(*sys.argv[1:3]))
"""


def test_several_processes_share_one_database(db_url: str) -> None:
    # issue 16 item 5: several centers batch against one database; uids come from it alone.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, db_url, PEPPER.decode(), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for n in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
        outputs = [proc.communicate(b"go\n", timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    lines = [line.split() for out in outputs for line in out.decode().splitlines()]
    assert len(lines) == 120
    uids = {uid for uid, _ in lines}
    assert len(uids) == 5  # five keys, five accounts
    assert sum(int(created) for _, created in lines) == 5
    assert asyncio.run(_count(db_url)) == 5 + 3


async def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(uinfo))).scalar_one())
    finally:
        await engine.dispose()


# --- per-login errors --------------------------------------------------------------------


async def test_a_bad_row_fails_only_its_own_login(
    batcher: GuestLoginBatcher, run_sql: RunSql
) -> None:
    good, _ = await batcher.guest_login(key(1))
    await run_sql(
        insert(uinfo).values(uid=MAX_UID + 5, unick="big", guest_key=hash_guest_key(PEPPER, key(2)))
    )
    results = await asyncio.gather(
        batcher.guest_login(key(1)), batcher.guest_login(key(2)), return_exceptions=True
    )
    assert results[0] == (good, False)
    assert isinstance(results[1], StorageError) and "uid" in str(results[1])


async def test_uids_past_the_range_are_undone(batcher: GuestLoginBatcher, run_sql: RunSql) -> None:
    known, _ = await batcher.guest_login(key(1))
    await run_sql(insert(uinfo).values(uid=MAX_UID, unick="last", guest_key=None))
    [(before,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    results = await asyncio.gather(
        batcher.guest_login(key(1)),
        *(batcher.guest_login(key(i)) for i in range(2, 5)),
        return_exceptions=True,
    )
    assert results[0] == (known, False)  # the returning player is unaffected
    assert all(isinstance(r, StorageError) and "uid" in str(r) for r in results[1:])
    [(after,)] = await run_sql("SELECT COUNT(*) FROM uinfo")
    assert after == before  # the out-of-range rows were deleted before the commit


async def test_a_cancelled_caller_does_not_disturb_the_batch(batcher: GuestLoginBatcher) -> None:
    tasks = [asyncio.ensure_future(batcher.guest_login(key(i))) for i in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert all(isinstance(r, tuple) and r[1] for i, r in enumerate(results) if i != 2)
    account, _ = await batcher.guest_login(key(2))
    assert account.uid >= 1  # made (or not) by the cancelled login; either way usable


async def test_close_answers_waiting_logins(db_url: str, make_batcher: MakeBatcher) -> None:
    batcher = make_batcher(db_url)
    tasks = [asyncio.ensure_future(batcher.guest_login(key(i))) for i in range(5)]
    await asyncio.sleep(0)
    await batcher.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, StorageError | tuple) for r in results)
    with pytest.raises(StorageError, match="closed"):
        await batcher.guest_login(key(9))
    await batcher.close()  # idempotent


# --- outages -------------------------------------------------------------------------------


async def test_two_connections_share_waiting_logins(db_url: str, make_batcher: MakeBatcher) -> None:
    batcher = make_batcher(db_url, connections=2)
    results = await asyncio.gather(*(batcher.guest_login(key(i)) for i in range(40)))
    assert all(created for _, created in results)
    assert batcher.stats["batches"] == 2 and batcher.stats["largest_batch"] == 20
    assert len({a.uid for a, _ in results}) == 40


async def test_sqlite_lock_fails_the_waiting_logins_then_recovers(
    tmp_path: Path, make_batcher: MakeBatcher
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db?timeout=0.3"
    await netbus.storage.upgrade(url)
    batcher = make_batcher(url, max_waiting=3, connections=1)
    await batcher.guest_login(key(0))
    locker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        first = asyncio.ensure_future(batcher.guest_login(key(1)))
        await until(lambda: batcher.stats["batches"] == 2)  # key 1 is in flight, blocked
        queued = [asyncio.ensure_future(batcher.guest_login(key(i))) for i in range(2, 5)]
        await asyncio.sleep(0)
        with pytest.raises(StorageError, match="too many"):
            await batcher.guest_login(key(5))  # 3 waiting already
        results = await asyncio.gather(first, *queued, return_exceptions=True)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert all(isinstance(r, StorageError) and "SQLITE_BUSY" in str(r) for r in results)
    assert (await batcher.guest_login(key(1)))[1] is True


async def test_mariadb_outage_then_recovery(mariadb_url: str, make_batcher: MakeBatcher) -> None:
    target = make_url(mariadb_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 3306)
    await proxy.start()
    try:
        url = target.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"connect_timeout": "1"}
        )
        batcher = make_batcher(url.render_as_string(hide_password=False))
        account, _ = await batcher.guest_login(key(1))
        await proxy.stop()
        results = await asyncio.gather(
            *(batcher.guest_login(key(i)) for i in range(1, 21)), return_exceptions=True
        )
        assert all(isinstance(r, StorageError) for r in results), results
        for r in results:
            assert key(1) not in str(r) and hash_guest_key(PEPPER, key(1)) not in str(r)
        await proxy.start()
        assert await batcher.guest_login(key(1)) == (account, False)
        assert batcher.stats["failed_batches"] >= 1
    finally:
        await proxy.stop()


async def test_mariadb_hang_times_out_then_recovers(
    mariadb_url: str, make_batcher: MakeBatcher
) -> None:
    target = make_url(mariadb_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 3306)
    await proxy.start()
    try:
        url = target.set(host="127.0.0.1", port=proxy.port)
        batcher = make_batcher(url.render_as_string(hide_password=False), timeout=0.5)
        account, _ = await batcher.guest_login(key(1))
        proxy.hang()
        results = await asyncio.gather(
            *(batcher.guest_login(key(i)) for i in range(1, 6)), return_exceptions=True
        )
        assert all(isinstance(r, StorageError) and "no answer" in str(r) for r in results)
        proxy.resume()
        assert await batcher.guest_login(key(1)) == (account, False)
        other, created = await batcher.guest_login(key(99))
        assert created and other.uid != account.uid
    finally:
        proxy.resume()
        await proxy.stop()


async def test_mariadb_killed_connection_is_replaced(
    mariadb_url: str, make_batcher: MakeBatcher, make_engine: Callable[[str], AsyncEngine]
) -> None:
    batcher = make_batcher(mariadb_url)
    account, _ = await batcher.guest_login(key(1))
    admin = make_engine(mariadb_url)
    async with admin.connect() as conn:
        victims = (
            (
                await conn.execute(
                    text(
                        "SELECT ID FROM information_schema.PROCESSLIST"
                        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
                    )
                )
            )
            .scalars()
            .all()
        )
        assert victims
        for victim in victims:
            await conn.execute(text("KILL :id"), {"id": victim})
    # the dead connection is noticed by the first statement; the batch is retried once
    assert await batcher.guest_login(key(1)) == (account, False)
    assert batcher.stats["failed_batches"] == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        GuestLoginBatcher(None, PEPPER, max_batch=0)  # type: ignore[arg-type]
    with pytest.raises(netbus.errors.ConfigError):
        GuestLoginBatcher(None, b"")  # type: ignore[arg-type]


async def _wait_for_lock_waits(probe_engine: AsyncEngine, count: int) -> None:
    async with probe_engine.connect() as probe:
        for _ in range(100):
            waiting = (
                await probe.execute(
                    text(
                        "SELECT COUNT(*) FROM information_schema.INNODB_TRX"
                        " WHERE trx_state = 'LOCK WAIT'"
                    )
                )
            ).scalar_one()
            await probe.rollback()
            if waiting >= count:
                return
            # InnoDB refreshes this view only when it was last read >= 0.1 s ago.
            await asyncio.sleep(0.15)
    raise AssertionError(f"{count} lock waits never showed up")


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "row-by-row"])
async def test_mariadb_key_inserted_elsewhere_meanwhile(
    mariadb_url: str,
    make_batcher: MakeBatcher,
    make_engine: Callable[[str], AsyncEngine],
    returning: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another center inserts the key after this batch's SELECT: INSERT IGNORE waits for
    # its lock, is ignored once it commits, and the row is read back after our commit.
    batcher = make_batcher(mariadb_url, returning=returning)
    await batcher.guest_login(key(0))
    holder = make_engine(mariadb_url)
    async with holder.connect() as conn:
        await conn.execute(
            insert(uinfo).values(
                unick="holder", guest_key=hash_guest_key(PEPPER, key(1)), is_guest=True
            )
        )
        login = asyncio.ensure_future(batcher.guest_login(key(1)))
        others = [asyncio.ensure_future(batcher.guest_login(key(i))) for i in range(2, 4)]
        await _wait_for_lock_waits(holder, 1)
        await conn.commit()
    account, created = await login
    assert (account.unick, created) == ("holder", False)
    for task in others:  # the batch's other keys were created
        assert (await task)[1]
    digest = hash_guest_key(PEPPER, key(1))
    assert not [r for r in caplog.records if digest in r.getMessage()]  # no driver warning log


async def test_mariadb_deadlocks_between_centers_are_retried(
    mariadb_url: str, make_batcher: MakeBatcher, make_engine: Callable[[str], AsyncEngine]
) -> None:
    # Three centers queue behind an uncommitted insert of one key that then rolls back: the
    # waiters may deadlock (1213) when they all want the freed record; the loser retries.
    batchers = [make_batcher(mariadb_url) for _ in range(3)]
    for i, b in enumerate(batchers):
        await b.guest_login(key(900 + i))
    holder = make_engine(mariadb_url)
    for attempt in range(8):
        k = key(attempt)
        async with holder.connect() as conn:
            await conn.execute(
                insert(uinfo).values(unick="holder", guest_key=hash_guest_key(PEPPER, k))
            )
            logins = [asyncio.ensure_future(b.guest_login(k)) for b in batchers]
            await _wait_for_lock_waits(holder, 3)
            await conn.rollback()
        results = await asyncio.gather(*logins, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        accounts = [r for r in results if isinstance(r, tuple)]
        assert len({a.uid for a, _ in accounts}) == 1
        assert sum(created for _, created in accounts) == 1
        if sum(b.stats["retries"] for b in batchers):
            break
    assert sum(b.stats["retries"] for b in batchers) > 0  # a deadlock really happened
