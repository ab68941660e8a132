"""The auth service (stype 2): guest login over the account store (PROTOCOL.md §4.2).

The guest key is a credential: it is validated here, hashed by the store, and never logged.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from netbus.protocol.commands import AuthCmd, AuthStatus, Stype
from netbus.protocol.header import ProtoType
from netbus.service import Request, Service
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


class AuthService(Service):
    stype = Stype.Auth
    name = "auth"

    def __init__(self, store: AccountStore, *, on_login: LoginHook | None = None) -> None:
        self.store = store
        self.on_login = on_login

    def on_player_recv_cmd(self, req: Request) -> Awaitable[None] | None:
        if req.ctype == AuthCmd.GUEST_LOGIN:
            return self._guest_login(req)
        return None

    async def _guest_login(self, req: Request) -> None:
        if req.proto_type != ProtoType.JSON or not valid_guest_key(req.body):
            req.reply({"status": AuthStatus.INVALID_PARAMS})
            return
        key: str = req.body
        try:
            account, created = await self.store.guest_login(key)
        except StorageError as exc:
            log.error("guest login failed: %s", exc)
            req.reply({"status": AuthStatus.SYSTEM_ERROR})
            return
        if account.is_disabled:
            req.reply({"status": AuthStatus.ILLEGAL_ACCOUNT})
            return
        if self.on_login is not None:
            try:
                await self.on_login(account)
            except Exception:
                log.exception("login hook failed for uid %d", account.uid)
                req.reply({"status": AuthStatus.SYSTEM_ERROR})
                return
        if created:
            log.info("new guest account uid %d", account.uid)
        req.reply(
            {
                "status": AuthStatus.OK,
                "uid": account.uid,
                "unick": account.unick,
                "usex": account.usex,
                "uface": account.uface,
                "uvip": account.uvip,
                "guest_key": key,
            }
        )
