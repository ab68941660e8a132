"""netbus/gateway/routing.py: pre-login keys and the choice of instance, pure (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from netbus.gateway.routing import Policy, PreloginKeys, Route, choose, is_prelogin
from netbus.protocol.header import MAX_UID, PRELOGIN_BIT


@dataclass(frozen=True)
class Inst:
    name: str


A, B, C = Inst("svc@10.0.0.1:1"), Inst("svc@10.0.0.2:1"), Inst("svc@10.0.0.3:1")
UIDS = range(1, 2001)


def test_prelogin_keys_have_the_top_bit_and_are_unique_among_live_ones() -> None:
    keys = PreloginKeys()
    first = [keys.allocate() for _ in range(3)]
    assert first == [PRELOGIN_BIT, PRELOGIN_BIT | 1, PRELOGIN_BIT | 2]
    assert all(is_prelogin(k) for k in first)
    assert not is_prelogin(MAX_UID) and not is_prelogin(1)
    keys.release(first[1])
    assert len(keys) == 2


def test_prelogin_keys_wrap_at_31_bits() -> None:
    keys = PreloginKeys(start=MAX_UID)
    assert keys.allocate() == PRELOGIN_BIT | MAX_UID
    assert keys.allocate() == PRELOGIN_BIT  # wrapped: never a uid, never the top bit alone
    assert len(keys) == 2


def test_choose_primary_is_the_first_live_instance_for_everybody() -> None:
    assert {choose(Policy.PRIMARY, uid, [A, B, C]) for uid in UIDS} == {A}
    assert {choose(Policy.PRIMARY, uid, [B, C]) for uid in UIDS} == {B}
    assert choose(Policy.PRIMARY, 7, []) is None


def test_choose_hash_spreads_users_and_moves_only_those_of_a_lost_instance() -> None:
    before = {uid: choose(Policy.HASH, uid, [A, B, C]) for uid in UIDS}
    counts = {inst: sum(1 for i in before.values() if i is inst) for inst in (A, B, C)}
    assert all(500 < n < 840 for n in counts.values()), counts  # ~667 each
    after = {uid: choose(Policy.HASH, uid, [A, C]) for uid in UIDS}
    for uid in UIDS:
        if before[uid] is not B:
            assert after[uid] is before[uid]  # sticky: nobody else moves
        else:
            assert after[uid] in (A, C)
    # and when B returns, exactly its users go back
    assert {uid: choose(Policy.HASH, uid, [A, B, C]) for uid in UIDS} == before


def test_route_pick_is_choose_over_the_live_set() -> None:
    route = Route("svc", 16, [A, B, C], policy=Policy.HASH)
    assert route.live == () and route.pick(5) is None
    assert route.set_live(C, True) == ((), (C,))
    assert route.set_live(A, True) == ((C,), (A, C))  # config order, whatever the order up
    assert all(route.pick(uid) is choose(Policy.HASH, uid, [A, C]) for uid in UIDS)
    assert route.set_live(B, True)[1] == (A, B, C)
    assert all(route.pick(uid) is route.choose(uid, route.live) for uid in UIDS)
    assert route.set_live(A, False) == ((A, B, C), (B, C))
    assert route.set_live(A, False) == ((B, C), (B, C))  # idempotent


def test_route_primary_fails_over_and_back_in_config_order() -> None:
    route = Route("room", 1, [A, B], policy=Policy("primary"))
    route.set_live(B, True)
    assert route.pick(1) is B
    route.set_live(A, True)
    assert route.pick(1) is A and route.pick(99) is A


def test_route_refuses_an_instance_it_does_not_have() -> None:
    route = Route("svc", 16, [A])
    with pytest.raises(ValueError, match="not an instance"):
        route.set_live(B, True)
    with pytest.raises(ValueError):
        Route("svc", 16, [A], policy="round-robin")  # type: ignore[arg-type]
