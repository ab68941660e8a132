"""Auth's commands and status codes (docs/protocol.md §6.2). Auth requests are JSON only."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["AuthCmd", "AuthStatus"]


class AuthCmd(IntEnum):
    GUEST_LOGIN = 1
    RELOGIN = 2  #: gateway -> client push: this account logged in elsewhere; a close follows


class AuthStatus(IntEnum):
    OK = 1
    SYSTEM_ERROR = -100
    INVALID_PARAMS = -101
    INVALID_OPT = -102
    ILLEGAL_ACCOUNT = -103
