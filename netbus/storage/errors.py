"""Storage exceptions: one type for "the database let us down", whatever the driver said.

::

    NetbusError                  (netbus.errors)
    ├── StorageError             a database operation failed; ``__cause__`` has the driver error
    │   └── AccountNotFound      the uid names no account (also a LookupError)
    └── AuthRefused              an account operation was refused; ``reason`` says why

Callers (the center role) map ``StorageError`` to the SYSTEM_ERROR status of PROTOCOL.md §4.2
without caring whether SQLite was locked or MariaDB went away (Redis-backed stores raise it
too). ``AuthRefused`` is not a failure of the database but an answer (wrong password, locked,
token replayed ...): its ``reason`` is a `Refusal`, which the auth service maps to a status of
its own. Messages name the operation and the error class/code only: never a guest key, a
digest, SQL parameters or a URL password. The full driver error stays reachable through
``__cause__`` for logs.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc

from netbus.errors import NetbusError

__all__ = [
    "AccountNotFound",
    "AuthRefused",
    "Refusal",
    "StorageError",
    "db_error_code",
    "describe_db_error",
    "describe_driver_error",
    "driver_error_code",
    "storage_errors",
]


class StorageError(NetbusError):
    """A database operation failed (unreachable, lost connection, timeout, lock, bad data).

    The store stays usable: the next call checks out a fresh or pinged connection, so the
    caller reports the failure for this request and simply tries again on the next one.
    """


class AccountNotFound(StorageError, LookupError):
    """No account has the requested uid."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        super().__init__(f"no account with uid {uid}")


class Refusal(enum.Enum):
    """Why an account or token operation was refused (docs/security.md "Accounts")."""

    #: the username breaks the rules of `netbus.storage.usernames` (length, characters)
    INVALID_USERNAME = "invalid_username"
    #: the new password breaks the rules of `netbus.storage.passwords` (length, characters)
    INVALID_PASSWORD = "invalid_password"
    #: wrong username or password; deliberately the same for an unknown username
    BAD_CREDENTIALS = "bad_credentials"
    #: too many failures for this username or source address; see ``retry_after``
    LOCKED = "locked"
    #: another account already has this username (case-insensitively, after NFKC)
    USERNAME_TAKEN = "username_taken"
    #: the account has a username and password already
    ALREADY_REGISTERED = "already_registered"
    #: the account has no username and password yet (a guest): register first
    NOT_REGISTERED = "not_registered"
    #: the account is disabled (``status != 0``)
    ACCOUNT_DISABLED = "account_disabled"
    #: no such token (never issued, revoked, purged, or malformed)
    TOKEN_UNKNOWN = "token_unknown"
    #: the token's expiry has passed
    TOKEN_EXPIRED = "token_expired"
    #: the token was already used; its whole family is now revoked
    TOKEN_REPLAYED = "token_replayed"
    #: the token belongs to another account than the one expected
    TOKEN_WRONG_ACCOUNT = "token_wrong_account"
    #: too many password hashes are waiting; try again shortly
    BUSY = "busy"


class AuthRefused(NetbusError):
    """An account or token operation was refused; ``reason`` says why.

    The message names the reason only: never a username, password, token or digest.

    Attributes:
        reason: the `Refusal`.
        retry_after: for ``LOCKED`` (and ``BUSY``), seconds until a retry can succeed.
    """

    def __init__(self, reason: Refusal, *, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        message = reason.value
        if retry_after is not None:
            message += f" (retry after {retry_after:.1f}s)"
        super().__init__(message)


def db_error_code(err: BaseException | None) -> int | str | None:
    """The driver's code for a wrapped DBAPI error: MySQL errno or SQLite error name."""
    orig = getattr(err, "orig", None)
    return None if orig is None else driver_error_code(orig)


def driver_error_code(err: BaseException) -> int | str | None:
    """The code of a driver's own exception (asyncmy, sqlite3): errno or SQLite error name."""
    name = getattr(err, "sqlite_errorname", None)
    if isinstance(name, str):
        return name
    args = getattr(err, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe_driver_error(err: BaseException) -> str:
    """Like `describe_db_error`, for an exception the driver raised directly."""
    code = driver_error_code(err)
    name = type(err).__name__
    return f"database error {name}" if code is None else f"database error {name} {code}"


def describe_db_error(err: BaseException) -> str:
    """Name a database error by class and code only, for a ``StorageError`` message.

    The driver's text is left out on purpose: it can quote SQL, parameters or a duplicate
    key value. It remains available on the chained ``__cause__``.
    """
    if isinstance(err, exc.TimeoutError):
        return "timed out waiting for a pooled connection"
    if isinstance(err, exc.DBAPIError):
        parts = ["database error", type(err.orig).__name__]
        code = db_error_code(err)
        if code is not None:
            parts.append(str(code))
        if err.connection_invalidated:
            parts.append("(connection lost)")
        return " ".join(parts)
    return f"database error {type(err).__name__}"


@asynccontextmanager
async def storage_errors(op: str, timeout: float | None) -> AsyncIterator[None]:
    """Bound ``op`` by ``timeout`` seconds and turn database failures into `StorageError`.

    ``AuthRefused`` and ``StorageError`` raised inside pass through unchanged.
    """
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            yield
    except (StorageError, AuthRefused):
        raise
    except (exc.SQLAlchemyError, OSError) as err:
        if deadline.expired():
            msg = f"{op}: no answer from the database within {timeout}s"
        else:
            msg = f"{op}: {describe_db_error(err)}"
        raise StorageError(msg) from err
