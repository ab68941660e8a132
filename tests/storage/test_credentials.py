"""Register, password login, change password and lockout, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from netbus.storage import AccountNotFound, AccountStore
from netbus.storage.credentials import CredentialStore, lockout_key
from netbus.storage.errors import AuthRefused, Refusal
from netbus.storage.lockout import LockoutPolicy, MemoryAttemptLimiter
from netbus.storage.lockout_sql import SqlAttemptLimiter
from netbus.storage.passwords import Argon2Hasher, Argon2Params

from .conftest import PEPPER, FakeClock, RunSql

CHEAP = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)
ACCOUNT_POLICY = LockoutPolicy(max_failures=3, lockout=30.0, max_lockout=600.0, window=3600.0)
IP_POLICY = LockoutPolicy(max_failures=6, lockout=60.0, max_lockout=600.0, window=3600.0)
PASSWORD = "correct horse battery"


@dataclass
class Env:
    accounts: AccountStore
    creds: CredentialStore
    hasher: Argon2Hasher
    engine: AsyncEngine
    clock: FakeClock

    async def guest(self, n: int = 0) -> int:
        account, _ = await self.accounts.guest_login(f"guest-key-{n:04d}-abcdefghij")
        return account.uid

    def store(self, hasher: Argon2Hasher) -> CredentialStore:
        """Another store (another center) on the same database and limiters."""
        return CredentialStore(
            self.engine,
            PEPPER,
            hasher,
            account_limiter=self.creds.account_limiter,
            ip_limiter=self.creds.ip_limiter,
            clock=self.clock,
        )


@pytest.fixture
def hasher() -> Iterator[Argon2Hasher]:
    h = Argon2Hasher(CHEAP)
    yield h
    h.close()


@pytest.fixture
def env(
    db_url: str,
    make_engine: Callable[[str], AsyncEngine],
    clock: FakeClock,
    hasher: Argon2Hasher,
) -> Env:
    engine = make_engine(db_url)
    creds = CredentialStore(
        engine,
        PEPPER,
        hasher,
        account_limiter=SqlAttemptLimiter(engine, ACCOUNT_POLICY, clock=clock),
        ip_limiter=MemoryAttemptLimiter(IP_POLICY, clock=clock),
        clock=clock,
    )
    return Env(AccountStore(engine, PEPPER), creds, hasher, engine, clock)


async def refusal(call: object) -> AuthRefused:
    with pytest.raises(AuthRefused) as info:
        await call  # type: ignore[misc]
    return info.value


# --- register ------------------------------------------------------------------------------


async def test_register_keeps_uid_and_guest_key(env: Env, run_sql: RunSql) -> None:
    uid = await env.guest()
    account = await env.creds.register(uid, "Player.One", PASSWORD)
    assert (account.uid, account.username, account.is_guest) == (uid, "Player.One", True)
    again, created = await env.accounts.guest_login("guest-key-0000-abcdefghij")
    assert (again.uid, created, again.username) == (uid, False, "Player.One")
    assert (await env.accounts.get(uid)).username == "Player.One"  # type: ignore[union-attr]
    [(uname, key, upwd)] = await run_sql(
        "SELECT uname, uname_key, upwd FROM uinfo WHERE uid = :u", {"u": uid}
    )
    assert (uname, key) == ("Player.One", "player.one")
    assert upwd.startswith("$argon2id$") and PASSWORD not in upwd


async def test_username_is_case_and_width_insensitive(env: Env) -> None:
    first, second = await env.guest(1), await env.guest(2)
    await env.creds.register(first, "Straße", PASSWORD)
    for variant in ["STRASSE", "strasse", "Ｓｔｒａｓｓｅ"]:
        err = await refusal(env.creds.register(second, variant, PASSWORD))
        assert err.reason is Refusal.USERNAME_TAKEN
    for variant in ["STRASSE", "Ｓｔｒａｓｓｅ", "straße"]:
        assert (await env.creds.login(variant, PASSWORD)).uid == first


async def test_concurrent_registrations_of_one_name(env: Env) -> None:
    uids = [await env.guest(i) for i in range(6)]
    results = await asyncio.gather(
        *(env.creds.register(uid, "Racer", PASSWORD) for uid in uids),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, AuthRefused)]
    assert len(winners) == 1 and len(losers) == 5
    assert {r.reason for r in losers} == {Refusal.USERNAME_TAKEN}
    assert (await env.creds.login("racer", PASSWORD)).uid == winners[0].uid


async def test_register_twice_is_refused(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "first_name", PASSWORD)
    err = await refusal(env.creds.register(uid, "second_name", PASSWORD))
    assert err.reason is Refusal.ALREADY_REGISTERED
    assert (await env.creds.login("first_name", PASSWORD)).uid == uid
    err = await refusal(env.creds.login("second_name", PASSWORD))
    assert err.reason is Refusal.BAD_CREDENTIALS


async def test_register_unknown_or_disabled_account(env: Env) -> None:
    with pytest.raises(AccountNotFound):
        await env.creds.register(999_999, "nobody_here", PASSWORD)
    with pytest.raises(AccountNotFound):
        await env.creds.register(0, "nobody_here", PASSWORD)
    uid = await env.guest()
    await env.accounts.set_status(uid, 1)
    err = await refusal(env.creds.register(uid, "disabled_one", PASSWORD))
    assert err.reason is Refusal.ACCOUNT_DISABLED


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("x", PASSWORD, Refusal.INVALID_USERNAME),
        ("evil\u202ename", PASSWORD, Refusal.INVALID_USERNAME),
        ("fine_name", "short", Refusal.INVALID_PASSWORD),
        ("fine_name", None, Refusal.INVALID_PASSWORD),
    ],
)
async def test_register_checks_the_rules_first(
    env: Env, run_sql: RunSql, username: str, password: object, reason: Refusal
) -> None:
    uid = await env.guest()
    err = await refusal(env.creds.register(uid, username, password))
    assert err.reason is reason
    assert env.hasher.stats["hashed"] == 0  # refused before any hashing
    assert await run_sql("SELECT uid FROM uinfo WHERE uname_key IS NOT NULL") == []


# --- login ---------------------------------------------------------------------------------


async def test_login_returns_the_account_and_records_the_time(env: Env, run_sql: RunSql) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "Player.One", PASSWORD)
    env.clock.advance(1000)
    account = await env.creds.login("player.one", PASSWORD, source="10.0.0.1")
    assert (account.uid, account.username, account.is_disabled) == (uid, "Player.One", False)
    [(last,)] = await run_sql("SELECT last_login_at FROM uinfo WHERE uid = :u", {"u": uid})
    assert last == int(env.clock.now)


async def test_unknown_user_and_wrong_password_look_the_same(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "real_user", PASSWORD)
    before = env.hasher.stats["verified"]
    wrong = await refusal(env.creds.login("real_user", "wrong password!"))
    assert env.hasher.stats["verified"] == before + 1
    unknown = await refusal(env.creds.login("ghost_user", "wrong password!"))
    assert env.hasher.stats["verified"] == before + 2  # the dummy hash was verified too
    assert (wrong.reason, str(wrong), wrong.retry_after) == (
        unknown.reason,
        str(unknown),
        unknown.retry_after,
    )
    assert wrong.reason is Refusal.BAD_CREDENTIALS


async def test_unknown_usernames_lock_like_real_ones(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "real_user", PASSWORD)
    for name in ["real_user", "ghost_user"]:
        seen = []
        for _ in range(4):
            with pytest.raises(AuthRefused) as info:
                await env.creds.login(name, "wrong password!")
            seen.append((info.value.reason, info.value.retry_after))
        assert seen == [(Refusal.BAD_CREDENTIALS, None)] * 3 + [(Refusal.LOCKED, 30.0)]


@pytest.mark.parametrize("password", ["", None, 12345, "x" * 600])
async def test_malformed_login_input_is_bad_credentials(env: Env, password: object) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "real_user", PASSWORD)
    for username in ["real_user", "", None, "bad name", "x" * 500]:
        err = await refusal(env.creds.login(username, password))
        assert err.reason is Refusal.BAD_CREDENTIALS


async def test_disabled_account_logs_in_as_disabled(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "banned_one", PASSWORD)
    await env.accounts.set_status(uid, 7)
    account = await env.creds.login("banned_one", PASSWORD)
    assert account.uid == uid and account.is_disabled
    err = await refusal(env.creds.login("banned_one", "wrong password!"))
    assert err.reason is Refusal.BAD_CREDENTIALS  # no hint without the password


# --- lockout -------------------------------------------------------------------------------


async def test_account_lockout_then_recovery(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "target", PASSWORD)
    for _ in range(3):
        await refusal(env.creds.login("target", "guess-guess", source=f"10.0.0.{_}"))
    err = await refusal(env.creds.login("target", PASSWORD, source="10.9.9.9"))
    assert (err.reason, err.retry_after) == (Refusal.LOCKED, 30.0)
    verified = env.hasher.stats["verified"]
    await refusal(env.creds.login("target", "guess-guess"))
    assert env.hasher.stats["verified"] == verified  # locked: no hash computed
    env.clock.advance(30)
    assert (await env.creds.login("target", PASSWORD)).uid == uid
    # the success reset the count: three more failures before the next lock
    for _ in range(2):
        err = await refusal(env.creds.login("target", "guess-guess"))
        assert err.reason is Refusal.BAD_CREDENTIALS


async def test_lockout_is_shared_by_every_center(env: Env, hasher: Argon2Hasher) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "target", PASSWORD)
    other = env.store(hasher)
    for store in [env.creds, other, env.creds]:
        await refusal(store.login("target", "guess-guess"))
    err = await refusal(other.login("target", PASSWORD))
    assert err.reason is Refusal.LOCKED


async def test_ip_lockout_stops_spraying(env: Env) -> None:
    uids = [await env.guest(i) for i in range(3)]
    for i, uid in enumerate(uids):
        await env.creds.register(uid, f"user_{i}", PASSWORD)
    # one address tries two passwords on each of three accounts: no account reaches 3 ...
    for attempt in range(2):
        for i in range(3):
            err = await refusal(env.creds.login(f"user_{i}", f"spray-{attempt}!", source="6.6.6.6"))
            assert err.reason is Refusal.BAD_CREDENTIALS
    # ... but the address has 6 failures: locked, even for a right password
    err = await refusal(env.creds.login("user_0", PASSWORD, source="6.6.6.6"))
    assert (err.reason, err.retry_after) == (Refusal.LOCKED, 60.0)
    # other addresses and the accounts themselves are fine
    assert (await env.creds.login("user_0", PASSWORD, source="7.7.7.7")).uid == uids[0]
    assert (await env.creds.login("user_1", PASSWORD)).uid == uids[1]


async def test_success_does_not_reset_the_address(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "attacker_own", PASSWORD)
    for i in range(5):
        await refusal(env.creds.login(f"victim_{i}", "spray-spray", source="6.6.6.6"))
        await env.creds.login("attacker_own", PASSWORD, source="6.6.6.6")
    await refusal(env.creds.login("victim_9", "spray-spray", source="6.6.6.6"))
    err = await refusal(env.creds.login("attacker_own", PASSWORD, source="6.6.6.6"))
    assert err.reason is Refusal.LOCKED


async def test_limiter_keys_are_keyed_digests(env: Env, run_sql: RunSql) -> None:
    await refusal(env.creds.login("Secret.Name", "guess-guess"))
    [(subject,)] = await run_sql("SELECT subject FROM login_failures")
    assert re.fullmatch(r"[0-9a-f]{64}", subject)
    assert subject == lockout_key(PEPPER, "acct", "secret.name")
    assert lockout_key(b"other pepper", "acct", "secret.name") != subject


# --- rehash and change password -------------------------------------------------------------


async def test_login_rehashes_after_a_parameter_change(env: Env, run_sql: RunSql) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "old_timer", PASSWORD)
    stronger = Argon2Hasher(Argon2Params(time_cost=2, memory_kib=128, parallelism=1))
    try:
        store = env.store(stronger)
        assert (await store.login("old_timer", PASSWORD)).uid == uid
        [(upwd,)] = await run_sql("SELECT upwd FROM uinfo WHERE uid = :u", {"u": uid})
        assert upwd.startswith("$argon2id$v=19$m=128,t=2,p=1$")
        assert (await store.login("old_timer", PASSWORD)).uid == uid
        assert stronger.stats["hashed"] == 1  # rehashed once, not on every login
    finally:
        stronger.close()


async def test_change_password(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "changer", PASSWORD)
    await env.creds.change_password(uid, PASSWORD, "a brand new secret")
    assert (await env.creds.login("changer", "a brand new secret")).uid == uid
    err = await refusal(env.creds.login("changer", PASSWORD))
    assert err.reason is Refusal.BAD_CREDENTIALS


async def test_change_password_refusals(env: Env) -> None:
    uid = await env.guest()
    err = await refusal(env.creds.change_password(uid, PASSWORD, "a brand new secret"))
    assert err.reason is Refusal.NOT_REGISTERED
    await env.creds.register(uid, "changer", PASSWORD)
    err = await refusal(env.creds.change_password(uid, PASSWORD, "short"))
    assert err.reason is Refusal.INVALID_PASSWORD
    for _ in range(3):
        err = await refusal(env.creds.change_password(uid, "not it!!", "a brand new secret"))
        assert err.reason is Refusal.BAD_CREDENTIALS
    err = await refusal(env.creds.change_password(uid, PASSWORD, "a brand new secret"))
    assert err.reason is Refusal.LOCKED  # the old password is guessable too: same lockout
    env.clock.advance(30)
    await env.creds.change_password(uid, PASSWORD, "a brand new secret")
    with pytest.raises(AccountNotFound):
        await env.creds.change_password(999_999, PASSWORD, "a brand new secret")
    await env.accounts.set_status(uid, 1)
    err = await refusal(env.creds.change_password(uid, "a brand new secret", "another secret"))
    assert err.reason is Refusal.ACCOUNT_DISABLED


async def test_concurrent_password_changes_one_wins(env: Env) -> None:
    uid = await env.guest()
    await env.creds.register(uid, "changer", PASSWORD)
    results = await asyncio.gather(
        env.creds.change_password(uid, PASSWORD, "new secret one"),
        env.creds.change_password(uid, PASSWORD, "new secret two"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["AuthRefused", "NoneType"]
    new = "new secret one" if results[0] is None else "new secret two"
    assert (await env.creds.login("changer", new)).uid == uid
