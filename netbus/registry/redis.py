"""The Redis registry: one login state for many gateways (redis.asyncio, Redis >= 7).

Keys and channels (``P`` = ``[redis] prefix``, default ``netbus:``; docs/scaling.md):

``P uid:<uid>`` (string, ``PX`` lease)
    ``"<gateway_id>:<conn_id>"``, the one connection that owns the uid. Written by `claim`
    (a Lua script around ``SET key value PX lease GET``, which also publishes the kick to the
    replaced owner's gateway in the same atomic step), renewed by `refresh` with a
    compare-and-refresh script, deleted by `release` with compare-and-delete.
``P kick:<gateway_id>`` (pub/sub channel)
    ``"<uid> <conn_id>"``: that connection of that gateway lost the uid to a newer login.
    Each gateway subscribes to its own channel on a dedicated connection and resubscribes with
    backoff after Redis comes back.

Pub/sub is at-most-once: a kick published while the subscriber is reconnecting is lost. The
lease refresh (every ``refresh_interval``, default a third of the lease) compares each held
entry with what this gateway believes; an entry that names another connection is reported
through the kick handler, so a lost kick is repaired within one refresh interval. A held entry
that vanished (Redis restarted without persistence) is re-created with ``SET NX``.

Every call is bounded by ``timeout`` and turns any failure into `RegistryUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from netbus.errors import RegistryUnavailable
from netbus.registry.base import KickHandler, Owner

__all__ = ["RedisRegistry", "redact_redis_url", "redis_client"]

log = logging.getLogger("netbus.registry")

T = TypeVar("T")

_CHUNK = 500  #: keys per refresh / bulk-release script call

# KEYS[1] owner key. ARGV: 1 new owner, 2 lease ms, 3 kick channel prefix, 4 uid, 5 gateway id.
# Returns the previous owner (nil if none). Publishing here, inside the claim, means a kick can
# only be lost by pub/sub itself, never by this gateway dying between two round trips.
_CLAIM = """
local prev = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'GET')
if prev and prev ~= ARGV[1] then
  local gw, conn = string.match(prev, '^([^:]+):(.+)$')
  if gw and gw ~= ARGV[5] then
    redis.call('PUBLISH', ARGV[3] .. gw, ARGV[4] .. ' ' .. conn)
  end
