"""Storage fixtures: every test runs on a real SQLite file and on the machine's real MariaDB.

MariaDB: the base URL comes from ``NETBUS_TEST_MYSQL_URL`` (default
``mysql+asyncmy://root@127.0.0.1:3306``). Each test gets a database of its own,
``netbus_test_<hex>``, dropped afterwards. When the server does not answer, the MariaDB
variants FAIL under CI (env ``CI`` or ``NETBUS_TEST_REQUIRE_SERVICES`` set, so a broken CI
setup cannot pass by skipping) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from alembic.script import ScriptDirectory
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from netbus.storage import AccountStore, alembic_config, create_engine, upgrade
from tests.registry.redis_server import REDIS_URL, delete_prefix, redis_unavailable, unique_prefix

__all__ = [
    "HEAD_REVISION",
    "MYSQL_BASE_URL",
    "PEPPER",
    "FakeClock",
    "RunSql",
    "SharedBackend",
    "mariadb_database",
    "open_backend",
]

#: The newest migration, which ``upgrade`` brings every test database to.
HEAD_REVISION = ScriptDirectory.from_config(alembic_config("")).get_current_head()

PEPPER = b"netbus-test-pepper-0123456789abcdef"
MYSQL_BASE_URL = os.environ.get("NETBUS_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")

_mariadb_down: list[str] = []  # the first probe's failure, so later tests skip at once


def _admin_engine() -> AsyncEngine:
    url = make_url(MYSQL_BASE_URL).set(database=None)
    url = url.update_query_dict({"connect_timeout": "3"})
    return create_async_engine(url, poolclass=NullPool)


def _unavailable(reason: str) -> None:
    message = f"MariaDB at {make_url(MYSQL_BASE_URL).render_as_string()} unavailable: {reason}"
    if os.environ.get("CI") or os.environ.get("NETBUS_TEST_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def mariadb_database() -> AsyncIterator[str]:
    """Create a scratch database on the test MariaDB, yield its URL, drop it."""
    if _mariadb_down:
        _unavailable(_mariadb_down[0])
    admin = _admin_engine()
    name = f"netbus_test_{secrets.token_hex(6)}"
    try:
        quoted = admin.dialect.identifier_preparer.quote(name)
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4"))
        except Exception as err:  # the server is not there (or refuses us)
            _mariadb_down.append(f"{type(err).__name__}: {err}")
            _unavailable(_mariadb_down[0])
        try:
            yield make_url(MYSQL_BASE_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                # A test that failed half-way may leave a session inside a transaction on
                # the database, and DROP would wait for it (lock_wait_timeout: a day).
                await conn.execute(text("SET SESSION lock_wait_timeout = 10"))
                leftover = await conn.execute(
                    text(
                        "SELECT ID FROM information_schema.PROCESSLIST"
                        " WHERE DB = :db AND ID <> CONNECTION_ID()"
                    ),
                    {"db": name},
                )
                for (session_id,) in leftover.all():
                    with contextlib.suppress(Exception):  # it may have ended meanwhile
                        await conn.execute(text("KILL :id"), {"id": session_id})
                await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database (not migrated) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/t.db"
        return
    async with mariadb_database() as url:
        yield url


@pytest.fixture
async def mariadb_url() -> AsyncIterator[str]:
    """URL of a migrated MariaDB database, for MariaDB-only tests."""
    async with mariadb_database() as url:
        await upgrade(url)
        yield url


@pytest.fixture
async def db_url(empty_db_url: str) -> str:
    """URL of a database migrated to head."""
    await upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    """Factory for engines; all of them are disposed after the test."""
    engines: list[AsyncEngine] = []

    def make(url: str) -> AsyncEngine:
        engine = create_engine(url)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def make_store(
    make_engine: Callable[[str], AsyncEngine],
) -> Callable[..., AccountStore]:
    """Factory for stores, each on an engine (and connection pool) of its own."""

    def make(url: str, *, timeout: float | None = 10.0) -> AccountStore:
        return AccountStore(make_engine(url), PEPPER, timeout=timeout)

    return make


@pytest.fixture
def store(db_url: str, make_store: Callable[..., AccountStore]) -> AccountStore:
    """A store on the migrated database of each backend."""
    return make_store(db_url)


RunSql = Callable[..., Awaitable[list[tuple[object, ...]]]]


@pytest.fixture
def run_sql(db_url: str, make_engine: Callable[[str], AsyncEngine]) -> RunSql:
    """Run one statement on the test database in its own transaction, return the rows."""
    engine = make_engine(db_url)

    async def run(statement: object, params: dict[str, object] | None = None) -> list[tuple]:
        stmt = text(statement) if isinstance(statement, str) else statement
        async with engine.begin() as conn:
            result = await conn.execute(stmt, params or {})  # type: ignore[arg-type]
            return [tuple(row) for row in result] if result.returns_rows else []

    return run


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class SharedBackend:
    """Where a shared store keeps its state: a migrated database, or Redis under a prefix."""

    kind: str  #: "memory", "sqlite", "mariadb" or "redis"
    engine: AsyncEngine | None = None
    redis: aioredis.Redis | None = None
    prefix: str = ""


async def _redis_client() -> aioredis.Redis:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as err:
        await client.aclose()
        redis_unavailable(f"{type(err).__name__}: {err}")
    return client


@asynccontextmanager
async def open_backend(kind: str, tmp_path: Path) -> AsyncIterator[SharedBackend]:
    """Open a `SharedBackend` of ``kind``; clean it up afterwards."""
    if kind == "memory":
        yield SharedBackend(kind)
    elif kind == "redis":
        client = await _redis_client()
        prefix = unique_prefix()
        try:
            yield SharedBackend(kind, redis=client, prefix=prefix)
        finally:
            await client.aclose()
            await delete_prefix(REDIS_URL, prefix)
    elif kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
        await upgrade(url)
        engine = create_engine(url)
        try:
            yield SharedBackend(kind, engine=engine)
        finally:
            await engine.dispose()
    else:
        async with mariadb_database() as url:
            await upgrade(url)
            engine = create_engine(url)
            try:
                yield SharedBackend(kind, engine=engine)
            finally:
                await engine.dispose()


@pytest.fixture(params=["sqlite", "mariadb", "redis"])
async def token_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SharedBackend]:
    """Each backend of the token stores."""
    async with open_backend(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture(params=["memory", "sqlite", "mariadb", "redis"])
async def limiter_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SharedBackend]:
    """Each backend of the lockout limiters."""
    async with open_backend(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
async def redis_backend(tmp_path: Path) -> AsyncIterator[SharedBackend]:
    """Redis under a test-private prefix."""
    async with open_backend("redis", tmp_path) as backend:
        yield backend


@pytest.fixture(params=["sqlite", "mariadb"])
async def sql_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SharedBackend]:
    """A migrated database on each SQL backend."""
    async with open_backend(request.param, tmp_path) as backend:
        yield backend
