"""Things ``netbus serve`` may be pointed at (``tests.service.targets:<attr>``), good and bad."""

from __future__ import annotations

from typing import Any

from netbus.service import Service, User, command

__all__ = [
    "BOTH",
    "ECHO",
    "NOT_A_SERVICE",
    "Chat",
    "Echo",
    "NotAService",
    "Unset",
    "make",
    "make_nothing",
    "make_two",
    "make_wrong",
]


class Echo(Service):
    stype = 16
    name = "echo"

    def __init__(self, *, prefix: str = "") -> None:
        self.prefix = prefix

    @command(1)
    def echo(self, user: User, body: Any) -> Any:
        return [self.prefix, body]


class Chat(Service):
    stype = 17
    name = "chat"


class Unset(Service):
    """Declares no stype: ``[services.<name>] stype`` gives it one."""

    name = "unset"


class NotAService:
    pass


ECHO = Echo(prefix="instance")
BOTH = [Echo, Chat()]
NOT_A_SERVICE = 42


def make(*, prefix: str = "made") -> Echo:
    return Echo(prefix=prefix)


def make_two() -> list[Service]:
    return [Echo(), Chat()]


def make_nothing() -> list[Service]:
    return []


def make_wrong() -> object:
    return "not a service"
