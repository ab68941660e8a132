"""``@command`` and the class-level declarations: mistakes fail when the class is defined."""

from __future__ import annotations

from typing import Any

import pytest

from netbus.protocol import I16, STR, U16, Direction, FieldsCodec, ScalarCodec
from netbus.service import NO_ERROR_REPLY, Service, User, command

from .rig import Rig, Sent


class Base(Service):
    stype = 40
    pushes = {9: [("n", U16)]}  # noqa: RUF012 - the documented, plain form

    @command(1, buf=[("a", I16)], reply_buf=I16)
    def first(self, user: User, body: Any) -> int:
        return 1

    @command(2)
    def second(self, user: User, body: Any) -> str:
        return "base"


class Child(Base):
    @command(3, reply=False)
    def third(self, user: User, body: Any) -> None:
        return None

    def second(self, user: User, body: Any) -> str:  # overrides the handler, keeps the ctype
        return "child"


def test_commands_are_collected_when_the_class_is_made() -> None:
    assert sorted(Base.commands) == [1, 2]
    assert sorted(Child.commands) == [1, 2, 3]
    spec = Base.commands[1]
    assert (spec.ctype, spec.name, spec.reply, spec.error_reply) == (
        1,
        "first",
        True,
        NO_ERROR_REPLY,
    )
    assert isinstance(spec.buf, FieldsCodec) and isinstance(spec.reply_buf, ScalarCodec)
    assert Child.commands[3].reply is False
    assert Base().first(None, None) == 1  # type: ignore[arg-type]  # still a plain method


def test_a_subclass_override_is_what_gets_called() -> None:
    rig = Rig(Child())
    gw = rig.gateway()
    rig.send(gw, 40, 2, None, utag=5)
    assert rig.sent(gw) == [Sent(40, 2, 5, 1, "child")]


def test_the_service_registry_holds_requests_replies_and_pushes() -> None:
    codecs = Child().codecs()
    assert sorted(codecs) == [
        (40, 1, Direction.TO_SERVER),
        (40, 1, Direction.TO_CLIENT),
        (40, 9, Direction.TO_CLIENT),
    ]
    instance = Child()
    instance.stype = 41  # e.g. from configuration, before registration
    assert {key[0] for key in instance.codecs()} == {41}


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0,), {}, "outside"),
        ((70000,), {}, "outside"),
        ((10000,), {}, "gateway-only"),
        ((True,), {}, "must be an int"),
        (("1",), {}, "must be an int"),
        ((1,), {"buf": I16}, "no reply_buf"),
        ((1,), {"reply": False, "reply_buf": I16}, "no reply but declares reply_buf"),
        ((1,), {"reply": False, "error_reply": -1}, "no reply but declares error_reply"),
        ((1,), {"buf": "f32", "reply_buf": I16}, "unknown BUF field kind"),
        ((1,), {"buf": [("a",)], "reply_buf": I16}, "pairs"),
    ],
)
def test_bad_declarations_fail_at_once(args: Any, kwargs: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        command(*args, **kwargs)


def test_class_level_mistakes_fail_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="handled by both"):

        class Twice(Service):
            @command(1)
            def a(self, user: User, body: Any) -> None: ...

            @command(1)
            def b(self, user: User, body: Any) -> None: ...

    with pytest.raises(TypeError, match="both a command and a push"):

        class Clash(Service):
            pushes = {1: None}  # noqa: RUF012

            @command(1)
            def a(self, user: User, body: Any) -> None: ...

    with pytest.raises(TypeError, match="gateway-only"):

        class Notice(Service):
            pushes = {10001: None}  # noqa: RUF012

    with pytest.raises(TypeError, match="not in 1-65535"):

        class Zero(Service):
            pushes = {0: STR}  # noqa: RUF012

    with pytest.raises(ValueError, match="already declared"):
        command(2)(command(1)(lambda self, user, body: None))


async def test_async_is_detected_on_the_bound_method() -> None:
    class Sync(Service):
        stype = 42

        @command(1)
        def go(self, user: User, body: Any) -> str:
            return "sync"

    class Async(Sync):
        async def go(self, user: User, body: Any) -> str:  # type: ignore[override]
            return "async"

    rig = Rig(Async())
    gw = rig.gateway()
    rig.send(gw, 42, 1, None, utag=1)
    assert rig.sent(gw) == []  # a task, not inline
    await rig.dispatcher.drain()
    assert rig.sent(gw) == [Sent(42, 1, 1, 1, "async")]
