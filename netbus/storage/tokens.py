"""Resume tokens: the `TokenStore` protocol, its value types and the rules both stores share.

Every login returns a resume token (docs/security.md "Resume tokens"):

* **Random and opaque**: ``secrets.token_urlsafe(32)``, 256 bits, 43 URL-safe characters.
  Only ``HMAC-SHA256(pepper, token)`` is stored, as for guest keys, so a leaked table or
  Redis dump holds nothing that can be presented.
* **Expiring**: a token lives ``ttl`` seconds from its issue (rotation issues a fresh one, so
  an active session slides forward; an idle one ends).
* **Rotated on use**: `TokenStore.rotate` consumes the presented token and returns its
  successor in one atomic step; exactly one of any number of concurrent presentations wins.
* **Replay revokes the family**: the tokens descending from one login form a family. A
  consumed token is kept (marked used) until it expires; presenting it again, to `check` or
  `rotate`, means two parties hold the chain (a stolen token, or a client that raced itself),
  so the whole family is deleted and both must log in again with their credentials.
* **Bound to one account**: every token carries its uid. ``rotate(token, uid=...)`` refuses a
  token of another account with ``TOKEN_WRONG_ACCOUNT`` and leaves it untouched, so a token
  can never resume someone else's session.

Two implementations pass one test suite: `netbus.storage.tokens_sql.SqlTokenStore` (the
``session_tokens`` table) and `netbus.storage.tokens_redis.RedisTokenStore` (``[redis] url``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from netbus.storage.errors import AuthRefused, Refusal
from netbus.storage.schema import MAX_UID

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "IssuedToken",
    "TokenInfo",
    "TokenStore",
    "check_uid",
    "hash_token",
    "new_family",
    "new_token",
    "parse_token",
]

#: Default token lifetime in seconds (``[center.accounts] token_ttl``).
DEFAULT_TOKEN_TTL = 86400

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a live token says about itself.

    Attributes:
        uid: the account it resumes.
        created_at: when this token was issued (unix seconds).
        expires_at: when it stops working (unix seconds).
    """

    uid: int
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: send ``token`` to its client once; it is never shown in ``repr``.

    Attributes:
        token: the secret (43 URL-safe characters). Never log it.
        uid: the account it resumes.
        created_at: issue time (unix seconds).
        expires_at: expiry (unix seconds).
    """

    token: str = field(repr=False)
    uid: int
    created_at: int
    expires_at: int

    @property
    def info(self) -> TokenInfo:
        return TokenInfo(self.uid, self.created_at, self.expires_at)


class TokenStore(Protocol):
    """Resume tokens. See the module docstring for the rules every implementation keeps."""

    #: lifetime of a new token in seconds
    ttl: int

    async def issue(self, uid: int) -> IssuedToken:
        """Start a new family with one live token for ``uid`` (after a login).

        Raises:
            ValueError: ``uid`` is outside ``1..MAX_UID``.
            StorageError, RegistryUnavailable: the backend failed.
        """
        ...

    async def check(self, token: str) -> TokenInfo:
        """Describe a live token without consuming it.

        Raises:
            AuthRefused: ``TOKEN_UNKNOWN``, ``TOKEN_EXPIRED``, or ``TOKEN_REPLAYED`` (a used
                token: its family is revoked).
            StorageError, RegistryUnavailable: the backend failed.
        """
        ...

    async def rotate(self, token: str, *, uid: int | None = None) -> IssuedToken:
        """Consume ``token`` and return its successor (same family, fresh expiry).

        Args:
            token: as the client presented it (any value; malformed ones are unknown).
            uid: when given, a token of another account is refused and left as it was.

        Raises:
            AuthRefused: ``TOKEN_UNKNOWN``, ``TOKEN_EXPIRED``, ``TOKEN_WRONG_ACCOUNT``, or
                ``TOKEN_REPLAYED`` (used before, or consumed by a concurrent call: the
                family is revoked, the successor included).
            StorageError, RegistryUnavailable: the backend failed.
        """
        ...

    async def revoke(self, token: str) -> bool:
        """Delete the token's whole family (log out); False if it was unknown."""
        ...

    async def revoke_uid(self, uid: int) -> int:
        """Delete every token of ``uid`` (after a password change); return how many."""
        ...

    async def purge(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired tokens; return how many. Bounded work per call."""
        ...


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def new_family() -> str:
    """A fresh family id (32 hex characters; not a secret)."""
    return secrets.token_hex(16)


def hash_token(pepper: bytes, token: str) -> str:
    """The stored form of a token: hex ``HMAC-SHA256(pepper, "token:" + token)``.

    The ``token:`` prefix keeps token digests apart from guest-key digests made with the
    same pepper.
    """
    return hmac.new(pepper, b"token:" + token.encode("ascii"), hashlib.sha256).hexdigest()


def parse_token(value: object) -> str:
    """Return ``value`` if it has the shape of a token; otherwise refuse it as unknown.

    Raises:
        AuthRefused: ``TOKEN_UNKNOWN`` (not a 43-character URL-safe string).
    """
    if type(value) is not str or _TOKEN_RE.fullmatch(value) is None:
        raise AuthRefused(Refusal.TOKEN_UNKNOWN)
    return value


def check_uid(uid: int) -> int:
    """Return ``uid`` if it can own a token; raise ValueError otherwise."""
    if type(uid) is not int or not 1 <= uid <= MAX_UID:
        raise ValueError(f"uid {uid!r} is outside 1..{MAX_UID}")
    return uid
