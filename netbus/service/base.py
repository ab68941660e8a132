"""`Service`: the unit a game developer writes. One per stype, registered with a `ServiceServer`.

Everything about a service is declared on its class (docs/services.md)::

    class Echo(Service):
        stype = 16
        name = "echo"
        pushes = {2: [("text", STR)]}          # ctype -> BUF layout of a push

        @command(1, buf=[("seq", U32), ("data", STR)], reply_buf=[("seq", U32), ("data", STR)])
        def echo(self, user: User, body: Any) -> Any:
            return body                         # the reply

From that the framework builds the ctype dispatch table (when the class is created), the
service's codec registry (`Service.codecs`, also what clients load), and the error policy:
every request gets exactly one answer (docs/protocol.md §7.1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from netbus.errors import LocalProtocolError
from netbus.protocol.codec import BodyCodec
from netbus.protocol.control import GATEWAY_ONLY_CTYPES
from netbus.protocol.registry import CodecRegistry, Direction, LayoutSpec, layout
from netbus.service.commands import CommandSpec, declared_commands
from netbus.service.user import Outbox, User

__all__ = ["HookResult", "Service", "service_codecs"]

#: what a hook may return: nothing, or an awaitable the server runs as a tracked task
HookResult = Awaitable[None] | None


class Service:
    """Base class for services: declare ``stype``, ``name``, ``pushes`` and ``@command``\\ s.

    Attributes:
        stype: the service number (game services use 16 and up; 1-15 are netbus's). An
            instance may override it before it is registered (e.g. from configuration).
        name: for logs and metrics.
        pushes: ctype -> BUF layout (None: JSON only) of each push the service sends.
        commands: ctype -> `CommandSpec`, collected from ``@command`` when the class is made.
    """

    stype: int = -1
    name: str = "service"
    pushes: ClassVar[Mapping[int, LayoutSpec]] = {}
    commands: ClassVar[Mapping[int, CommandSpec]] = MappingProxyType({})
    _push_layouts: ClassVar[dict[int, BodyCodec | None]] = {}
    _outbox: Outbox | None = None  #: set by the server when the service is registered

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        commands = declared_commands(cls)
        push_layouts: dict[int, BodyCodec | None] = {}
        for ctype, spec in dict(cls.pushes).items():
            if not isinstance(ctype, int) or not 1 <= ctype <= 0xFFFF:
                raise TypeError(f"{cls.__name__}.pushes: ctype {ctype!r} is not in 1-65535")
            if ctype in GATEWAY_ONLY_CTYPES:
                raise TypeError(f"{cls.__name__}.pushes: ctype {ctype} is gateway-only")
            if ctype in commands:
                raise TypeError(
                    f"{cls.__name__}: ctype {ctype} is both a command and a push; a client "
                    "would take the push for the reply to its request"
                )
            push_layouts[int(ctype)] = layout(spec)
        cls.commands = MappingProxyType(commands)
        cls._push_layouts = push_layouts

    # -------------------------------------------------------------------- declarations
    def codecs(self) -> CodecRegistry:
        """This service's BUF layouts (requests, replies, pushes) under its stype."""
        return service_codecs(type(self), self.stype)

    # ------------------------------------------------------------------------- sending
    def broadcast(self, users: Iterable[User], ctype: int, body: Any) -> int:
        """Push ``ctype`` with ``body`` to every user in ``users``.

        The body is encoded once per proto_type and only the 4-byte utag is rewritten per
        recipient (docs/protocol.md §8), so this is the way to fan out to many users. Inside
        a handler the pushes go out right after its reply. Returns how many users were
        reachable (links still open).

        Raises:
            LocalProtocolError: ``ctype`` is not a declared push or ``body`` does not fit.
        """
        outbox = self._outbox
        if outbox is None:
            raise LocalProtocolError(f"{self.name}: not registered with a ServiceServer yet")
        return outbox.broadcast(users, ctype, body)

    # --------------------------------------------------------------------------- hooks
    def on_user_left(self, user: User) -> HookResult:
        """``user`` is gone: its connection ended, it was kicked, or it logged in elsewhere.

        Called once per user this service has seen (logged-in users and direct players;
        pre-login users of auth/public routes get no such notice).
        """
        return None

    def on_gateway_lost(self, users: list[User]) -> HookResult:
        """A gateway link closed: ``users`` (those this service knew through it) are gone.

        The default calls `on_user_left` for each; override to handle them as a batch.
        """
        pending = [aw for user in users if (aw := self.on_user_left(user)) is not None]
        return _await_all(pending) if pending else None

    def on_start(self) -> HookResult:
        """Before the server accepts links (open resources here; may be ``async``)."""
        return None

    def on_stop(self) -> HookResult:
        """After the last link closed and handlers drained (release resources; may be async)."""
        return None


async def _await_all(awaitables: list[Awaitable[None]]) -> None:
    for awaitable in awaitables:
        await awaitable


def service_codecs(cls: type[Service], stype: int) -> CodecRegistry:
    """The BUF layouts ``cls`` declares, under ``stype``."""
    table: dict[tuple[int, int, Direction], BodyCodec] = {}
    for ctype, spec in cls.commands.items():
        if spec.buf is not None:
            table[(stype, ctype, Direction.TO_SERVER)] = spec.buf
        if spec.reply_buf is not None:
            table[(stype, ctype, Direction.TO_CLIENT)] = spec.reply_buf
    for ctype, codec in cls._push_layouts.items():
        if codec is not None:
            table[(stype, ctype, Direction.TO_CLIENT)] = codec
    return CodecRegistry(table)
