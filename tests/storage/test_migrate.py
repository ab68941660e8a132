"""Alembic migrations, driven from code, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from netbus.storage import (
    AccountStore,
    alembic_config,
    create_engine,
    hash_guest_key,
    metadata,
    upgrade,
    upgrade_sync,
)
from netbus.storage.credentials import CredentialStore
from netbus.storage.errors import AuthRefused
from netbus.storage.lockout import LockoutPolicy, MemoryAttemptLimiter
from netbus.storage.migrate import MIGRATIONS_DIR
from netbus.storage.passwords import Argon2Hasher, Argon2Params
from netbus.storage.tokens_sql import SqlTokenStore

from .conftest import HEAD_REVISION, PEPPER

_ROOT = str(MIGRATIONS_DIR.parents[2])  # the checkout, so child processes import netbus

EXPECTED_COLUMNS = {
    "uid",
    "unick",
    "uname",
    "upwd",
    "usex",
    "uface",
    "uphone",
    "uemail",
    "ucity",
    "guest_key",
    "uname_key",
    "is_guest",
    "uvip",
    "vip_endtime",
    "status",
    "created_at",
    "last_login_at",
}


def _describe_schema(conn: Connection) -> dict[str, object]:
    insp = inspect(conn)
    version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return {
        "tables": set(insp.get_table_names()),
        "columns": {c["name"] for c in insp.get_columns("uinfo")},
        "pk": insp.get_pk_constraint("uinfo")["constrained_columns"],
        "indexes": {
            i["name"]: (i["column_names"], bool(i["unique"])) for i in insp.get_indexes("uinfo")
        },
        "version": version,
    }


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, metadata)


async def _inspect(url: str, fn):  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def test_upgrade_creates_schema(empty_db_url: str) -> None:
    await upgrade(empty_db_url)
    schema = await _inspect(empty_db_url, _describe_schema)
    assert {"uinfo", "alembic_version"} <= schema["tables"]
    assert schema["columns"] == EXPECTED_COLUMNS
    assert schema["pk"] == ["uid"]
    assert schema["indexes"]["ix_uinfo_guest_key"] == (["guest_key"], True)
    assert schema["version"] == [HEAD_REVISION]


async def test_migrations_match_schema_module(db_url: str) -> None:
    assert await _inspect(db_url, _diff) == []


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade(db_url)  # db_url is already at head
    await upgrade(db_url)
    schema = await _inspect(db_url, _describe_schema)
    assert schema["version"] == [HEAD_REVISION]


async def test_downgrade_then_upgrade_again(db_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "base")
    schema = await _inspect(db_url, lambda c: set(inspect(c).get_table_names()))
    assert "uinfo" not in schema
    await upgrade(db_url)
    assert "uinfo" in await _inspect(db_url, lambda c: set(inspect(c).get_table_names()))


async def test_upgrade_sync_refuses_running_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="await upgrade"):
        upgrade_sync(f"sqlite+aiosqlite:///{tmp_path}/t.db")


def test_upgrade_sync_without_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path}/sub/t.db"
    upgrade_sync(url)
    upgrade_sync(url)
    assert (tmp_path / "sub" / "t.db").is_file()


def test_config_needs_no_ini_and_keeps_url_out_of_options() -> None:
    url = "mysql+asyncmy://root:p%40ss%25word@127.0.0.1/db"
    cfg = alembic_config(url)
    assert cfg.config_file_name is None
    assert cfg.get_main_option("script_location") == str(MIGRATIONS_DIR)
    assert cfg.get_main_option("sqlalchemy.url") is None
    assert cfg.attributes["url"] == url
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()


async def test_concurrent_upgrades_in_one_process(empty_db_url: str) -> None:
    await asyncio.gather(*(upgrade(empty_db_url) for _ in range(4)))
    assert (await _inspect(empty_db_url, _describe_schema))["version"] == [HEAD_REVISION]


_CHILD = "import sys\nfrom netbus.storage import upgrade_sync\nupgrade_sync(sys.argv[1])\n"


def test_concurrent_upgrades_from_several_processes(empty_db_url: str) -> None:
    # Every center server migrates on start: racing processes must all succeed. A plain
    # (sync) test, so it runs once per backend rather than once per event loop as well.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, empty_db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0] * 3, [err.decode()[-500:] for _, err in outputs]
    schema = asyncio.run(_inspect(empty_db_url, _describe_schema))
    assert schema["version"] == [HEAD_REVISION]
    assert "uinfo" in schema["tables"]


async def test_upgrade_0001_database_with_data(empty_db_url: str) -> None:
    # A database as the previous release left it: schema 0001 with accounts in it.
    await upgrade(empty_db_url, "0001")
    engine = create_engine(empty_db_url)
    try:
        async with engine.begin() as conn:
            for i in range(3):
                await conn.execute(
                    text(
                        "INSERT INTO uinfo (unick, guest_key, is_guest, status, created_at,"
                        " last_login_at, uname, upwd) VALUES (:n, :k, 1, :s, 5, 6, :un, :pw)"
                    ),
                    {
                        "n": f"遊客00000{i}",
                        "k": hash_guest_key(PEPPER, f"old-guest-key-{i}-0123456789"),
                        "s": 1 if i == 2 else 0,
                        "un": "legacy_name" if i == 1 else None,
                        "pw": "5f4dcc3b5aa765d61d8327deb882cf99" if i == 1 else None,
                    },
                )
        await upgrade(empty_db_url)
        schema = await _inspect(empty_db_url, _describe_schema)
        assert schema["version"] == [HEAD_REVISION]
        assert {"session_tokens", "login_failures"} <= schema["tables"]
        assert schema["indexes"]["ix_uinfo_uname_key"] == (["uname_key"], True)

        store = AccountStore(engine, PEPPER)
        uids = []
        for i in range(3):
            account, created = await store.guest_login(f"old-guest-key-{i}-0123456789")
            assert not created and account.unick == f"遊客00000{i}"
            uids.append(account.uid)
        assert uids == [1, 2, 3]
        assert (await store.get(3)).is_disabled  # type: ignore[union-attr]
        assert (await store.get(2)).username == "legacy_name"  # type: ignore[union-attr]

        # the new features work on the old rows; a legacy (non-argon2) hash never verifies
        hasher = Argon2Hasher(Argon2Params(time_cost=1, memory_kib=64, parallelism=1))
        try:
            creds = CredentialStore(
                engine,
                PEPPER,
                hasher,
                account_limiter=MemoryAttemptLimiter(
                    LockoutPolicy(max_failures=5, lockout=1, max_lockout=1, window=1)
                ),
            )
            account = await creds.register(1, "upgraded", "correct horse battery")
            assert account.uid == 1
            assert (await creds.login("UPGRADED", "correct horse battery")).uid == 1
            with pytest.raises(AuthRefused):
                await creds.login("legacy_name", "password")
        finally:
            hasher.close()
        tokens = SqlTokenStore(engine, PEPPER)
        assert (await tokens.check((await tokens.issue(1)).token)).uid == 1
        new, created = await store.guest_login("a-brand-new-guest-key-0001")
        assert created and new.uid == 4
    finally:
        await engine.dispose()


async def test_downgrade_to_0001_keeps_accounts(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        account, _ = await AccountStore(engine, PEPPER).guest_login("kept-through-downgrade-01")
    finally:
        await engine.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0001")
    schema = await _inspect(db_url, _describe_schema)
    assert schema["version"] == ["0001"]
    assert "session_tokens" not in schema["tables"]
    assert "uname_key" not in schema["columns"]
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        again, created = await AccountStore(engine, PEPPER).guest_login("kept-through-downgrade-01")
    finally:
        await engine.dispose()
    assert (again.uid, created) == (account.uid, False)
