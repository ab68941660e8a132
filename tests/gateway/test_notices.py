"""netbus/gateway/notices.py: who hears what when a service's live instances change (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from netbus.gateway.notices import failover_notices
from netbus.gateway.routing import Policy, choose

STYPE = 16


@dataclass(eq=False)
class Conn:
    uid: int
    protos: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Named:
    name: str


def _pick(uid: int, live: Sequence[str]) -> str | None:
    chosen = choose(Policy.HASH, uid, [_Named(n) for n in live])
    return chosen.name if chosen is not None else None


def primary(uid: int, live: Sequence[str]) -> str | None:
    return live[0] if live else None


def test_nothing_to_say_when_nobody_moves() -> None:
    users = [Conn(1, {STYPE: 1}), Conn(0, {STYPE: 1})]
    out = failover_notices(STYPE, users, ["a", "b"], ["a", "b", "c"], primary)
    assert (out.disconnect, out.unavailable, out.available) == ([], [], [])


def test_the_last_instance_going_tells_users_and_pre_login_connections_that_used_it() -> None:
    alice, bob = Conn(1, {STYPE: 2}), Conn(2)
    asked, idle = Conn(0, {STYPE: 1}), Conn(0, {99: 1})
    out = failover_notices(STYPE, [alice, bob, asked, idle], ["a"], [], primary)
    # logged-in users all hear it (their instance is gone), used or not; pre-login: only asked
    assert out.unavailable == [alice, bob, asked]
    assert out.available == [] and out.disconnect == []


def test_a_service_coming_back_tells_logged_in_users() -> None:
    alice, waiting = Conn(1), Conn(0)
    out = failover_notices(STYPE, [alice, waiting], [], ["a"], primary)
    assert out.available == [alice]
    assert out.unavailable == [] and out.disconnect == []


def test_primary_failover_moves_everybody_to_the_standby() -> None:
    users = [Conn(uid) for uid in (1, 2, 3)]
    out = failover_notices(STYPE, users, ["a", "b"], ["b"], primary)
    assert out.unavailable == users and out.available == users  # both, in that order
    assert out.disconnect == []  # "a" is gone: nobody to tell


def test_fail_back_disconnects_users_from_the_instance_they_leave() -> None:
    users = [Conn(uid) for uid in (1, 2)]
    out = failover_notices(STYPE, users, ["b"], ["a", "b"], primary)
    assert out.disconnect == [(1, "b"), (2, "b")]  # "b" is still up: no ghosts there
    assert out.unavailable == users and out.available == users


def test_hash_routing_moves_only_the_users_of_the_lost_instance() -> None:
    users = [Conn(uid) for uid in range(1, 301)]
    out = failover_notices(STYPE, users, ["a", "b", "c"], ["a", "c"], _pick)
    moved = [u for u in users if _pick(u.uid, ["a", "b", "c"]) == "b"]
    assert 50 < len(moved) < 150
    assert out.unavailable == moved and out.available == moved
    assert out.disconnect == []
    back = failover_notices(STYPE, users, ["a", "c"], ["a", "b", "c"], _pick)
    assert back.available == moved
    assert sorted(back.disconnect) == sorted((u.uid, _pick(u.uid, ["a", "c"])) for u in moved)


def test_a_service_coming_back_tells_pre_login_connections_that_used_it() -> None:
    asked, idle = Conn(0, {STYPE: 1}), Conn(0)
    out = failover_notices(STYPE, [asked, idle], [], ["a"], primary)
    assert out.available == [asked]
    assert out.unavailable == [] and out.disconnect == []
    # an instance more or less, with one still up, is nothing to a pre-login connection
    assert failover_notices(STYPE, [asked], ["a"], ["a", "b"], primary).available == []
    assert failover_notices(STYPE, [asked], ["a", "b"], ["b"], primary).unavailable == []
