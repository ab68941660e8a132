"""Password rules and the argon2id hasher (real hashes with cheap parameters)."""

from __future__ import annotations

import asyncio

import argon2
import pytest

from netbus.storage.errors import AuthRefused, Refusal
from netbus.storage.passwords import (
    PASSWORD_MAX_LENGTH,
    Argon2Hasher,
    Argon2Params,
    normalize_password,
)

CHEAP = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)


@pytest.fixture
def hasher() -> Argon2Hasher:
    h = Argon2Hasher(CHEAP, workers=2, max_waiting=4)
    yield h  # type: ignore[misc]
    h.close()


# --- rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("correct horse", "correct horse"),
        ("pässwörd!", "pässwörd!"),
        ("ｐａｓｓｗｏｒｄ", "password"),  # full-width input method
        ("p\u0061\u0308ssword", "p\u00e4ssword"),
        ("12345678", "12345678"),
        ("🔑🔑🔑🔑🔑🔑🔑🔑", "🔑🔑🔑🔑🔑🔑🔑🔑"),
        ("x" * PASSWORD_MAX_LENGTH, "x" * PASSWORD_MAX_LENGTH),
    ],
)
def test_valid_passwords(raw: str, expected: str) -> None:
    assert normalize_password(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "short",
        "1234567",
        "x" * (PASSWORD_MAX_LENGTH + 1),
        "with\x00nul!",
        "bell\x07bell",
        "lone\ud800surrogate",
        None,
        12345678,
        b"bytes-password",
    ],
    ids=repr,
)
def test_invalid_passwords(raw: object) -> None:
    with pytest.raises(AuthRefused) as info:
        normalize_password(raw)
    assert info.value.reason is Refusal.INVALID_PASSWORD
    assert str(info.value) == "invalid_password"


@pytest.mark.parametrize("kwargs", [{"time_cost": 0}, {"parallelism": 0}, {"memory_kib": 7}])
def test_params_reject_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Argon2Params(**kwargs)


# --- hasher --------------------------------------------------------------------------------


async def test_hash_and_verify(hasher: Argon2Hasher) -> None:
    stored = await hasher.hash("correct horse")
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert len(stored) <= 128  # fits uinfo.upwd
    assert "correct horse" not in stored
    assert await hasher.verify(stored, "correct horse")
    assert not await hasher.verify(stored, "correct horsE")
    assert await hasher.hash("correct horse") != stored  # salted
    assert not hasher.needs_rehash(stored)


async def test_default_hash_fits_the_column() -> None:
    h = Argon2Hasher()
    try:
        stored = await h.hash("x" * PASSWORD_MAX_LENGTH)
    finally:
        h.close()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert len(stored) <= 128


@pytest.mark.parametrize(
    "stored", [None, "", "plain-md5-5f4dcc3b5aa765d61d8327deb882cf99", "$2b$12$bcrypt"]
)
async def test_unknown_or_foreign_hash_never_verifies(
    hasher: Argon2Hasher, stored: str | None
) -> None:
    assert not await hasher.verify(stored, "anything at all")
    assert hasher.stats["verified"] == 1


async def test_needs_rehash_after_a_parameter_change(hasher: Argon2Hasher) -> None:
    stored = await hasher.hash("correct horse")
    stronger = Argon2Hasher(Argon2Params(time_cost=2, memory_kib=64, parallelism=1))
    try:
        assert stronger.needs_rehash(stored)
        assert await stronger.verify(stored, "correct horse")  # old hashes still verify
        assert not stronger.needs_rehash(await stronger.hash("correct horse"))
    finally:
        stronger.close()
    assert hasher.needs_rehash("not a hash")
    argon2i = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=argon2.Type.I)
    assert hasher.needs_rehash(argon2i.hash("correct horse"))


async def test_hashing_runs_off_the_event_loop(hasher: Argon2Hasher) -> None:
    slow = Argon2Hasher(Argon2Params(time_cost=3, memory_kib=32768, parallelism=1), workers=1)
    try:
        task = asyncio.ensure_future(slow.hash("correct horse"))
        await asyncio.sleep(0)  # the task starts, hands the hash to a thread and yields
        assert slow.pending == 1
        assert not task.done()  # the loop runs this test while the hash is computed
        assert (await task).startswith("$argon2id$")
        await asyncio.sleep(0)  # the thread's completion callback
        assert slow.pending == 0
    finally:
        slow.close()


async def test_a_flood_is_refused_beyond_the_bound() -> None:
    hasher = Argon2Hasher(
        Argon2Params(time_cost=2, memory_kib=8192, parallelism=1), workers=1, max_waiting=2
    )
    try:
        results = await asyncio.gather(
            *(hasher.hash(f"password-{i}") for i in range(6)), return_exceptions=True
        )
    finally:
        hasher.close()
    busy = [r for r in results if isinstance(r, AuthRefused)]
    assert len(busy) == 3  # one hashing, two waiting, the rest refused at once
    assert all(r.reason is Refusal.BUSY and r.retry_after for r in busy)
    assert hasher.stats["busy"] == 3
    assert all(isinstance(r, str) for r in results[:3])


async def test_bound_counts_abandoned_work_until_it_ends() -> None:
    hasher = Argon2Hasher(
        Argon2Params(time_cost=2, memory_kib=8192, parallelism=1), workers=1, max_waiting=0
    )
    try:
        task = asyncio.ensure_future(hasher.hash("password-1"))
        await asyncio.sleep(0)
        task.cancel()  # the caller gave up; the thread is still busy
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(AuthRefused):
            await hasher.hash("password-2")
    finally:
        hasher.close()


async def test_closed_hasher_refuses_work(hasher: Argon2Hasher) -> None:
    hasher.close()
    with pytest.raises(RuntimeError):
        await hasher.hash("correct horse")
    assert hasher.pending == 0


async def test_warm_up_makes_the_dummy_once(hasher: Argon2Hasher) -> None:
    first = await hasher.warm_up()
    assert first.startswith("$argon2id$")
    assert await hasher.warm_up() == first


def test_bad_pool_sizes() -> None:
    with pytest.raises(ValueError):
        Argon2Hasher(CHEAP, workers=0)
    with pytest.raises(ValueError):
        Argon2Hasher(CHEAP, max_waiting=-1)
