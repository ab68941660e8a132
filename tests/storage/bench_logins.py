"""Storage-level guest-login benchmark: the per-login path against the group-commit path.

Not a test (no timed asserts); run it by hand and copy the table into docs/benchmarks.md::

    .venv/bin/python -m tests.storage.bench_logins                  # both backends, both paths
    .venv/bin/python -m tests.storage.bench_logins --backend mariadb --logins 20000

Each run gets a fresh database (a scratch MariaDB database, dropped afterwards, or a SQLite
file in a temporary directory), migrated, then warmed up with a few logins. ``--concurrency``
callers then log in with new guest keys (every login creates an account) until ``--logins``
are done. Reported: logins per second, this process's CPU time per login (user + system,
all threads: aiosqlite's and argon2's threads are part of the center too), and for MariaDB
the server's CPU per login read from ``/proc/<pid>/stat`` of ``mariadbd``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from netbus.storage import AccountStore, create_engine, upgrade
from netbus.storage.guest_batch import GuestLoginBatcher

__all__ = ["main"]

PEPPER = b"bench-pepper-0123456789abcdef"
MYSQL_BASE_URL = os.environ.get("NETBUS_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")


@dataclass
class Result:
    backend: str
    path: str
    concurrency: int
    logins: int
    seconds: float
    cpu: float
    server_cpu: float | None
    batches: int | None

    def row(self) -> str:
        server = "" if self.server_cpu is None else f"{self.server_cpu / self.logins * 1e3:.3f}"
        per_batch = "" if not self.batches else f"{self.logins / self.batches:.1f}"
        rate = self.logins / self.seconds
        cpu = self.cpu / self.logins * 1e3
        return (
            f"| {self.backend} | {self.path} | {self.concurrency} | {rate:,.0f}"
            f" | {cpu:.3f} | {server} | {per_batch} |"
        )


def _server_cpu() -> float | None:
    """CPU seconds used so far by mariadbd (None if it is not a local process)."""
    try:
        pid = subprocess.run(
            ["pidof", "mariadbd"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


async def _scratch_mariadb() -> tuple[str, Callable[[], Awaitable[None]]]:
    admin = create_async_engine(make_url(MYSQL_BASE_URL).set(database=None), poolclass=NullPool)
    name = f"netbus_bench_{secrets.token_hex(4)}"
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()

    return make_url(MYSQL_BASE_URL).set(database=name).render_as_string(hide_password=False), drop


async def run_one(
    backend: str, path: str, concurrency: int, logins: int, connections: int = 2
) -> Result:
    tmp = tempfile.TemporaryDirectory()
    drop: Callable[[], Awaitable[None]] | None = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    else:
        url, drop = await _scratch_mariadb()
    engine = create_engine(url)
    batcher: GuestLoginBatcher | None = None
    try:
        await upgrade(url)
        if path == "old":
            login = AccountStore(engine, PEPPER).guest_login
        else:
            batcher = GuestLoginBatcher(engine, PEPPER, connections=connections)
            login = batcher.guest_login
        run = secrets.token_hex(4)
        await asyncio.gather(*(login(f"warm-{run}-{i:06d}-0123456789") for i in range(200)))
        if batcher is not None:
            batcher.stats.update(logins=0, batches=0)
        per_caller = logins // concurrency

        async def caller(c: int) -> None:
            for i in range(per_caller):
                await login(f"bench-{run}-{c:03d}-{i:07d}")

        server0, cpu0, wall0 = _server_cpu(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(c) for c in range(concurrency)))
        wall, cpu, server1 = (
            time.perf_counter() - wall0,
            time.process_time() - cpu0,
            _server_cpu(),
        )
        server = None
        if backend == "mariadb" and server0 is not None and server1 is not None:
            server = server1 - server0
        return Result(
            backend,
            path if path == "old" else f"{path} ({connections} conn)",
            concurrency,
            per_caller * concurrency,
            wall,
            cpu,
            server,
            None if batcher is None else batcher.stats["batches"],
        )
    finally:
        if batcher is not None:
            await batcher.close()
        await engine.dispose()
        if drop is not None:
            await drop()
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "mariadb", "both"], default="both")
    parser.add_argument("--path", choices=["old", "new", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--logins", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="alternate old/new this often")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1, 2], help="new path: connections to try"
    )
    args = parser.parse_args()
    backends = ["sqlite", "mariadb"] if args.backend == "both" else [args.backend]
    paths = ["old", "new"] if args.path == "both" else [args.path]
    print(
        "| backend | path | callers | logins/s | center CPU ms/login"
        " | mariadbd CPU ms/login | logins/batch |"
    )
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for backend in backends:
            for path in paths:
                for connections in [0] if path == "old" else args.connections:
                    coro = run_one(backend, path, args.concurrency, args.logins, connections)
                    if args.loop == "uvloop":
                        import uvloop

                        result = uvloop.run(coro)
                    else:
                        result = asyncio.run(coro)
                    print(result.row(), flush=True)


if __name__ == "__main__":
    main()
