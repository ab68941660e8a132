"""AuthStore: the composed account API, on each backend combination."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netbus.config import AccountsConfig, load_settings
from netbus.errors import ConfigError
from netbus.storage import (
    AccountNotFound,
    AccountStore,
    AuthOptions,
    AuthRefused,
    AuthStore,
    GuestLoginBatcher,
    Login,
    MemoryAttemptLimiter,
    Refusal,
    SqlTokenStore,
    StorageError,
    create_engine,
    open_auth_store,
)
from netbus.storage.lockout_redis import RedisAttemptLimiter
from netbus.storage.tokens_redis import RedisTokenStore

from .conftest import PEPPER, FakeClock, open_backend

CHEAP = AuthOptions(argon2_time_cost=1, argon2_memory_kib=64, token_ttl=600, purge_interval=0)
PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "mariadb", "sqlite+redis"])
async def auth(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[AuthStore]:
    """An AuthStore on a database, with tokens and counters there or in Redis."""
    kind = request.param.split("+")
    async with open_backend(kind[0], tmp_path) as db:
        assert db.engine is not None
        if len(kind) == 1:
            store = open_auth_store(db.engine, PEPPER, CHEAP, clock=clock)
            await store.start()
            yield store
            await store.close()
            return
        async with open_backend("redis", tmp_path) as cache:
            store = open_auth_store(
                db.engine, PEPPER, CHEAP, redis=cache.redis, redis_prefix=cache.prefix, clock=clock
            )
            await store.start()
            yield store
            await store.close()


async def refusal(call: object) -> AuthRefused:
    with pytest.raises(AuthRefused) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_guest_login_returns_a_token(auth: AuthStore, clock: FakeClock) -> None:
    login = await auth.guest_login("guest-key-0001-abcdefghij")
    assert login.created and login.token is not None
    assert login.token.uid == login.account.uid
    assert login.token.expires_at == int(clock.now) + 600
    info = await auth.check_token(login.token.token)
    assert info == login.token.info
    again = await auth.guest_login("guest-key-0001-abcdefghij")
    assert (again.account, again.created) == (login.account, False)
    assert again.token is not None and again.token.token != login.token.token


async def test_resume_rotates(auth: AuthStore) -> None:
    login = await auth.guest_login("guest-key-0001-abcdefghij")
    assert login.token is not None
    resumed = await auth.resume(login.token.token, uid=login.account.uid)
    assert resumed.account == login.account and not resumed.created
    assert resumed.token is not None and resumed.token.token != login.token.token
    err = await refusal(auth.resume(login.token.token))
    assert err.reason is Refusal.TOKEN_REPLAYED
    err = await refusal(auth.resume(resumed.token.token))
    assert err.reason is Refusal.TOKEN_UNKNOWN  # the replay revoked the family


async def test_resume_refuses_another_account(auth: AuthStore) -> None:
    alice = await auth.guest_login("guest-key-alice-abcdefghij")
    bob = await auth.guest_login("guest-key-bob-0-abcdefghij")
    assert alice.token is not None and bob.token is not None
    err = await refusal(auth.resume(alice.token.token, uid=bob.account.uid))
    assert err.reason is Refusal.TOKEN_WRONG_ACCOUNT
    assert (await auth.resume(alice.token.token, uid=alice.account.uid)).account == alice.account


async def test_disabled_accounts_get_no_token_and_cannot_resume(auth: AuthStore) -> None:
    login = await auth.guest_login("guest-key-0001-abcdefghij")
    other = await auth.guest_login("guest-key-0001-abcdefghij")  # a second session
    assert login.token is not None and other.token is not None
    await auth.accounts.set_status(login.account.uid, 1)
    disabled = await auth.guest_login("guest-key-0001-abcdefghij")
    assert disabled.account.is_disabled and disabled.token is None
    err = await refusal(auth.resume(login.token.token))
    assert err.reason is Refusal.ACCOUNT_DISABLED
    err = await refusal(auth.check_token(other.token.token))
    assert err.reason is Refusal.TOKEN_UNKNOWN  # every session of the account ended


async def test_resume_of_a_deleted_account(auth: AuthStore) -> None:
    token = await auth.tokens.issue(424_242)  # no such account
    with pytest.raises(AccountNotFound):
        await auth.resume(token.token)


async def test_register_login_change_password(auth: AuthStore) -> None:
    guest = await auth.guest_login("guest-key-0001-abcdefghij")
    account = await auth.register(guest.account.uid, "Hero", PASSWORD)
    assert account.username == "Hero"
    login = await auth.password_login("hero", PASSWORD, source="192.0.2.1")
    assert login.account.uid == guest.account.uid and login.token is not None
    new_token = await auth.change_password(guest.account.uid, PASSWORD, "another good secret")
    assert new_token.uid == guest.account.uid
    for old in [guest.token, login.token]:
        assert old is not None
        err = await refusal(auth.check_token(old.token))
        assert err.reason is Refusal.TOKEN_UNKNOWN
    assert (await auth.check_token(new_token.token)).uid == guest.account.uid
    err = await refusal(auth.password_login("hero", PASSWORD))
    assert err.reason is Refusal.BAD_CREDENTIALS
    assert (await auth.password_login("HERO", "another good secret")).token is not None


async def test_lockout_uses_the_configured_policy(auth: AuthStore) -> None:
    guest = await auth.guest_login("guest-key-0001-abcdefghij")
    await auth.register(guest.account.uid, "target", PASSWORD)
    for _ in range(5):
        await refusal(auth.password_login("target", "wrong password"))
    err = await refusal(auth.password_login("target", PASSWORD))
    assert (err.reason, err.retry_after) == (Refusal.LOCKED, 30.0)


async def test_logout_and_purge(auth: AuthStore, clock: FakeClock) -> None:
    first = await auth.guest_login("guest-key-0001-abcdefghij")
    second = await auth.guest_login("guest-key-0001-abcdefghij")
    assert first.token is not None and second.token is not None
    assert await auth.logout(first.token.token) is True
    assert await auth.logout(first.token.token) is False
    assert (await auth.check_token(second.token.token)).uid == first.account.uid
    clock.advance(601)
    await auth.purge_expired()
    err = await refusal(auth.check_token(second.token.token))
    assert err.reason in (Refusal.TOKEN_EXPIRED, Refusal.TOKEN_UNKNOWN)


# --- composition -------------------------------------------------------------------------


async def test_backends_follow_session_store(tmp_path: Path) -> None:
    async with open_backend("sqlite", tmp_path) as db:
        assert db.engine is not None
        plain = open_auth_store(db.engine, PEPPER, CHEAP)
        assert isinstance(plain.tokens, SqlTokenStore)
        assert isinstance(plain.credentials.ip_limiter, MemoryAttemptLimiter)
        assert isinstance(plain.guests, GuestLoginBatcher)
        one_by_one = open_auth_store(
            db.engine, PEPPER, dataclasses.replace(CHEAP, login_batch=False)
        )
        assert one_by_one.guests is None
        assert (await one_by_one.guest_login("guest-key-0001-abcdefghij")).created
        with pytest.raises(ConfigError, match="redis"):
            open_auth_store(db.engine, PEPPER, dataclasses.replace(CHEAP, session_store="redis"))
        async with open_backend("redis", tmp_path) as cache:
            shared = open_auth_store(db.engine, PEPPER, CHEAP, redis=cache.redis)
            assert isinstance(shared.tokens, RedisTokenStore)
            assert isinstance(shared.credentials.account_limiter, RedisAttemptLimiter)
            assert isinstance(shared.credentials.ip_limiter, RedisAttemptLimiter)
            pinned = open_auth_store(
                db.engine,
                PEPPER,
                dataclasses.replace(CHEAP, session_store="database"),
                redis=cache.redis,
            )
            assert isinstance(pinned.tokens, SqlTokenStore)
        for store in [plain, one_by_one, shared, pinned]:
            await store.close()


async def test_start_and_close(tmp_path: Path) -> None:
    async with open_backend("sqlite", tmp_path) as db:
        assert db.engine is not None
        store = open_auth_store(db.engine, PEPPER, dataclasses.replace(CHEAP, purge_interval=60))
        await store.start()
        assert store.credentials.hasher.stats["hashed"] == 0
        assert (await store.guest_login("guest-key-0001-abcdefghij")).created
        await store.close()
        await store.close()  # idempotent


def test_options_mirror_the_config_keys() -> None:
    config = AccountsConfig()
    assert AuthOptions(**config.model_dump()) == AuthOptions()
    assert {f.name for f in dataclasses.fields(AuthOptions)} == set(AccountsConfig.model_fields)
    settings = load_settings(center={"accounts": {"token_ttl": 120, "session_store": "database"}})
    options = AuthOptions(**settings.center.accounts.model_dump())
    assert (options.token_ttl, options.session_store) == (120, "database")


@pytest.mark.parametrize(
    "bad",
    [
        {"account_lockout": 60, "account_lockout_max": 30},
        {"ip_lockout": 60, "ip_lockout_max": 30},
        {"argon2_memory_kib": 10},
        {"token_ttl": 0},
        {"session_store": "memcached"},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_settings(center={"accounts": bad})


def test_login_repr_hides_the_token() -> None:
    from netbus.storage import Account, IssuedToken

    token = IssuedToken("S" * 43, 1, 2, 3)
    login = Login(Account(1, "n", 0, 0, 0, 0, True, 0), True, token)
    assert "S" * 43 not in repr(login)


async def test_a_failed_resume_leaves_the_token_usable(tmp_path: Path) -> None:
    async with open_backend("sqlite", tmp_path) as db:
        assert db.engine is not None
        good = open_auth_store(db.engine, PEPPER, CHEAP)
        login = await good.guest_login("guest-key-0001-abcdefghij")
        assert login.token is not None
        broken_dir = tmp_path / "gone.db"
        broken_dir.mkdir()  # the account table is unreachable for this store
        broken_engine = create_engine(f"sqlite+aiosqlite:///{broken_dir}")
        try:
            broken = AuthStore(
                accounts=AccountStore(broken_engine, PEPPER),
                credentials=good.credentials,
                tokens=good.tokens,
            )
            with pytest.raises(StorageError):
                await broken.resume(login.token.token)
        finally:
            await broken_engine.dispose()
        resumed = await good.resume(login.token.token)  # not consumed by the failed attempt
        assert resumed.account.uid == login.account.uid
        await good.close()
