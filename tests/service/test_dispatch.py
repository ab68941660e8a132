"""`Dispatcher`: every request gets exactly one answer, counted, in request order (no sockets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from netbus.errors import BadRequest, NotAllowed
from netbus.protocol import (
    I16,
    STR,
    U32,
    USER_DISCONNECT,
    LayoutSpec,
    ProtoType,
    pack_header,
)
from netbus.service import Service, User, command
from tests.helpers import json_body

from .rig import Rig, Sent, failed

JSON, BUF = ProtoType.JSON, ProtoType.BUF
S = 20  #: the test service's stype
UNKNOWN, BAD, ERROR, NOT_ALLOWED = -1, -2, -3, -5
POINT = [("x", I16), ("y", I16)]


class Game(Service):
    stype = S
    name = "game"
    pushes: ClassVar[Mapping[int, LayoutSpec]] = {7: [("who", U32), ("text", STR)], 8: None}

    def __init__(self) -> None:
        self.moves: list[tuple[User, Any]] = []
        self.left: list[User] = []
        self.lost: list[list[User]] = []
        self.gate = asyncio.Event()
        self.others: list[User] = []

    @command(1, buf=POINT, reply_buf=POINT)
    def echo(self, user: User, body: Any) -> Any:
        return body

    @command(2)
    def crash(self, user: User, body: Any) -> Any:
        raise RuntimeError("handler bug")

    @command(3)
    def refuse(self, user: User, body: Any) -> Any:
        if body == "nope":
            raise NotAllowed("not now")
        raise BadRequest("bad value")

    @command(4, reply=False)
    def move(self, user: User, body: Any) -> None:
        self.moves.append((user, body))
        if body == "answer":
            return 1  # type: ignore[return-value]  # a bug: fire-and-forget returns a value
        return None

    @command(5, buf=STR, reply_buf=I16)
    def say(self, user: User, body: Any) -> int:
        user.push(7, {"who": 1, "text": f"you said {body}"})
        self.broadcast(self.others, 7, {"who": user.uid, "text": body})
        return 1

    @command(6)
    async def slow(self, user: User, body: Any) -> Any:
        if body == "wait":
            await self.gate.wait()
        user.push(8, f"done {body}")
        if body == "boom":
            raise RuntimeError("async bug")
        return body

    @command(9, buf=[], reply_buf=I16)
    def wrong_reply(self, user: User, body: Any) -> Any:
        return "not an i16"

    @command(10, buf=STR, reply_buf=I16, error_reply=-100)
    def in_kind(self, user: User, body: Any) -> int:
        raise RuntimeError("fails in kind")

    @command(11, error_reply=lambda status: {"code": int(status)})
    def in_kind_json(self, user: User, body: Any) -> Any:
        raise BadRequest("no")

    def on_user_left(self, user: User) -> None:
        self.left.append(user)


@pytest.fixture
def rig() -> Rig:
    return Rig(Game())


def game(rig: Rig) -> Game:
    service = rig.dispatcher.get(S)
    assert isinstance(service, Game)
    return service


# ------------------------------------------------------------------------------- replies
def test_a_reply_returns_in_the_request_proto_and_utag(rig: Rig) -> None:
    gw = rig.gateway()
    assert rig.send(gw, S, 1, {"x": 1, "y": -2}, utag=77)
    assert rig.send(gw, S, 1, {"x": 3, "y": 4}, utag=0x8000_0005, proto=BUF)
    assert rig.sent(gw) == [
        Sent(S, 1, 77, JSON, {"x": 1, "y": -2}),
        Sent(S, 1, 0x8000_0005, BUF, {"x": 3, "y": 4}),
    ]
    player = rig.player()
    assert rig.send(player, S, 1, [1, 2], utag=12345)  # a direct player's utag is ignored
    assert rig.sent(player) == [Sent(S, 1, 0, JSON, [1, 2])]


def test_unknown_stype_and_ctype_get_unknown_command(rig: Rig) -> None:
    gw = rig.gateway()
    assert rig.send(gw, 99, 1, None, utag=5)
    assert rig.raw(gw, pack_header(S, 77, 5, BUF) + b"\x01")
    assert rig.sent(gw) == [failed(99, 1, UNKNOWN, 5), failed(S, 77, UNKNOWN, 5, BUF)]
    assert rig.count("unknown_stype") == 1 and rig.count("unknown_command") == 1


@pytest.mark.parametrize(
    ("ctype", "proto", "body", "kind"),
    [
        (1, JSON, json_body("["), "bad_json"),
        (1, BUF, b"\x01\x00", "short_body"),
        (1, BUF, b"\x01\x00\x02\x00\x03", "long_body"),
        (2, BUF, b"", "no_buf_layout"),
        (5, BUF, b"\x02\x00\xc3\x28", "bad_utf8"),
    ],
)
def test_a_malformed_body_gets_bad_request(
    rig: Rig, ctype: int, proto: int, body: bytes, kind: str
) -> None:
    gw = rig.gateway()
    assert rig.raw(gw, pack_header(S, ctype, 42, proto) + body)
    assert rig.sent(gw) == [failed(S, ctype, BAD, 42, proto)]
    assert rig.count("bad_request") == 1 and rig.protocol_errors(kind) == 1


def test_handler_errors_and_refusals_get_their_status(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 2, None, utag=5)
    rig.send(gw, S, 3, "nope", utag=5)
    rig.send(gw, S, 3, "x", utag=5, proto=JSON)
    rig.send(gw, S, 9, None, utag=5)  # the reply does not fit its BUF layout...
    rig.send(gw, S, 9, None, utag=5, proto=BUF)  # ... only in BUF
    assert rig.sent(gw) == [
        failed(S, 2, ERROR, 5),
        failed(S, 3, NOT_ALLOWED, 5),
        failed(S, 3, BAD, 5),
        Sent(S, 9, 5, JSON, "not an i16"),
        failed(S, 9, ERROR, 5, BUF),
    ]
    assert rig.count("handler_error") == 1
    assert rig.count("not_allowed") == 1
    assert rig.count("bad_request") == 1
    assert rig.count("bad_reply") == 1


def test_declared_error_reply_is_sent_in_kind_when_it_fits(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 10, "x", utag=5)
    rig.send(gw, S, 10, "x", utag=5, proto=BUF)
    rig.raw(gw, pack_header(S, 10, 5, BUF) + b"\x05\x00ab")  # malformed: still in kind
    rig.send(gw, S, 11, None, utag=5)
    rig.raw(gw, pack_header(S, 11, 5, BUF))  # no BUF layout for the in-kind reply
    assert rig.sent(gw) == [
        Sent(S, 10, 5, JSON, -100),
        Sent(S, 10, 5, BUF, -100),
        Sent(S, 10, 5, BUF, -100),
        Sent(S, 11, 5, JSON, {"code": BAD}),
        failed(S, 11, BAD, 5, BUF),
    ]


def test_fire_and_forget_gets_no_reply_but_its_failures_are_reported(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 4, "left", utag=5)
    rig.send(gw, S, 4, "answer", utag=5)  # returns a value: a bug, counted, nothing sent
    rig.raw(gw, pack_header(S, 4, 5, BUF))  # no BUF layout: the client learns why
    assert [body for _, body in game(rig).moves] == ["left", "answer"]
    assert rig.sent(gw) == [failed(S, 4, BAD, 5, BUF)]
    assert rig.count("bad_reply") == 1


def test_malformed_header_is_refused_and_counted(rig: Rig) -> None:
    player = rig.player()
    assert rig.raw(player, b"\x14\x00\x01") is False
    assert rig.raw(player, pack_header(S, 1, 0, 3)) is False
    assert rig.sent(player) == []
    assert rig.protocol_errors("short_header") == 1 and rig.protocol_errors("bad_proto_type") == 1
    assert player.link.stats.protocol_errors == 2


def test_gateway_only_ctypes(rig: Rig) -> None:
    player, gw = rig.player(), rig.gateway()
    assert rig.send(player, S, USER_DISCONNECT, None)
    assert rig.send(player, S, 10500, None)
    assert rig.sent(player) == [failed(S, USER_DISCONNECT, NOT_ALLOWED), failed(S, 10500, -5)]
    assert rig.count("forged_control") == 2
    assert rig.send(gw, S, 10999, None, utag=3)  # a notice this server does not know
    assert rig.sent(gw) == [] and rig.count("unknown_notice") == 1


# ---------------------------------------------------------------------- replies first
def test_pushes_made_by_a_handler_follow_its_reply(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 1, {"x": 0, "y": 0}, utag=2, proto=BUF)  # user 2 (BUF) is known
    rig.sent(gw)
    service = game(rig)
    service.others = rig.dispatcher.users(S)
    assert rig.send(gw, S, 5, "hi", utag=3)
    assert rig.sent(gw) == [
        Sent(S, 5, 3, JSON, 1),
        Sent(S, 7, 3, JSON, {"who": 1, "text": "you said hi"}),
        Sent(S, 7, 2, BUF, {"who": 3, "text": "hi"}),
    ]


# ----------------------------------------------------------------------- async handlers
async def test_async_answers_keep_request_order_per_user_and_command(rig: Rig) -> None:
    gw = rig.gateway()
    service = game(rig)
    rig.send(gw, S, 6, "wait", utag=5)  # slow
    rig.raw(gw, pack_header(S, 6, 5, JSON) + json_body("{"))  # refused at once...
    rig.send(gw, S, 6, "fast", utag=5)
    rig.send(gw, S, 6, "other user", utag=6)  # not held back by user 5
    rig.send(gw, S, 1, {"x": 1, "y": 1}, utag=5)  # another command: not held back either
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert rig.sent(gw) == [
        Sent(S, 1, 5, JSON, {"x": 1, "y": 1}),
        Sent(S, 6, 6, JSON, "other user"),
        Sent(S, 8, 6, JSON, "done other user"),
    ]
    assert rig.dispatcher.pending == 1  # "fast" is done; its answer waits for "wait"
    service.gate.set()
    await rig.dispatcher.drain(timeout=5)
    assert rig.sent(gw) == [  # ... but answered in request order, each reply before its push
        Sent(S, 6, 5, JSON, "wait"),
        Sent(S, 8, 5, JSON, "done wait"),
        failed(S, 6, BAD, 5),
        Sent(S, 6, 5, JSON, "fast"),
        Sent(S, 8, 5, JSON, "done fast"),
    ]
    assert rig.dispatcher.pending == 0


async def test_async_failure_is_answered_and_counted(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 6, "boom", utag=5)
    await rig.dispatcher.drain(timeout=5)
    assert rig.sent(gw) == [failed(S, 6, ERROR, 5), Sent(S, 8, 5, JSON, "done boom")]
    assert rig.count("handler_error") == 1


async def test_drain_gives_up_after_its_timeout(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 6, "wait", utag=5)
    await rig.dispatcher.drain(timeout=0.01)
    assert rig.dispatcher.pending == 1
    game(rig).gate.set()
    await rig.dispatcher.drain()
    assert rig.dispatcher.pending == 0


# ------------------------------------------------------------------------- sampled logs
def test_errors_are_counted_exactly_but_logged_sampled(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rig = Rig(Game(), clock=lambda: now[0])
    gw = rig.gateway()
    with caplog.at_level(logging.INFO, logger="netbus.service"):
        for _ in range(25):
            rig.raw(gw, pack_header(S, 1, 1234, JSON) + json_body("["))
        lines = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 10 and "uid 1234" in lines[0].getMessage()
        caplog.clear()
        now[0] = 61.0
        rig.dispatcher.errors.flush_expired()
        (summary,) = caplog.records
        assert "15 more bad_request" in summary.getMessage()
    assert rig.count("bad_request") == 25
    assert len(rig.sent(gw)) == 25  # every one answered


# -------------------------------------------------------------------------- registration
def test_register_rejects_bad_duplicate_and_reused_services() -> None:
    rig = Rig(Game())
    with pytest.raises(ValueError, match="already served"):
        rig.dispatcher.register(Game())
    with pytest.raises(ValueError, match="no valid stype"):
        rig.dispatcher.register(Service())
    other = Rig()
    with pytest.raises(ValueError, match="already registered"):
        other.dispatcher.register(game(rig))
    assert [s.name for s in rig.dispatcher.services] == ["game"]
    assert rig.dispatcher.get(99) is None


async def test_start_and_stop_hooks_run_in_order() -> None:
    calls: list[str] = []

    class A(Service):
        stype = 30

        async def on_start(self) -> None:
            calls.append("start a")

        def on_stop(self) -> None:
            calls.append("stop a")

    class B(Service):
        stype = 31

        def on_start(self) -> None:
            calls.append("start b")

        async def on_stop(self) -> None:
            calls.append("stop b")
            raise RuntimeError("logged, not raised")

    rig = Rig(A(), B())
    await rig.dispatcher.start()
    await rig.dispatcher.stop()
    assert calls == ["start a", "start b", "stop b", "stop a"]


def test_service_is_usable_without_a_server_in_unit_tests() -> None:
    """Handlers are plain methods; only sending needs registration."""
    service = Game()
    assert service.echo(None, {"x": 1}) == {"x": 1}  # type: ignore[arg-type]
    with pytest.raises(Exception, match="not registered"):
        service.broadcast([], 7, {})
