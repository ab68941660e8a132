"""`TokenStore` over Redis (``[redis] url``): tokens shared by every center and gateway.

Keys (``P`` = ``[redis] prefix``, default ``netbus:``; docs/scaling.md):

``P tok:<digest>`` (hash, expires with the token)
    ``u`` uid, ``f`` family, ``c`` created, ``e`` expires (unix seconds), ``x`` 0 while live,
    else the time it was consumed. A consumed token stays until its expiry, for replay
    detection, exactly as in the SQL store.
``P tokfam:<family>`` (set of digests)
    The tokens of one family, deleted together on a replay or a logout.
``P tokuid:<uid>`` (set of families)
    The families of one account, for `RedisTokenStore.revoke_uid`.

Each operation is one Lua script, so consuming a token and creating its successor (or
revoking a family) is atomic. The scripts touch family and token keys they discover, which a
Redis Cluster forbids: use a standalone Redis (or Sentinel), as the registry does. Sets get the
expiry of their longest-lived member, and Redis deletes expired keys by itself:
`RedisTokenStore.purge` has nothing to do.

Every call is bounded by ``timeout``; any Redis failure becomes `StorageError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from netbus.errors import ConfigError
from netbus.storage.errors import AuthRefused, Refusal, StorageError
from netbus.storage.tokens import (
    DEFAULT_TOKEN_TTL,
    IssuedToken,
    TokenInfo,
    check_uid,
    hash_token,
    new_family,
    new_token,
    parse_token,
)

__all__ = ["RedisTokenStore"]

T = TypeVar("T")

# Shared Lua: create token KEYS-less (prefix in ARGV) and keep the sets' expiry long enough.
_ADD = """
local function add(p, digest, uid, fam, now, ttl)
  local key = p .. 'tok:' .. digest
  redis.call('HSET', key, 'u', uid, 'f', fam, 'c', now, 'e', now + ttl, 'x', 0)
  redis.call('EXPIRE', key, ttl)
  local famkey, uidkey = p .. 'tokfam:' .. fam, p .. 'tokuid:' .. uid
  redis.call('SADD', famkey, digest)
  redis.call('SADD', uidkey, fam)
  for _, k in ipairs({famkey, uidkey}) do
    if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
  end
end
local function revoke_family(p, fam, uid)
  local famkey = p .. 'tokfam:' .. fam
  for _, d in ipairs(redis.call('SMEMBERS', famkey)) do
    redis.call('DEL', p .. 'tok:' .. d)
  end
  redis.call('DEL', famkey)
  redis.call('SREM', p .. 'tokuid:' .. uid, fam)
end
"""

# ARGV: prefix, digest, uid, family, now, ttl
_ISSUE = _ADD + "add(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))"

# ARGV: prefix, digest, now, mode ('check' | 'rotate' | 'revoke'), expected uid or '',
#       new digest, ttl. Returns {status, uid, created, expires}.
_USE = (
    _ADD
    + """
local p, digest, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('HMGET', p .. 'tok:' .. digest, 'u', 'f', 'c', 'e', 'x')
if not t[1] then return {'unknown'} end
if ARGV[4] == 'revoke' then revoke_family(p, t[2], t[1]) return {'ok'} end
if ARGV[4] == 'rotate' and ARGV[5] ~= '' and ARGV[5] ~= t[1] then return {'wrong'} end
if t[5] ~= '0' then revoke_family(p, t[2], t[1]) return {'replayed'} end
if tonumber(t[4]) <= now then return {'expired'} end
if ARGV[4] == 'check' then return {'ok', t[1], t[3], t[4]} end
redis.call('HSET', p .. 'tok:' .. digest, 'x', now)
local ttl = tonumber(ARGV[7])
add(p, ARGV[6], t[1], t[2], now, ttl)
return {'ok', t[1], tostring(now), tostring(now + ttl)}
"""
)

# ARGV: prefix, uid. Returns the number of tokens deleted.
_REVOKE_UID = """
local p, uid = ARGV[1], ARGV[2]
local n = 0
for _, fam in ipairs(redis.call('SMEMBERS', p .. 'tokuid:' .. uid)) do
  local famkey = p .. 'tokfam:' .. fam
  for _, d in ipairs(redis.call('SMEMBERS', famkey)) do
    n = n + redis.call('DEL', p .. 'tok:' .. d)
  end
  redis.call('DEL', famkey)
