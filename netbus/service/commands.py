"""``@command``: a service declares each ctype where it handles it (docs/services.md).

The decorator only attaches a `CommandSpec` to the function; `Service.__init_subclass__`
collects them into the class's ``commands`` table when the class is created, so a typo (two
handlers for one ctype, a BUF request whose reply could not be BUF) fails at import time,
not when the first packet arrives. The function itself is returned unchanged: a unit test
can still call the handler directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from netbus.protocol.codec import BodyCodec
from netbus.protocol.control import GATEWAY_ONLY_CTYPES
from netbus.protocol.registry import LayoutSpec, layout

__all__ = ["NO_ERROR_REPLY", "CommandSpec", "command", "declared_commands"]

F = TypeVar("F", bound=Callable[..., Any])

#: the ``error_reply`` of a command that answers failures with REQUEST_FAILED
NO_ERROR_REPLY: Any = type("NoErrorReply", (), {"__repr__": lambda self: "NO_ERROR_REPLY"})()

_ATTR = "__netbus_command__"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One declared command (what ``@command`` records).

    Attributes:
        ctype: the command number (1-65535 outside the gateway-only 10000-10999).
        name: the handler's attribute name on the service class.
        buf: BUF layout of the request (None: the request is JSON only).
        reply_buf: BUF layout of the reply (None: the reply is JSON only).
        reply: False for fire-and-forget commands (no reply; the handler returns None).
        error_reply: what to answer, in kind, when the request fails (a value, or a callable
            taking the `RequestStatus`); `NO_ERROR_REPLY` answers REQUEST_FAILED instead.

    Whether the handler is ``async`` is read from the method the service instance has when
    it is registered, so a subclass may override a handler (even with ``async def``).
    """

    ctype: int
    name: str
    buf: BodyCodec | None
    reply_buf: BodyCodec | None
    reply: bool
    error_reply: Any


def command(
    ctype: int,
    *,
    buf: LayoutSpec = None,
    reply_buf: LayoutSpec = None,
    reply: bool = True,
    error_reply: Any = NO_ERROR_REPLY,
) -> Callable[[F], F]:
    """Declare the decorated method as the handler of ``ctype``.

    The handler is called as ``handler(user, body)`` with the decoded body; what it returns
    is the reply (sent in the request's proto_type; ``None`` is JSON ``null``). It may be a
    plain function (run inline, the fast path) or ``async def`` (run as a tracked task; its
    reply still keeps the order of that user's requests).

    Args:
        ctype: the command number.
        buf: the request's BUF layout: a field kind (one bare value), a list of
            ``(name, kind)`` pairs (a dict), or a codec. None: JSON only.
        reply_buf: the reply's BUF layout, same forms. Required when ``buf`` is given and
            the command replies, since a BUF request is answered in BUF.
        reply: False declares a fire-and-forget command (e.g. a game "move").
        error_reply: the in-kind reply to send instead of REQUEST_FAILED when the request
            cannot be served (bad body, handler error); a value, or a callable
            ``(status) -> value``. Used where existing clients expect the service's own
            error code (the talkroom answers INVALID_OPT).

    Raises:
        ValueError: an invalid ctype or layout, or contradictory options.
    """
    if not isinstance(ctype, int) or isinstance(ctype, bool):
        raise ValueError(f"ctype must be an int, got {ctype!r}")
    if not 1 <= ctype <= 0xFFFF or ctype in GATEWAY_ONLY_CTYPES:
        raise ValueError(f"ctype {ctype} is outside 1-65535 or in the gateway-only 10000-10999")
    request_codec = layout(buf)
    reply_codec = layout(reply_buf)
    if not reply:
        if reply_codec is not None:
            raise ValueError(f"command {ctype} has no reply but declares reply_buf")
        if error_reply is not NO_ERROR_REPLY:
            raise ValueError(f"command {ctype} has no reply but declares error_reply")
    elif request_codec is not None and reply_codec is None:
        raise ValueError(
            f"command {ctype} accepts BUF requests (buf=...) but has no reply_buf: "
            "a BUF request is answered in BUF"
        )

    def decorate(func: F) -> F:
        if hasattr(func, _ATTR):
            raise ValueError(f"{func.__name__} is already declared as a command")
        spec = CommandSpec(
            ctype=int(ctype),
            name=func.__name__,
            buf=request_codec,
            reply_buf=reply_codec,
            reply=reply,
            error_reply=error_reply,
        )
        setattr(func, _ATTR, spec)
        return func

    return decorate


def declared_commands(cls: type) -> dict[int, CommandSpec]:
    """Every ``@command`` of ``cls`` and its bases, by ctype; a subclass overrides its bases.

    Raises:
        TypeError: one class declares two handlers for the same ctype.
    """
    table: dict[int, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        seen: dict[int, str] = {}
        for attr, value in vars(klass).items():
            spec: CommandSpec | None = getattr(value, _ATTR, None)
            if spec is None:
                continue
            if spec.ctype in seen:
                raise TypeError(
                    f"{klass.__name__}: ctype {spec.ctype} is handled by both "
                    f"{seen[spec.ctype]} and {attr}"
                )
            seen[spec.ctype] = attr
            if attr != spec.name:  # assigned under another name: dispatch by this one
                spec = CommandSpec(
                    spec.ctype, attr, spec.buf, spec.reply_buf, spec.reply, spec.error_reply
                )
            table[spec.ctype] = spec
    return table
