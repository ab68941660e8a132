"""Command-line options as dataclass fields: one class per scenario, one for the shared ones.

A field declared with `opt` is an option of ``netbus bench <scenario>``: its name gives the
flag (``setup_timeout`` -> ``--setup-timeout``), its type the parsing (int, float, str, an
enum -> a choice of its values, bool -> an on/off pair or a flag), its default the default.
`click_options` turns a class into click decorators and `build` turns parsed values back into
the dataclass, so a scenario's options are declared once and typed where they are used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click

from netbus_bench.kinds import LogLevel, Loop

__all__ = ["Common", "build", "click_options", "loopback", "opt"]

T = TypeVar("T")
_META = "netbus_bench.option"


@dataclass(frozen=True, slots=True)
class _Option:
    help: str
    click: dict[str, Any]


def opt(default: T, help: str, **click_kwargs: Any) -> T:
    """A dataclass field that is also a command-line option (extra click arguments allowed)."""
    meta = {_META: _Option(help, click_kwargs)}
    if isinstance(default, dict | list):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


def loopback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback: accept only targets on this machine (`check_loopback`)."""
    if value is None:
        return None
    from netbus_bench.procs import check_loopback

    try:
        return check_loopback(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _pid_pairs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    pids: dict[str, int] = {}
    for value in values:
        role, sep, pid = value.partition("=")
        if not sep or not pid.isdigit():
            raise click.BadParameter(f"expected ROLE=PID, got {value!r}")
        pids[role] = int(pid)
    return pids


@dataclass(frozen=True)
class Common:
    """The options every scenario has; a scenario states its own defaults for them."""

    duration: float = opt(10.0, "Seconds of load per phase (ccu: of the hold after the ramp).")
    messages: int = opt(5_000_000, "At most this many requests per phase, over all workers.")
    procs: int = opt(2, "Load-generating worker processes.")
    inflight: int = opt(1, "Requests in flight per connection (fanout: sender window).")
    rate: float = opt(
        0.0, "Paced requests/s over all workers (fanout: sender msgs/s); 0 = closed loop."
    )
    payload: int = opt(32, "Bytes of text in each message body.")
    out: Path | None = opt(
        None,
        "Report directory [default: bench-results/<scenario>-<timestamp>].",
        type=click.Path(file_okay=False, path_type=Path),
        show_default=False,
    )
    loop: Loop = opt(Loop.UVLOOP, "Event loop of the workers and servers.")
    gateway: str | None = opt(
        None, "Target a running cluster's TCP gateway (tcp://127.0.0.1:PORT).", callback=loopback
    )
    pids: dict[str, int] = opt(
        {},
        "ROLE=PID of a running cluster's process to measure (repeatable).",
        param_decls=["--pid", "pids"],
        multiple=True,
        callback=_pid_pairs,
        show_default=False,
    )
    setup_timeout: float = opt(
        120.0, "Seconds allowed for connecting, logging in, entering (ccu: ramping)."
    )
    log_level: LogLevel = opt(
        LogLevel.WARNING, "Log level of the servers started (logs go to <out>/logs/)."
    )
    quiet: bool = opt(False, "No live view or summary.")


def _click_type(hint: Any) -> Any:
    """int/float/str, an enum (a choice of its values), or ``X | None`` of those."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, type) and issubclass(hint, Enum):
        return click.Choice([m.value for m in hint])
    if hint in (int, float, str):
        return hint
    raise TypeError(f"no command-line type for {hint!r}")


def _enum_of(hint: Any) -> type[Enum] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Enum) else None


def click_options(
    cls: type[Any], defaults: Any = None
) -> list[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """The click option decorators for the `opt` fields of ``cls``, in declaration order.

    Defaults come from the instance ``defaults`` when given (a scenario's `Common`), else
    from the fields.
    """
    hints = typing.get_type_hints(cls)
    decorators: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = []
    for f in dataclasses.fields(cls):
        meta: _Option | None = f.metadata.get(_META)
        if meta is None:
            continue
        kwargs = dict(meta.click)
        flag = "--" + f.name.replace("_", "-")
        decls = kwargs.pop("param_decls", None)
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = None
        hint = hints[f.name]
        if hint is bool:
            kwargs.setdefault("is_flag", True)
            if decls is None:
                decls = [flag] if default is False else [f"{flag}/--no-{flag[2:]}"]
        elif hint is not bool and "type" not in kwargs and "callback" not in kwargs:
            kwargs["type"] = _click_type(hint)
        if isinstance(default, Enum):
            default = default.value
        kwargs.setdefault("show_default", True)
        if not kwargs.get("multiple"):
            kwargs["default"] = default
        decorators.append(click.option(*(decls or [flag, f.name]), help=meta.help, **kwargs))
    return decorators


def build(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of ``cls`` from parsed option ``values`` (its own fields only, enums made)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values:
            value = values[f.name]
            hint = hints[f.name]
            if typing.get_origin(hint) in (typing.Union, types.UnionType):
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            enum = _enum_of(hint)
            kwargs[f.name] = enum(value) if enum is not None and value is not None else value
    return cls(**kwargs)
