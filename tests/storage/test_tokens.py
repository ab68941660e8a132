"""One suite for both token stores (SQL on SQLite and MariaDB, Redis), on a fake clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from netbus.storage import StorageError, create_engine
from netbus.storage.errors import AuthRefused, Refusal
from netbus.storage.schema import MAX_UID, session_tokens
from netbus.storage.tokens import IssuedToken, TokenStore, hash_token, parse_token
from netbus.storage.tokens_redis import RedisTokenStore
from netbus.storage.tokens_sql import SqlTokenStore
from tests.registry.redis_server import free_port

from .conftest import PEPPER, FakeClock, SharedBackend

MakeTokens = Callable[..., TokenStore]


@pytest.fixture
def make_tokens(token_backend: SharedBackend, clock: FakeClock) -> MakeTokens:
    def make(*, ttl: int = 3600, pepper: bytes = PEPPER) -> TokenStore:
        if token_backend.redis is not None:
            return RedisTokenStore(
                token_backend.redis, pepper, prefix=token_backend.prefix, ttl=ttl, clock=clock
            )
        assert token_backend.engine is not None
        return SqlTokenStore(token_backend.engine, pepper, ttl=ttl, clock=clock)

    return make


@pytest.fixture
def tokens(make_tokens: MakeTokens) -> TokenStore:
    return make_tokens()


async def refused(call: object) -> Refusal:
    with pytest.raises(AuthRefused) as info:
        await call  # type: ignore[misc]
    return info.value.reason


# --- issue and check ---------------------------------------------------------------------


async def test_issue_then_check(tokens: TokenStore, clock: FakeClock) -> None:
    issued = await tokens.issue(42)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", issued.token)
    assert (issued.uid, issued.created_at, issued.expires_at) == (
        42,
        int(clock.now),
        int(clock.now) + 3600,
    )
    assert issued.token not in repr(issued)
    clock.advance(10)
    info = await tokens.check(issued.token)
    assert info == issued.info
    assert await tokens.check(issued.token) == info  # check does not consume


async def test_tokens_are_distinct(tokens: TokenStore) -> None:
    issued = [await tokens.issue(7) for _ in range(20)]
    assert len({t.token for t in issued}) == 20
    for t in issued:
        assert (await tokens.check(t.token)).uid == 7


@pytest.mark.parametrize("uid", [0, -1, MAX_UID + 1])
async def test_issue_refuses_bad_uid(tokens: TokenStore, uid: int) -> None:
    with pytest.raises(ValueError):
        await tokens.issue(uid)


BAD_TOKENS: list[object] = [
    "",
    "x",
    "A" * 42,
    "A" * 44,
    "A" * 42 + "=",
    "A" * 42 + "\x00",
    "' OR 1=1 --" + "A" * 32,
    None,
    42,
    b"A" * 43,
    ["A" * 43],
]


@pytest.mark.parametrize("bad", BAD_TOKENS, ids=repr)
async def test_malformed_tokens_are_unknown(tokens: TokenStore, bad: object) -> None:
    await tokens.issue(1)
    assert await refused(tokens.check(bad)) is Refusal.TOKEN_UNKNOWN  # type: ignore[arg-type]
    assert await refused(tokens.rotate(bad)) is Refusal.TOKEN_UNKNOWN  # type: ignore[arg-type]
    assert await tokens.revoke(bad) is False  # type: ignore[arg-type]


async def test_well_formed_but_never_issued(tokens: TokenStore) -> None:
    assert await refused(tokens.check("A" * 43)) is Refusal.TOKEN_UNKNOWN
    assert await refused(tokens.rotate("A" * 43)) is Refusal.TOKEN_UNKNOWN


async def test_another_pepper_knows_no_token(make_tokens: MakeTokens) -> None:
    issued = await make_tokens().issue(5)
    other = make_tokens(pepper=b"another pepper entirely")
    assert await refused(other.check(issued.token)) is Refusal.TOKEN_UNKNOWN


# --- expiry --------------------------------------------------------------------------------


async def test_token_expires(tokens: TokenStore, clock: FakeClock) -> None:
    issued = await tokens.issue(3)
    clock.advance(3599)
    assert (await tokens.check(issued.token)).uid == 3
    clock.advance(1)
    assert await refused(tokens.check(issued.token)) is Refusal.TOKEN_EXPIRED
    assert await refused(tokens.rotate(issued.token)) is Refusal.TOKEN_EXPIRED


async def test_rotation_slides_the_expiry(tokens: TokenStore, clock: FakeClock) -> None:
    current = await tokens.issue(3)
    for _ in range(5):
        clock.advance(3000)
        current = await tokens.rotate(current.token)
    assert current.expires_at == int(clock.now) + 3600
    assert (await tokens.check(current.token)).uid == 3


# --- rotation and replay -------------------------------------------------------------------


async def test_rotate_consumes_and_issues_successor(tokens: TokenStore, clock: FakeClock) -> None:
    first = await tokens.issue(9)
    clock.advance(60)
    second = await tokens.rotate(first.token)
    assert second.token != first.token
    assert (second.uid, second.created_at, second.expires_at) == (
        9,
        int(clock.now),
        int(clock.now) + 3600,
    )
    assert await tokens.check(second.token) == second.info
    third = await tokens.rotate(second.token, uid=9)
    assert (await tokens.check(third.token)).uid == 9


async def test_replayed_token_revokes_its_family(tokens: TokenStore) -> None:
    first = await tokens.issue(9)
    second = await tokens.rotate(first.token)
    third = await tokens.rotate(second.token)
    other_login = await tokens.issue(9)  # another family of the same account

    assert await refused(tokens.rotate(first.token)) is Refusal.TOKEN_REPLAYED
    # the whole family is gone, the live successor included ...
    assert await refused(tokens.check(third.token)) is Refusal.TOKEN_UNKNOWN
    assert await refused(tokens.rotate(second.token)) is Refusal.TOKEN_UNKNOWN
    assert await refused(tokens.rotate(first.token)) is Refusal.TOKEN_UNKNOWN
    # ... but not the account's other sessions
    assert (await tokens.check(other_login.token)).uid == 9


async def test_checking_a_used_token_is_a_replay_too(tokens: TokenStore) -> None:
    first = await tokens.issue(9)
    second = await tokens.rotate(first.token)
    assert await refused(tokens.check(first.token)) is Refusal.TOKEN_REPLAYED
    assert await refused(tokens.check(second.token)) is Refusal.TOKEN_UNKNOWN


async def test_concurrent_rotations_one_wins_then_family_dies(tokens: TokenStore) -> None:
    first = await tokens.issue(11)
    results = await asyncio.gather(
        *(tokens.rotate(first.token) for _ in range(8)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, IssuedToken)]
    losers = [r for r in results if isinstance(r, AuthRefused)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert {r.reason for r in losers} <= {Refusal.TOKEN_REPLAYED, Refusal.TOKEN_UNKNOWN}
    assert Refusal.TOKEN_REPLAYED in {r.reason for r in losers}
    # a replay revoked the family, the winner's successor with it
    assert await refused(tokens.check(winners[0].token)) is Refusal.TOKEN_UNKNOWN


async def test_token_of_another_account_never_binds(tokens: TokenStore) -> None:
    alice = await tokens.issue(100)
    bob = await tokens.issue(200)
    assert await refused(tokens.rotate(alice.token, uid=200)) is Refusal.TOKEN_WRONG_ACCOUNT
    assert await refused(tokens.rotate(bob.token, uid=100)) is Refusal.TOKEN_WRONG_ACCOUNT
    # refused, not consumed: each owner still resumes with its own token
    assert (await tokens.rotate(alice.token, uid=100)).uid == 100
    assert (await tokens.rotate(bob.token, uid=200)).uid == 200


async def test_wrong_account_with_a_used_token_revokes_nothing(tokens: TokenStore) -> None:
    first = await tokens.issue(100)
    second = await tokens.rotate(first.token)
    assert await refused(tokens.rotate(first.token, uid=200)) is Refusal.TOKEN_WRONG_ACCOUNT
    assert (await tokens.check(second.token)).uid == 100


# --- revocation ----------------------------------------------------------------------------


async def test_revoke_logs_out_one_family(tokens: TokenStore) -> None:
    first = await tokens.issue(5)
    second = await tokens.rotate(first.token)
    other = await tokens.issue(5)
    assert await tokens.revoke(second.token) is True
    assert await refused(tokens.check(second.token)) is Refusal.TOKEN_UNKNOWN
    assert await refused(tokens.check(first.token)) is Refusal.TOKEN_UNKNOWN
    assert (await tokens.check(other.token)).uid == 5
    assert await tokens.revoke(second.token) is False
    assert await tokens.revoke("A" * 43) is False


async def test_revoke_uid_ends_every_session_of_one_account(tokens: TokenStore) -> None:
    mine = [await tokens.issue(5) for _ in range(3)]
    rotated = await tokens.rotate(mine[0].token)
    theirs = await tokens.issue(6)
    assert await tokens.revoke_uid(5) >= 4  # three families, one with a used token
    for t in [*mine, rotated]:
        assert await refused(tokens.check(t.token)) is Refusal.TOKEN_UNKNOWN
    assert (await tokens.check(theirs.token)).uid == 6
    assert await tokens.revoke_uid(5) == 0
    fresh = await tokens.issue(5)  # the account can log in again
    assert (await tokens.check(fresh.token)).uid == 5


# --- storage form and purge ----------------------------------------------------------------


async def _stored_digests(backend: SharedBackend) -> set[str]:
    if backend.redis is not None:
        keys = [k async for k in backend.redis.scan_iter(match=f"{backend.prefix}tok:*")]
        return {k.removeprefix(f"{backend.prefix}tok:") for k in keys}
    assert backend.engine is not None
    async with backend.engine.connect() as conn:
        return set((await conn.execute(select(session_tokens.c.digest))).scalars())


async def test_only_digests_are_stored(tokens: TokenStore, token_backend: SharedBackend) -> None:
    issued = await tokens.issue(8)
    rotated = await tokens.rotate(issued.token)
    stored = await _stored_digests(token_backend)
    assert stored == {hash_token(PEPPER, issued.token), hash_token(PEPPER, rotated.token)}
    assert not {issued.token, rotated.token} & stored


async def test_sql_purge_is_bounded(sql_backend: SharedBackend, clock: FakeClock) -> None:
    assert sql_backend.engine is not None
    tokens = SqlTokenStore(sql_backend.engine, PEPPER, ttl=3600, clock=clock)
    old = [await tokens.issue(1) for _ in range(5)]
    await tokens.rotate(old[0].token)  # a used token expires like the others
    clock.advance(3600)
    fresh = await tokens.issue(2)
    counts = [await tokens.purge(limit=2) for _ in range(4)]
    assert counts == [2, 2, 2, 0]
    assert await _stored_digests(sql_backend) == {hash_token(PEPPER, fresh.token)}
    assert (await tokens.check(fresh.token)).uid == 2


async def test_redis_keys_expire_with_the_token(
    redis_backend: SharedBackend, clock: FakeClock
) -> None:
    client = redis_backend.redis
    assert client is not None
    tokens = RedisTokenStore(client, PEPPER, prefix=redis_backend.prefix, ttl=600, clock=clock)
    issued = await tokens.issue(4)
    p = redis_backend.prefix
    ttl = await client.ttl(f"{p}tok:{hash_token(PEPPER, issued.token)}")
    assert 590 <= ttl <= 600
    families = await client.smembers(f"{p}tokuid:4")
    assert len(families) == 1
    for key in [f"{p}tokuid:4", f"{p}tokfam:{next(iter(families))}"]:
        assert 590 <= await client.ttl(key) <= 600
    assert await tokens.purge() == 0


# --- failures ------------------------------------------------------------------------------


async def test_sql_outage_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    path.mkdir()  # a directory where the database file should be
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        tokens = SqlTokenStore(engine, PEPPER)
        with pytest.raises(StorageError):
            await tokens.issue(1)
        with pytest.raises(StorageError):
            await tokens.rotate(parse_token("A" * 43))
    finally:
        await engine.dispose()


async def test_redis_outage_is_a_storage_error() -> None:
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", decode_responses=True, socket_connect_timeout=1
    )
    try:
        tokens = RedisTokenStore(client, PEPPER, timeout=2.0)
        with pytest.raises(StorageError) as info:
            await tokens.issue(1)
        assert "redis" in str(info.value)
        with pytest.raises(StorageError):
            await tokens.check("A" * 43)
    finally:
        await client.aclose()


async def test_sql_rows_hold_uid_and_family(sql_backend: SharedBackend) -> None:
    assert sql_backend.engine is not None
    tokens = SqlTokenStore(sql_backend.engine, PEPPER)
    issued = await tokens.issue(12)
    await tokens.rotate(issued.token)
    async with sql_backend.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    session_tokens.c.uid,
                    func.count(),
                    func.count(func.distinct(session_tokens.c.family)),
                ).group_by(session_tokens.c.uid)
            )
        ).all()
    assert [tuple(r) for r in rows] == [(12, 2, 1)]
