"""Run the alembic migrations in ``netbus/storage/migrations`` from code, without alembic.ini.

Why programmatic: the schema ships inside the package, so ``netbus db upgrade``, the test
fixtures and a first start on SQLite all migrate the same way, from any working directory.

Why a thread: ``env.py`` follows alembic's async template and calls ``asyncio.run``, which
refuses to run inside a running event loop. :func:`upgrade` therefore runs the alembic command
in a worker thread (``asyncio.to_thread``), which has no loop of its own; :func:`upgrade_sync`
is for plain synchronous callers such as the CLI.

Running upgrade on a database that is already at head is a no-op, and every center server
may run it on start: ``env.py`` serialises runners across processes with a database lock
(``GET_LOCK`` on MySQL/MariaDB, one ``BEGIN IMMEDIATE`` transaction on SQLite), and this
module serialises them across threads, because alembic keeps the running migration's
context in module globals (two commands in two threads of one process hung).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import exc

from netbus.storage.errors import StorageError, describe_db_error

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade", "upgrade_sync"]

#: The alembic script directory shipped inside the package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# One alembic command at a time per process (see the module docstring).
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(url: str) -> Config:
    """Build the alembic ``Config`` for ``url``, for this module or other alembic commands.

    The URL travels in ``config.attributes``, never through ``ConfigParser``: no ``%``
    interpolation, and the password is not copied into the config's option store.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest), blocking.

    Raises:
        RuntimeError: called from a thread with a running event loop; ``await upgrade(url)``
            there instead.
        StorageError: the database failed (the driver error is chained).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "upgrade_sync() cannot run inside a running event loop; use `await upgrade(url)`"
        )
    try:
        with _ALEMBIC_LOCK:
            command.upgrade(alembic_config(url), revision)
    except (exc.SQLAlchemyError, OSError) as err:
        raise StorageError(f"upgrade: {describe_db_error(err)}") from err


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` without blocking the event loop."""
    await asyncio.to_thread(upgrade_sync, url, revision)