end
redis.call('DEL', p .. 'tokuid:' .. uid)
return n
"""

_REFUSALS = {
    "unknown": Refusal.TOKEN_UNKNOWN,
    "wrong": Refusal.TOKEN_WRONG_ACCOUNT,
    "replayed": Refusal.TOKEN_REPLAYED,
    "expired": Refusal.TOKEN_EXPIRED,
}


class RedisTokenStore:
    """`TokenStore` in Redis. See the module docstring for keys and guarantees.

    The store does not own the client: close it at shutdown.

    Args:
        client: a ``redis.asyncio.Redis`` with ``decode_responses=True`` (e.g.
            `netbus.registry.redis_client`).
        pepper: the server secret of the token digests (the guest-key pepper).
        prefix: prepended to every key.
        ttl: token lifetime in seconds.
        clock: unix time in seconds; injected for tests.
        timeout: upper bound in seconds for one call.
    """

    def __init__(
        self,
        client: Redis,
        pepper: bytes,
        *,
        prefix: str = "netbus:",
        ttl: int = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        timeout: float = 1.5,
    ) -> None:
        if not isinstance(pepper, bytes | bytearray) or not pepper:
            raise ConfigError("the token pepper must be non-empty bytes")
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.ttl = ttl
        self._client = client
        self._pepper = bytes(pepper)
        self._prefix = prefix
        self._clock = clock
        self._timeout = timeout
        self._issue = client.register_script(_ISSUE)
        self._use = client.register_script(_USE)
        self._revoke_uid = client.register_script(_REVOKE_UID)

    def _now(self) -> int:
        return int(self._clock())

    async def _bounded(self, op: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (RedisError, OSError, TimeoutError) as err:
            raise StorageError(f"{op}: redis {type(err).__name__}") from err

    async def issue(self, uid: int) -> IssuedToken:
        check_uid(uid)
        token, now = new_token(), self._now()
        args: list[str | int] = [
            self._prefix,
            hash_token(self._pepper, token),
            uid,
            new_family(),
            now,
            self.ttl,
        ]
        await self._bounded("token issue", self._issue(keys=[], args=args))
        return IssuedToken(token, uid, now, now + self.ttl)

    async def check(self, token: str) -> TokenInfo:
        uid, created, expires = await self._call("check", token, None, "")
        return TokenInfo(uid, created, expires)

    async def rotate(self, token: str, *, uid: int | None = None) -> IssuedToken:
        successor = new_token()
        owner, created, expires = await self._call(
            "rotate", token, uid, hash_token(self._pepper, successor)
        )
        return IssuedToken(successor, owner, created, expires)

    async def revoke(self, token: str) -> bool:
        try:
            await self._call("revoke", token, None, "")
        except AuthRefused:
            return False
        return True

    async def revoke_uid(self, uid: int) -> int:
        result = await self._bounded(
            "token revoke", self._revoke_uid(keys=[], args=[self._prefix, uid])
        )
        return int(result)

    async def purge(self, *, limit: int = 1000) -> int:
        return 0  # keys carry their own expiry

    async def _call(
        self, mode: str, token: str, uid: int | None, successor: str
    ) -> tuple[int, int, int]:
        digest = hash_token(self._pepper, parse_token(token))
        args: list[str | int] = [
            self._prefix,
            digest,
            self._now(),
            mode,
            "" if uid is None else str(uid),
            successor,
            self.ttl,
        ]
        reply = await self._bounded(f"token {mode}", self._use(keys=[], args=args))
        status = reply[0]
        if status != "ok":
            raise AuthRefused(_REFUSALS[status])
        if len(reply) < 4:
            return 0, 0, 0
        return int(reply[1]), int(reply[2]), int(reply[3])