end
return prev
"""

# KEYS: owner keys. ARGV[1] lease ms, ARGV[i + 1] the owner this gateway expects in KEYS[i].
# Renews the entries that still name us; returns {indexes now owned by others, indexes gone}.
_REFRESH = """
local lost, missing = {}, {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
  elseif v then
    lost[#lost + 1] = i
  else
    missing[#missing + 1] = i
  end
end
return {lost, missing}
"""

# KEYS: owner keys; ARGV[i] the owner expected in KEYS[i]. Deletes the entries that still
# name it; returns how many.
_RELEASE = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    n = n + redis.call('DEL', key)
  end
end
return n
"""


def redis_client(
    url: str,
    *,
    timeout: float | None,
    connect_timeout: float | None = None,
    max_connections: int = 64,
) -> aioredis.Redis:
    """A client whose every command fails within about ``timeout`` seconds.

    The pool blocks (up to ``timeout``) for a free connection instead of failing at once
    when a burst of logins uses all ``max_connections``. One immediate retry (no backoff)
    lets a pooled connection that died with a Redis restart be replaced transparently; the
    caller's own deadline bounds the whole call. ``timeout=None`` suits a subscriber, which
    waits in a read for as long as it takes.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout or timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def redact_redis_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class RedisRegistry:
    """`Registry` over Redis. See the module docstring for keys, channels and guarantees.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS).
        gateway_id: this gateway's id; unique in the cluster.
        prefix: prepended to every key and channel name.
        lease: seconds an entry lives without a refresh (a crashed gateway's users are
            free to log in elsewhere after at most this long).
        refresh_interval: seconds between refreshes; default ``lease / 3``.
        timeout: upper bound in seconds for one registry call.
    """

    def __init__(
        self,
        url: str,
        gateway_id: str,
        *,
        prefix: str = "netbus:",
        lease: float = 15.0,
        refresh_interval: float | None = None,
        timeout: float = 1.5,
    ) -> None:
        if lease <= 0 or timeout <= 0:
            raise ValueError("lease and timeout must be positive")
        self.url = url
        self.gateway_id = gateway_id
        self.prefix = prefix
        self.lease_ms = max(1, round(lease * 1000))
        self.refresh_interval = refresh_interval if refresh_interval else lease / 3
        self.timeout = timeout
        self.channel = f"{prefix}kick:{gateway_id}"
        self.client = redis_client(url, timeout=timeout)
        # dedicated connection for the subscriber: it blocks in a read between messages
        self._sub_client = redis_client(
            url, timeout=None, connect_timeout=timeout, max_connections=2
        )
        self._claim = self.client.register_script(_CLAIM)
        self._refresh = self.client.register_script(_REFRESH)
        self._release = self.client.register_script(_RELEASE)
        self._held: dict[int, str] = {}
        #: uid -> conn of the claim in flight ("" once a kick overtook it); one per uid
        self._inflight: dict[int, str] = {}
        self._uid_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}
        self._handler: KickHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_now = asyncio.Event()
        self._down = False  #: the last refresh failed (logged once per outage)
        #: set while the kick channel is subscribed (tests wait for it)
        self.subscribed = asyncio.Event()
        self.stats = {"kicks_received": 0, "leases_lost": 0, "recreated": 0}

    # ------------------------------------------------------------------------ lifecycle
    def set_kick_handler(self, handler: KickHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        try:
            await self._bounded(self.client.ping())
        except RegistryUnavailable as exc:
            log.warning(
                "redis %s does not answer (%s): logins fail until it does",
                redact_redis_url(self.url),
                exc,
            )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscribe_loop(), name=f"registry-sub:{self.gateway_id}"),
            loop.create_task(self._refresh_loop(), name=f"registry-refresh:{self.gateway_id}"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        held, self._held = self._held, {}
        items = list(held.items())
        try:
            for i in range(0, len(items), _CHUNK):
                chunk = items[i : i + _CHUNK]
                keys = [self._key(uid) for uid, _ in chunk]
                values = [f"{self.gateway_id}:{conn}" for _, conn in chunk]
                await self._bounded(self._release(keys=keys, args=values))
        except RegistryUnavailable as exc:
            log.warning("could not release %d logins at close (%s); leases expire", len(items), exc)
        await self._sub_client.aclose()
        await self.client.aclose()

    @property
    def held(self) -> Mapping[int, str]:
        return MappingProxyType(self._held)

    @property
    def healthy(self) -> bool:
        """The last lease refresh worked (for health checks; logins may still fail)."""
        return not self._down

    # ---------------------------------------------------------------------- operations
    def _key(self, uid: int) -> str:
        return f"{self.prefix}uid:{uid}"

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            raise RegistryUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def claim(self, uid: int, conn: str) -> Owner | None:
        """See `Registry.claim`. Claims of one uid through this registry run one at a time,
        so `held` follows Redis's order; a kick that overtakes the claim's own reply (the
        kick travels on another connection) keeps the claim out of `held`.
        """
        value = f"{self.gateway_id}:{conn}"
        args: list[Any] = [value, self.lease_ms, f"{self.prefix}kick:", uid, self.gateway_id]
        lock, users = self._uid_locks.setdefault(uid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                self._inflight[uid] = conn
                try:
                    previous = await self._bounded(self._claim(keys=[self._key(uid)], args=args))
                finally:
                    state = self._inflight.pop(uid, "")
                if state == conn:
                    self._held[uid] = conn
        finally:
            users[0] -= 1
            if not users[0]:
                del self._uid_locks[uid]
        if previous is None or previous == value:
            return None
        return Owner.parse(previous)

    async def release(self, uid: int, conn: str) -> bool:
        if self._held.get(uid) == conn:
            del self._held[uid]  # before the await: a refresh must not re-create it
        value = f"{self.gateway_id}:{conn}"
        removed = await self._bounded(self._release(keys=[self._key(uid)], args=[value]))
        return bool(removed)

    async def owner(self, uid: int) -> Owner | None:
        return Owner.parse(await self._bounded(self.client.get(self._key(uid))))

    async def refresh(self) -> list[int]:
        items = list(self._held.items())
        lost: list[int] = []
        for i in range(0, len(items), _CHUNK):
            chunk = items[i : i + _CHUNK]
            keys = [self._key(uid) for uid, _ in chunk]
            values = [f"{self.gateway_id}:{conn}" for _, conn in chunk]
            gone, missing = await self._bounded(
                self._refresh(keys=keys, args=[self.lease_ms, *values])
            )
            for index in gone:
                uid, conn = chunk[index - 1]
                lost.append(uid)
                self.stats["leases_lost"] += 1
                self.deliver_kick(uid, conn)
            await self._recreate([chunk[index - 1] for index in missing])
        return lost

    async def _recreate(self, entries: list[tuple[int, str]]) -> None:
        """Put back entries that vanished (Redis restart) and that this gateway still holds."""
        entries = [(uid, conn) for uid, conn in entries if self._held.get(uid) == conn]
        if not entries:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for uid, conn in entries:
                pipe.set(self._key(uid), f"{self.gateway_id}:{conn}", px=self.lease_ms, nx=True)
            await self._bounded(pipe.execute())
        self.stats["recreated"] += len(entries)
        # An entry that someone else created meanwhile is reported by the next refresh.

    def deliver_kick(self, uid: int, conn: str) -> None:
        """``conn`` of this gateway lost ``uid``: forget the claim, tell the handler."""
        if self._held.get(uid) == conn:
            del self._held[uid]
        if self._inflight.get(uid) == conn:
            self._inflight[uid] = ""  # overtaken: the claim must not be held when it returns
        if self._handler is None:
            return
        try:
            self._handler(uid, conn)
        except Exception:
            log.exception("kick handler failed for uid %d", uid)

    # ------------------------------------------------------------------ background work
    def _on_message(self, data: Any) -> None:
        uid_text, _, conn = str(data).partition(" ")
        if not uid_text.isdigit() or not conn:
            log.warning("malformed kick message on %s", self.channel)
            return
        self.stats["kicks_received"] += 1
        self.deliver_kick(int(uid_text), conn)

    async def _subscribe_loop(self) -> None:
        backoff = ExponentialWithJitterBackoff(base=0.05, cap=2.0)
        failures = 0
        while True:
            pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                if failures:
                    log.info("kick channel %s subscribed again", self.channel)
                    self._refresh_now.set()  # kicks sent meanwhile were lost: re-check now
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message.get("data"))
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("kick channel %s lost (%s); resubscribing", self.channel, exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff.compute(failures))

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_interval):
                    await self._refresh_now.wait()
            self._refresh_now.clear()
            try:
                lost = await self.refresh()
            except RegistryUnavailable as exc:
                if not self._down:
                    log.warning("lease refresh failed (%s); users stay connected", exc)
                self._down = True
                continue
            if self._down:
                log.info("lease refresh works again (%d logins held)", len(self._held))
                self._down = False
            if lost:
                log.info("%d logins were taken over elsewhere; kicked here", len(lost))
