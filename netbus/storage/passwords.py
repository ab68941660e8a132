"""Password rules and argon2id hashing off the event loop, with bounded concurrency.

Why argon2id: it is the memory-hard hash RFC 9106 and OWASP recommend for passwords, so a
leaked ``uinfo.upwd`` column costs an attacker memory as well as CPU per guess. Guest keys and
tokens are random and use a fast keyed hash instead (`netbus.storage.accounts`).

Why a thread pool of its own: one hash takes tens of milliseconds of CPU (docs/security.md
"Passwords" has the measured figures), which on the event loop would stall every connection
of the process. argon2-cffi releases the GIL while it hashes, so ``workers`` threads hash in
parallel, and at most ``workers`` hashes (``workers`` x ``memory_kib`` of memory) run at once
whatever the load. Up to ``max_waiting`` more wait in line; past that a call is refused at once
with ``AuthRefused(BUSY)`` instead of queueing without bound, so a login flood costs a bounded
amount of CPU, memory and latency and the rest of the server keeps running.

Why a dummy hash: verifying a password for an unknown username must cost what a real
verification costs, or the answer time tells which usernames exist. `Argon2Hasher.verify`
with ``stored=None`` (or with a stored value that is not an argon2 hash) verifies against a
hash of a random password made with the current parameters, and returns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from netbus.storage.errors import AuthRefused, Refusal

__all__ = [
    "PASSWORD_MAX_LENGTH",
    "PASSWORD_MIN_LENGTH",
    "Argon2Hasher",
    "Argon2Params",
    "normalize_password",
]

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
#: Fixed output sizes: a 16-byte salt and a 32-byte hash encode to about 100 characters,
#: which fits ``uinfo.upwd`` (128) with any sane cost parameters.
_SALT_LENGTH = 16
_HASH_LENGTH = 32

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost parameters (``[center.accounts] argon2_*``, docs/config.md).

    The default is OWASP's first argon2id configuration (19 MiB, 2 passes, 1 lane).

    Attributes:
        time_cost: passes over the memory (>= 1).
        memory_kib: memory per hash in KiB (>= 8 x parallelism).
        parallelism: lanes per hash; each lane may use a thread of its own.
    """

    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1 or self.memory_kib < 8 * self.parallelism:
            raise ValueError(f"invalid argon2 parameters {self}")


def normalize_password(value: object) -> str:
    """Check a new password against the rules and return the form that gets hashed.

    The rules: a string of 8 to 128 code points after NFKC normalisation (so one password
    typed on different keyboards or input methods stays one password), with no control
    characters and no lone surrogates. Everything else is allowed, spaces and emoji included.

    Raises:
        AuthRefused: ``INVALID_PASSWORD``.
    """
    if not isinstance(value, str) or len(value) > 4 * PASSWORD_MAX_LENGTH:
        raise AuthRefused(Refusal.INVALID_PASSWORD)
    password = unicodedata.normalize("NFKC", value)
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise AuthRefused(Refusal.INVALID_PASSWORD)
    for char in password:
        category = unicodedata.category(char)
        if category == "Cc" or category == "Cs":
            raise AuthRefused(Refusal.INVALID_PASSWORD)
    return password


class Argon2Hasher:
    """argon2id hash and verify on a bounded thread pool. See the module docstring.

    Create it on the event loop that will use it; `close` it at shutdown.

    Args:
        params: cost parameters for new hashes. Stored hashes with other parameters still
            verify, and `needs_rehash` tells the caller to replace them.
        workers: hashes computed at once (threads).
        max_waiting: hashes allowed to wait for a thread; more are refused with ``BUSY``.
    """

    def __init__(
        self, params: Argon2Params | None = None, *, workers: int = 2, max_waiting: int = 64
    ) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be >= 1 and max_waiting >= 0")
        self.params = params or Argon2Params()
        self.workers = workers
        self.max_waiting = max_waiting
        self._hasher = argon2.PasswordHasher(
            time_cost=self.params.time_cost,
            memory_cost=self.params.memory_kib,
            parallelism=self.params.parallelism,
            hash_len=_HASH_LENGTH,
            salt_len=_SALT_LENGTH,
            type=argon2.Type.ID,
        )
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._pending = 0
        self._dummy: str | None = None
        #: counters for metrics: hashes run, calls refused as BUSY
        self.stats = {"hashed": 0, "verified": 0, "busy": 0}

    @property
    def pending(self) -> int:
        """Hashes running or waiting for a thread right now."""
        return self._pending

    async def hash(self, password: str) -> str:
        """Hash an already normalised password (`normalize_password`) with the current params.

        Raises:
            AuthRefused: ``BUSY``, too many hashes waiting.
        """
        self.stats["hashed"] += 1
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches the ``stored`` hash.

        ``stored=None`` (unknown user), or a stored value that is not an argon2 hash, costs
        one full verification against the dummy hash and returns False.

        Raises:
            AuthRefused: ``BUSY``, too many hashes waiting.
        """
        dummy = await self.warm_up()
        self.stats["verified"] += 1
        return await self._run(self._verify, stored, password, dummy)

    def needs_rehash(self, stored: str) -> bool:
        """True if ``stored`` was made with other parameters (or is not argon2id at all)."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    async def warm_up(self) -> str:
        """Make the dummy hash now (otherwise the first unknown-user login pays for it)."""
        if self._dummy is None:
            dummy = await self._run(self._hasher.hash, secrets.token_urlsafe(24))
            if self._dummy is None:
                self._dummy = dummy
        return self._dummy

    def close(self) -> None:
        """Drop waiting hashes and let running ones finish in the background. Idempotent."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _verify(self, stored: str | None, password: str, dummy: str) -> bool:
        if stored is not None:
            try:
                return self._hasher.verify(stored, password)
            except VerifyMismatchError:
                return False
            except (InvalidHashError, VerificationError, ValueError):
                pass  # not an argon2 hash: pay the dummy's cost, as for an unknown user
        with contextlib.suppress(VerificationError):
            self._hasher.verify(dummy, password)
        return False

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._pending >= self.workers + self.max_waiting:
            self.stats["busy"] += 1
            raise AuthRefused(Refusal.BUSY, retry_after=1.0)
        loop = asyncio.get_running_loop()

        def finished(_: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._finished)

        future = self._executor.submit(fn, *args)  # RuntimeError after close()
        self._pending += 1
        future.add_done_callback(finished)
        return await asyncio.wrap_future(future, loop=loop)

    def _finished(self) -> None:
        self._pending -= 1
