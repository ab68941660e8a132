"""`User`: identity (uid, pre-login key, direct connection), pushes, fan-out, departures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netbus.errors import LocalProtocolError
from netbus.protocol import STR, U16, USER_DISCONNECT, ProtoType
from netbus.service import Service, User, command

from .rig import Rig, Sent

JSON, BUF = ProtoType.JSON, ProtoType.BUF
S = 50


class Lobby(Service):
    stype = S
    pushes = {2: [("text", STR)], 3: [("count", U16)], 4: None}  # noqa: RUF012

    def __init__(self) -> None:
        self.seen: list[User] = []
        self.left: list[User] = []

    @command(1, buf=STR, reply_buf=STR)
    def hello(self, user: User, body: Any) -> str:
        self.seen.append(user)
        return body  # type: ignore[no-any-return]

    def on_user_left(self, user: User) -> None:
        self.left.append(user)


class Batching(Lobby):
    def __init__(self) -> None:
        super().__init__()
        self.lost: list[list[User]] = []

    async def on_gateway_lost(self, users: list[User]) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.lost.append(users)


@pytest.fixture
def rig() -> Rig:
    return Rig(Lobby())


def lobby(rig: Rig) -> Lobby:
    service = rig.dispatcher.get(S)
    assert isinstance(service, Lobby)
    return service


def test_a_logged_in_user_is_its_uid(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 1, "a", utag=7)
    rig.send(gw, S, 1, "b", utag=7, proto=BUF)
    rig.send(gw, S, 1, "c", utag=8)
    first, again, other = lobby(rig).seen
    assert first is again and first == again and hash(first) == hash(again)
    assert first != other and first.uid == 7 and first.logged_in
    assert first.proto_type == BUF  # the last proto_type used with this service
    assert {first: "state"}[again] == "state"


def test_pre_login_users_are_link_and_key_and_not_kept(rig: Rig) -> None:
    gw1, gw2 = rig.gateway("gw1"), rig.gateway("gw2")
    key = 0x8000_0001
    rig.send(gw1, S, 1, "a", utag=key)
    rig.send(gw1, S, 1, "b", utag=key)
    rig.send(gw2, S, 1, "c", utag=key)
    a, b, c = lobby(rig).seen
    assert a == b and a is not b  # the same connection, a fresh reference per request
    assert a != c  # the same key on another gateway is another connection
    assert a.uid == 0 and not a.logged_in
    assert rig.dispatcher.users(S) == []  # no table: they get no departure notice
    assert a.push(2, {"text": "hi"})
    assert rig.sent(gw1)[-1] == Sent(S, 2, key, JSON, {"text": "hi"})


def test_direct_players_are_their_connections(rig: Rig) -> None:
    p1, p2 = rig.player("p1"), rig.player("p2")
    rig.send(p1, S, 1, "a", utag=7)
    rig.send(p1, S, 1, "b", utag=8)  # whatever utag a player sends
    rig.send(p2, S, 1, "c", utag=7)
    a, b, c = lobby(rig).seen
    assert a is b and a != c and a.uid == 0
    a.push(2, {"text": "to p1"})
    assert rig.sent(p1)[-1] == Sent(S, 2, 0, JSON, {"text": "to p1"})
    rig.dispatcher.route_closed(p1)
    assert lobby(rig).left == [a]


def test_push_uses_the_users_last_proto_type_and_checks_the_declaration(rig: Rig) -> None:
    gw = rig.gateway()
    rig.send(gw, S, 1, "x", utag=7, proto=BUF)
    (user,) = lobby(rig).seen
    rig.sent(gw)
    assert user.push(3, {"count": 2})
    assert rig.sent(gw) == [Sent(S, 3, 7, BUF, {"count": 2})]
    with pytest.raises(LocalProtocolError, match="not declared"):
        user.push(1, "a command, not a push")
    with pytest.raises(LocalProtocolError):
        user.push(3, {"count": "two"})
    assert user.push(4, ["json", "only"])  # no BUF layout: JSON, which every client reads
    assert rig.sent(gw) == [Sent(S, 4, 7, JSON, ["json", "only"])]
    assert lobby(rig).broadcast([user], 4, None) == 1
    assert rig.sent(gw) == [Sent(S, 4, 7, JSON, None)]
    gw.link.close()
    assert user.push(3, {"count": 2}) is False and not user.connected


def test_broadcast_encodes_once_per_proto_and_tags_each_recipient(rig: Rig) -> None:
    gw, player = rig.gateway(), rig.player()
    rig.send(gw, S, 1, "a", utag=7)
    rig.send(gw, S, 1, "b", utag=8, proto=BUF)
    rig.send(player, S, 1, "c", proto=BUF)
    rig.sent(gw), rig.sent(player)
    users = lobby(rig).seen
    assert lobby(rig).broadcast(users, 2, {"text": "all"}) == 3
    assert rig.sent(gw) == [
        Sent(S, 2, 7, JSON, {"text": "all"}),
        Sent(S, 2, 8, BUF, {"text": "all"}),
    ]
    assert rig.sent(player) == [Sent(S, 2, 0, BUF, {"text": "all"})]
    assert lobby(rig).broadcast([], 2, {"text": "nobody"}) == 0


def test_user_disconnect_and_relogin_elsewhere(rig: Rig) -> None:
    gw1, gw2 = rig.gateway("gw1"), rig.gateway("gw2")
    rig.send(gw1, S, 1, "a", utag=7)
    old = lobby(rig).seen[-1]
    rig.send(gw1, S, USER_DISCONNECT, None, utag=99)  # never seen here: nothing
    assert lobby(rig).left == []
    rig.send(gw2, S, 1, "b", utag=7)  # uid 7 now comes through gw2: the old one left
    new = lobby(rig).seen[-1]
    assert lobby(rig).left == [old] and new.route is gw2 and new == old
    rig.send(gw1, S, USER_DISCONNECT, None, utag=7)  # late notice from gw1: not about `new`
    assert lobby(rig).left == [old]
    rig.send(gw2, S, USER_DISCONNECT, None, utag=7)
    assert lobby(rig).left == [old, new]
    assert rig.dispatcher.users(S) == []


async def test_gateway_lost_reports_that_links_users_once() -> None:
    rig = Rig(Batching())
    gw1, gw2 = rig.gateway("gw1"), rig.gateway("gw2")
    for uid, gw in ((1, gw1), (2, gw1), (3, gw2)):
        rig.send(gw, S, 1, "x", utag=uid)
    service = rig.dispatcher.get(S)
    assert isinstance(service, Batching)
    rig.dispatcher.route_closed(gw1)
    await rig.dispatcher.drain()
    assert [[u.uid for u in users] for users in service.lost] == [[1, 2]]
    assert [u.uid for u in rig.dispatcher.users(S)] == [3]
    rig.dispatcher.route_closed(gw1)  # again: nobody left to report
    await rig.dispatcher.drain()
    assert len(service.lost) == 1


def test_default_gateway_lost_calls_on_user_left_and_hook_errors_are_counted() -> None:
    class Fragile(Lobby):
        def on_user_left(self, user: User) -> None:
            super().on_user_left(user)
            if user.uid == 1:
                raise RuntimeError("hook bug")

    rig = Rig(Fragile())
    gw = rig.gateway()
    rig.send(gw, S, 1, "x", utag=1)
    rig.send(gw, S, 1, "x", utag=2)
    rig.dispatcher.route_closed(gw)
    assert [u.uid for u in lobby(rig).left] == [1, 2]  # one failing hook stops no other
    assert rig.count("hook_error") == 1  # it was counted, not raised
    rig.send(gw, S, 1, "x", utag=3)  # and dispatch goes on
    assert rig.sent(gw)[-1] == Sent(S, 1, 3, JSON, "x")
