"""The auth service (stype 2): guest login over the account store (docs/protocol.md §6.2).

The guest key is a credential: it is validated here, hashed by the store, and never logged.
Auth answers in kind (``{"status": code}``), as the original clients expect: a malformed
request gets INVALID_PARAMS, a failing handler SYSTEM_ERROR.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from netbus.protocol.control import RequestStatus
from netbus.protocol.registry import LayoutSpec
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.service import Service, User, command
from netbus.storage import Account, AccountStore, StorageError

__all__ = ["GUEST_KEY_RE", "MIN_KEY_DISTINCT", "AuthService", "valid_guest_key"]

log = logging.getLogger("netbus.auth")

GUEST_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")

#: the variety rule (docs/security.md "Guest keys"): a key uses at least this many
#: different characters, and no character fills more than half of it
MIN_KEY_DISTINCT = 8

#: called after each successful login (e.g. to cache the profile in Redis)
LoginHook = Callable[[Account], Awaitable[None]]


def valid_guest_key(value: Any) -> bool:
    """A well-formed guest key with enough variety to be a credential.

    16-64 characters of ``A-Z a-z 0-9 _ -`` (docs/protocol.md §6.2), at least
    `MIN_KEY_DISTINCT` of them different, none making up more than half the key. Hand-made
    keys like ``aaaaaaaaaaaaaaaa`` or ``abababababababab`` are refused (INVALID_PARAMS), so
    nobody can claim an account that a guessable key would open. Random keys pass: a
    32-character key from the 64-symbol alphabet (netbus.js, `new_guest_key`) fails with
    probability below 1e-19, one from 16 hex digits (the smallest alphabet an original
    client could draw from) below 1e-7.
    """
    if type(value) is not str or GUEST_KEY_RE.fullmatch(value) is None:
        return False
    counts = Counter(value)
    return len(counts) >= MIN_KEY_DISTINCT and 2 * max(counts.values()) <= len(value)


def _error_reply(status: RequestStatus) -> dict[str, int]:
    """Auth's own code for a request the SDK could not serve (docs/protocol.md §6.2)."""
    if status is RequestStatus.SERVER_ERROR:
        return {"status": AuthStatus.SYSTEM_ERROR}
    return {"status": AuthStatus.INVALID_PARAMS}


class AuthService(Service):
    stype = Stype.Auth
    name = "auth"
    #: RELOGIN is sent by the gateway on this stype; declared here so that clients built
    #: from this service learn its (empty) BUF layout
    pushes: ClassVar[Mapping[int, LayoutSpec]] = {AuthCmd.RELOGIN: []}

    def __init__(self, store: AccountStore, *, on_login: LoginHook | None = None) -> None:
        self.store = store
        self.on_login = on_login

    @command(AuthCmd.GUEST_LOGIN, error_reply=_error_reply)
    async def guest_login(self, user: User, body: Any) -> dict[str, Any]:
        if not valid_guest_key(body):
            return {"status": AuthStatus.INVALID_PARAMS}
        key: str = body
        try:
            account, created = await self.store.guest_login(key)
        except StorageError as exc:
            log.error("guest login failed: %s", exc)
            return {"status": AuthStatus.SYSTEM_ERROR}
        if account.is_disabled:
            return {"status": AuthStatus.ILLEGAL_ACCOUNT}
        if self.on_login is not None:
            try:
                await self.on_login(account)
            except Exception:
                log.exception("login hook failed for uid %d", account.uid)
                return {"status": AuthStatus.SYSTEM_ERROR}
        if created:
            log.info("new guest account uid %d", account.uid)
        return {
            "status": AuthStatus.OK,
            "uid": account.uid,
            "unick": account.unick,
            "usex": account.usex,
            "uface": account.uface,
            "uvip": account.uvip,
            "guest_key": key,
        }
