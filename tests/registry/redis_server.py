"""Redis for the registry and scaling tests: the machine's shared server, or a private one.

The shared server (``NETBUS_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``) is never
restarted or flushed: each test works under a key prefix of its own, ``netbus-test-<hex>:``,
and deletes those keys afterwards. A test that must stop or restart Redis starts a
`PrivateRedis` (``redis-server`` on a free port, no persistence) and kills only that one.
When the shared server does not answer, tests fail under CI (env ``CI`` or
``NETBUS_TEST_REQUIRE_SERVICES``) and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = [
    "REDIS_URL",
    "PrivateRedis",
    "delete_prefix",
    "free_port",
    "redis_unavailable",
    "unique_prefix",
    "wait_until",
]

REDIS_URL = os.environ.get("NETBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_unavailable(reason: str) -> None:
    message = f"Redis at {REDIS_URL} unavailable: {reason}"
    if os.environ.get("CI") or os.environ.get("NETBUS_TEST_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


def unique_prefix() -> str:
    return f"netbus-test-{secrets.token_hex(6)}:"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN, never KEYS); return how many."""
    client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    deleted = 0
    try:
        batch = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        for i in range(0, len(batch), 500):
            deleted += await client.delete(*batch[i : i + 500])
    except (RedisError, OSError):
        pass  # a private server that is already gone
    finally:
        await client.aclose()
    return deleted


async def wait_until(predicate, *, timeout: float, interval: float = 0.02, what: str = "") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` (sync or async) until true; fail the test past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port, that the test may stop.

    Use as ``async with PrivateRedis(tmp_path) as server:``; `stop` / `start` restart it on
    the same port (its data is gone: no persistence, like a crashed cache).
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            redis_unavailable("redis-server is not installed")
        self.proc = await asyncio.create_subprocess_exec(
            binary,  # type: ignore[arg-type]
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            cwd=self.workdir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except (RedisError, OSError):
                return False

        try:
            await wait_until(answers, timeout=10.0, interval=0.02, what="private redis-server")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGKILL (no goodbye to clients, like a crash) and wait for the exit."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def __aenter__(self) -> PrivateRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
