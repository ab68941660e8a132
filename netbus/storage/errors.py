"""Storage exceptions: one type for "the database let us down", whatever the driver said.

::

    NetbusError                  (netbus.errors)
    └── StorageError             a database operation failed; ``__cause__`` has the driver error
        └── AccountNotFound      the uid names no account (also a LookupError)

Callers (the center role) map ``StorageError`` to the SYSTEM_ERROR status of PROTOCOL.md §4.2
without caring whether SQLite was locked or MariaDB went away. Messages name the operation and
the error class/code only: never a guest key, a digest, SQL parameters or a URL password. The
full driver error stays reachable through ``__cause__`` for logs.
"""

from __future__ import annotations

from sqlalchemy import exc

from netbus.errors import NetbusError

__all__ = ["AccountNotFound", "StorageError", "db_error_code", "describe_db_error"]


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


def db_error_code(err: BaseException | None) -> int | str | None:
    """The driver's code for a wrapped DBAPI error: MySQL errno or SQLite error name."""
    orig = getattr(err, "orig", None)
    if orig is None:
        return None
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return name
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


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
