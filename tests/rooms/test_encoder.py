"""netbus.rooms.encoder: patches, views, message bounds; checked by decoding them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest

from netbus.errors import LocalProtocolError
from netbus.rooms import (
    MIN_MAX_MESSAGE,
    Schema,
    StateDecoder,
    StateEncoder,
    StateTooLarge,
    Visible,
    to_plain,
)
from netbus.rooms.wire import FLAG_END, FLAG_RESET

from .states import Arena, Box, Item, Player, Pos, expected_view, joined, sync


def test_nothing_changed_nothing_sent() -> None:
    encoder = StateEncoder(Arena())
    assert encoder.patch([1, 2]) == []
    assert encoder.seq == 0


def test_round_trip_of_every_kind_of_change() -> None:
    arena = Arena(players={"a": Player("ann", 1.0, 2.0, uid=1)}, items=[Pos(1.0, 1.0)])
    encoder: StateEncoder[int] = StateEncoder(arena)
    decoders = {1: joined(encoder, 1), 2: joined(encoder, 2)}
    steps = [
        lambda: setattr(arena.players["a"], "x", 5.5),
        lambda: arena.players.update(b=Player("bob", uid=2, secret="s")),
        lambda: arena.items.insert(0, Pos(3.0)),
        lambda: setattr(arena, "winner", arena.players.pop("a")),
        lambda: setattr(arena.winner, "score", 10),
        lambda: setattr(arena, "title", "round 2"),
        lambda: arena.items.clear(),
        lambda: setattr(arena, "winner", None),
        lambda: arena.players["b"].__setattr__("secret", "t"),
    ]
    for step in steps:
        step()
        sync(encoder, decoders)
        for viewer, decoder in decoders.items():
            assert to_plain(decoder.state) == expected_view(arena, viewer)
    assert encoder.seq == len(steps)


def test_viewers_with_the_same_view_share_one_delivery() -> None:
    arena = Arena(players={"a": Player(uid=1), "b": Player(uid=2)})
    encoder: StateEncoder[int] = StateEncoder(arena)
    arena.tick = 1
    (delivery,) = encoder.patch([1, 2, 3])
    assert delivery.viewers == (1, 2, 3)
    arena.players["a"].secret = "mine"
    arena.tick = 2
    deliveries = encoder.patch([1, 2, 3])
    by_viewer = {v: d.messages for d in deliveries for v in d.viewers}
    assert by_viewer[2] == by_viewer[3] != by_viewer[1]
    assert b"mine" in by_viewer[1][0] and b"mine" not in by_viewer[2][0]
    assert by_viewer[2][0][2:] in by_viewer[1][0]  # the shared ops, encoded once


def test_a_patch_nobody_may_see_reaches_nobody() -> None:
    arena = Arena(players={"a": Player(uid=1)})
    encoder: StateEncoder[int] = StateEncoder(arena)
    arena.players["a"].secret = "x"
    assert encoder.patch([2, 3]) == []
    assert encoder.patch([1]) == []  # consumed: the change went out (to nobody)


def test_full_refuses_pending_changes() -> None:
    arena = Arena()
    encoder: StateEncoder[int] = StateEncoder(arena)
    arena.tick = 3
    with pytest.raises(LocalProtocolError, match="patch"):
        encoder.full(1)
    encoder.patch([])
    decoder = joined(encoder, 1)
    assert to_plain(decoder.state)["tick"] == 3 and decoder.seq == 1


def test_full_state_flags_and_a_late_joiner_matches_early_ones() -> None:
    arena = Arena(players={"a": Player("ann", uid=1)})
    encoder: StateEncoder[int] = StateEncoder(arena)
    early = {1: joined(encoder, 1)}
    for tick in range(5):
        arena.tick = tick + 1
        arena.players["a"].x = float(tick)
        arena.items.append(Pos(float(tick)))
        sync(encoder, early)
    (message,) = encoder.full(1)
    assert message[0] == FLAG_RESET | FLAG_END
    late = joined(encoder, 1)
    assert to_plain(late.state) == to_plain(early[1].state) == expected_view(arena, 1)


def test_state_rules_checked_at_construction() -> None:
    with pytest.raises(TypeError, match="Schema dataclass"):
        StateEncoder({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_message"):
        StateEncoder(Arena(), max_message=MIN_MAX_MESSAGE - 1)
    arena = Arena()
    StateEncoder(arena)
    with pytest.raises(ValueError, match="already belongs"):
        StateEncoder(arena)
    with pytest.raises(ValueError, match="already belongs"):
        StateEncoder(arena.players["x"] if False else Arena(winner=Player()).winner)  # type: ignore[arg-type]


@dataclass
class Big(Schema):
    names: list[str] = field(default_factory=list)
    table: dict[str, str] = field(default_factory=dict)
    n: int = 0


def test_large_states_are_cut_between_sections() -> None:
    state = Big(names=[f"{i:04}" + "x" * 1000 for i in range(100)])
    encoder: StateEncoder[int] = StateEncoder(state, max_message=MIN_MAX_MESSAGE)
    messages = encoder.full(0)
    assert len(messages) > 5
    assert all(len(m) <= MIN_MAX_MESSAGE for m in messages)
    assert [m[0] for m in messages] == [FLAG_RESET] + [0] * (len(messages) - 2) + [FLAG_END]
    decoder = StateDecoder()
    resets: list[Any] = []
    decoder.on_reset(resets.append)
    for message in messages[:-1]:
        decoder.apply(message)
        assert not decoder.complete and not resets
    decoder.apply(messages[-1])
    assert decoder.complete and len(resets) == 1
    assert to_plain(decoder.state) == expected_view(state, 0)
    # A patch as big: every key of a dict with long keys and values.
    state.table.update({f"{i:03}" + "k" * 4000: "v" * 4096 for i in range(20)})
    (delivery,) = encoder.patch([0])
    assert len(delivery.messages) > 5
    for message in delivery.messages:
        assert len(message) <= MIN_MAX_MESSAGE
        decoder.apply(message)
    assert to_plain(decoder.state) == expected_view(state, 0)


def test_a_runaway_state_is_refused() -> None:
    state = Big(names=["x" * 4000] * 10)
    encoder: StateEncoder[int] = StateEncoder(state, max_total=30_000)
    with pytest.raises(StateTooLarge, match="max_total"):
        encoder.full(0)


def _everyone(viewer: Any, obj: Any) -> bool:
    return True


def _team(viewer: Any, obj: Any) -> bool:
    return bool(viewer % 2 == obj.team)


@dataclass
class Unit(Schema):
    team: int = 0
    hp: int = 100
    plan: Annotated[str, Visible(_team)] = ""
    orders: Annotated[list[Pos], Visible(_team)] = field(default_factory=list)


@dataclass
class Field(Schema):
    units: list[Unit] = field(default_factory=list)
    note: Annotated[str, Visible(_everyone)] = ""


def test_nested_views_hide_whole_subtrees() -> None:
    battle = Field(units=[Unit(0, orders=[Pos(1.0)]), Unit(1, plan="flank")])
    encoder: StateEncoder[int] = StateEncoder(battle)
    decoders = {v: joined(encoder, v) for v in range(4)}
    battle.units[0].orders[0].x = 7.0
    battle.units[0].orders.append(Pos(2.0))
    battle.units[1].plan = "retreat"
    battle.units[1].hp = 50
    battle.note = "hi"
    battle.units.append(Unit(1, plan="new", orders=[Pos(9.0)]))
    deliveries = sync(encoder, decoders)
    assert len(deliveries) == 2  # even viewers see team 0's orders, odd ones team 1's
    for viewer, decoder in decoders.items():
        assert to_plain(decoder.state) == expected_view(battle, viewer)
        assert decoder.state is not None
        assert decoder.state.units[0].orders is None or viewer % 2 == 0
        assert decoder.state.units[1].plan in ("", "retreat")


def test_resending_a_list_resends_its_items_whole() -> None:
    box = Box(items=[Item(1, tags=["a"]), Item(2)])
    encoder: StateEncoder[int] = StateEncoder(box)
    decoders = {0: joined(encoder, 0)}
    box.items[0].tags.append("b")  # a change inside an item ...
    box.items.sort(key=lambda item: -item.n)  # ... then the whole list is resent
    box.items[1].n = 7
    sync(encoder, decoders)
    assert to_plain(decoders[0].state) == expected_view(box, 0)


def test_items_removed_in_the_same_patch_they_were_added() -> None:
    box = Box()
    encoder: StateEncoder[int] = StateEncoder(box)
    decoders = {0: joined(encoder, 0)}
    item = Item(5)
    box.items.append(item)
    box.items.pop()
    box.by_name["k"] = item
    del box.by_name["k"]
    box.items.insert(0, item)
    sync(encoder, decoders)
    assert to_plain(decoders[0].state) == expected_view(box, 0)
    assert decoders[0].state is not None and decoders[0].state.items[0].n == 5


def test_without_views_full_states_are_encoded_once_per_seq() -> None:
    box_state = Arena(players={"a": Player()})  # Player has a Visible field: per viewer
    assert StateEncoder(box_state).has_views
    big = Big(names=["a"])
    encoder: StateEncoder[int] = StateEncoder(big)
    assert not encoder.has_views
    first = encoder.full(1)
    assert encoder.full(2) == first and encoder.full(2)[0] is first[0]
    big.n = 1
    encoder.patch([1, 2])
    assert encoder.full(1) != first


def test_a_message_cut_before_a_next_step_starts_with_an_absolute_select() -> None:
    arena = Arena(items=[Pos(float(i), 1.0) for i in range(3000)])
    encoder: StateEncoder[int] = StateEncoder(arena, max_message=MIN_MAX_MESSAGE)
    messages = encoder.full(0)
    assert len(messages) >= 3
    for message in messages[1:]:
        assert message[2] == 0x80  # flags, seq 0, then SELECT (never a one-byte NEXT)
    decoder = StateDecoder()
    for message in messages:
        decoder.apply(message)
    assert to_plain(decoder.state) == expected_view(arena, 0)
    for pos in arena.items:
        pos.y = 2.0
    (delivery,) = encoder.patch([0])
    assert len(delivery.messages) >= 2
    for message in delivery.messages:
        decoder.apply(message)
    assert to_plain(decoder.state) == expected_view(arena, 0)
