"""create_engine settings per backend and redact_url."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from netbus.errors import ConfigError
from netbus.storage import create_engine, redact_url
from netbus.storage.engine import MYSQL_POOL_OPTIONS


async def _pragma(engine, name: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"PRAGMA {name}"))).scalar()


async def test_sqlite_pragmas_and_parent_dir(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "gs.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        assert db.parent.is_dir()  # created by the factory, before any connection
        assert await _pragma(engine, "journal_mode") == "wal"
        assert await _pragma(engine, "synchronous") == 1  # NORMAL
        assert await _pragma(engine, "busy_timeout") == 5000
        assert await _pragma(engine, "foreign_keys") == 1
    finally:
        await engine.dispose()


async def test_sqlite_url_timeout_sets_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db?timeout=0.25")
    try:
        assert await _pragma(engine, "busy_timeout") == 250
    finally:
        await engine.dispose()


async def test_sqlite_memory_url_works() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("scheme", ["mysql+asyncmy", "mariadb+asyncmy"])
async def test_mysql_pool_settings(scheme: str) -> None:
    # Nothing connects: the settings are checked on the pool object.
    engine = create_engine(f"{scheme}://u:pw@127.0.0.1:1/db")
    try:
        pool = engine.sync_engine.pool
        assert pool._pre_ping is True
        assert pool._recycle == MYSQL_POOL_OPTIONS["pool_recycle"] == 1800
        assert pool.size() == 10
        assert pool._max_overflow == 20
        assert engine.sync_engine.hide_parameters is True
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u@h/db",  # backend not supported
        "sqlite:///sync.db",  # sync driver
        "sqlite+aiosqlite:///x.db?timeout=soon",  # not a number
        "mysql+nosuchdriver://u@h/db",
        "not a url",
    ],
)
def test_unusable_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        create_engine(url)


def test_config_error_hides_password() -> None:
    with pytest.raises(ConfigError) as info:
        create_engine("postgresql+asyncpg://user:hunter2secret@h/db")
    assert "hunter2secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql+asyncmy://root:s3cret@db:3306/gs", "mysql+asyncmy://root:***@db:3306/gs"),
        ("mysql+asyncmy://root@127.0.0.1:3306", "mysql+asyncmy://root@127.0.0.1:3306"),
        ("sqlite+aiosqlite:///data/gs.db", "sqlite+aiosqlite:///data/gs.db"),
        (
            "mysql+asyncmy://u@h/db?password=s3cret&charset=utf8mb4",
            "mysql+asyncmy://u@h/db?charset=utf8mb4&password=redacted",
        ),
        ("::: s3cret", "<unparseable database URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)
