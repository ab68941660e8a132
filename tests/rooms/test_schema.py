"""netbus.rooms.schema: change tracking, containers, ownership, copies."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field

import pytest

from netbus.rooms import StateEncoder
from netbus.rooms.containers import SyncDict, SyncList
from netbus.rooms.schema import Schema

from .states import Arena, Box, Item, Player, Pos


def tracked_arena() -> tuple[Arena, StateEncoder[int]]:
    arena = Arena(players={"a": Player("ann", uid=1)}, items=[Pos(1.0, 2.0)])
    return arena, StateEncoder(arena)


def test_fields_are_plain_attributes_and_containers_become_sync_types() -> None:
    arena = Arena(players={"a": Player("ann")}, items=[Pos()])
    assert type(arena.players) is SyncDict
    assert type(arena.items) is SyncList
    assert arena.players["a"].name == "ann"
    assert isinstance(arena.players, dict)
    assert isinstance(arena.items, list)
    assert arena == Arena(players={"a": Player("ann")}, items=[Pos()])


def test_a_set_marks_the_field_and_queues_the_object_once() -> None:
    arena, encoder = tracked_arena()
    player = arena.players["a"]
    tracker = encoder._tracker
    assert tracker.dirty == []
    player.x = 3.0
    player.y = 4.0
    assert tracker.dirty == [player]
    assert player._nb_dirty == (1 << 1) | (1 << 2)


def test_setting_an_equal_value_is_not_a_change() -> None:
    arena, encoder = tracked_arena()
    arena.players["a"].name = "ann"
    arena.tick = 0
    assert not encoder.pending
    arena.tick = 1
    assert encoder.pending


def test_untracked_objects_cost_no_queue() -> None:
    p = Player()
    p.x = 1.0
    assert p._nb_dirty == 0 and p._nb_tracker is None


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("x", "1", TypeError),
        ("x", True, TypeError),
        ("x", 1e39, ValueError),
        ("score", 1.5, TypeError),
        ("score", True, TypeError),
        ("score", 2**53, ValueError),
        ("name", 3, TypeError),
        ("name", "\ud800", ValueError),
        ("name", "x" * 4097, ValueError),
    ],
)
def test_values_are_checked_at_the_mutation(name: str, value: object, error: type) -> None:
    p = Player()
    with pytest.raises(error, match=rf"Player\.{name}"):
        setattr(p, name, value)


def test_accepted_conversions() -> None:
    p = Player()
    p.x = 3  # an int in a float field becomes a float
    assert p.x == 3.0 and type(p.x) is float
    p.x = float("nan")
    p.x = float("inf")
    p.score = -(2**53 - 1)
    p.name = "é" * 2048  # 4096 UTF-8 bytes: the limit


def test_struct_fields_check_types_and_nullability() -> None:
    arena = Arena()
    with pytest.raises(TypeError, match="expected Player"):
        arena.winner = Pos()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="cannot be None"):
        arena.players = None  # type: ignore[assignment]
    with pytest.raises(TypeError, match="expected a dict"):
        arena.players = []  # type: ignore[assignment]
    with pytest.raises(TypeError, match="expected a list"):
        arena.items = {}  # type: ignore[assignment]


def test_an_object_lives_in_one_place() -> None:
    arena, _ = tracked_arena()
    player = arena.players["a"]
    with pytest.raises(ValueError, match="already in a state"):
        arena.players["b"] = player
    with pytest.raises(ValueError, match="already in a state"):
        arena.winner = player
    pos = arena.items[0]
    with pytest.raises(ValueError, match="already in a state"):
        arena.items.append(pos)
    moved = arena.players.pop("a")
    arena.winner = moved  # once removed, it can go elsewhere
    assert moved._nb_parent is arena
    root = Player()
    StateEncoder(root)
    with pytest.raises(ValueError, match="root of a state"):
        Arena(winner=root)


def test_removed_objects_are_detached_and_readded_objects_get_new_ids() -> None:
    arena, encoder = tracked_arena()
    player = arena.players["a"]
    old_ref = player._nb_ref
    del arena.players["a"]
    assert player._nb_tracker is None and player._nb_ref == -1
    player.x = 9.0  # no longer tracked: no queue entry for it
    assert all(node is not player for node in encoder._tracker.dirty)
    arena.players["a"] = player
    assert player._nb_ref not in (-1, old_ref) and player._nb_new


def test_a_container_assigned_twice_is_refused_and_its_items_checked() -> None:
    arena = Arena()
    items = arena.items
    with pytest.raises(ValueError, match="already in a state"):
        Arena(items=items)
    with pytest.raises(TypeError, match="expected Pos"):
        arena.items.append(Player())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Box\.flags"):
        Box(flags=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"Box\.nums key"):
        Box(nums={"a": 1.0})  # type: ignore[dict-item]


def test_an_unowned_sync_list_is_adopted_without_a_copy() -> None:
    items: SyncList[Pos] = SyncList([Pos()])
    arena = Arena(items=items)
    assert arena.items is items
    arena.items = [Pos(), Pos()]  # the old list is released
    assert items._nb_parent is None
    Arena(items=items)  # and can be adopted again


def test_list_mutators_behave_like_list() -> None:
    box = Box(flags=[True])
    encoder = StateEncoder(box)
    flags = box.flags
    mirror = [True]
    for target in (flags, mirror):
        target.append(False)
        target.extend([True, True])
        target.insert(-1, False)
        target.insert(100, True)
        target += [False]
        assert target.pop() is False
        target.remove(False)
        target[0] = False
        del target[0]
        target *= 2
        target.sort()
        target.reverse()
        target[1:3] = [False]
        del target[:1]
    assert flags == mirror and len(flags) > 3
    with pytest.raises(IndexError):
        flags[99] = True
    with pytest.raises(IndexError):
        flags.pop(99)
    flags *= 0
    assert flags == [] and encoder.pending


def test_dict_mutators() -> None:
    box = Box()
    StateEncoder(box)
    nums = box.nums
    nums[1] = 1.0
    nums.update({2: 2.0}, **{})
    nums |= {3: 3}
    assert nums.setdefault(4, 4.0) == 4.0
    assert nums.setdefault(4, 9.0) == 4.0
    assert nums.pop(3) == 3.0
    assert nums.pop(3, None) is None
    with pytest.raises(KeyError):
        nums.pop(3)
    assert nums.popitem() == (4, 4.0)
    del nums[2]
    assert nums == {1: 1.0}
    nums.clear()
    with pytest.raises(KeyError):
        nums.popitem()
    assert type(nums.copy()) is dict


def test_list_log_too_long_becomes_a_resend() -> None:
    box = Box(flags=[True])
    encoder = StateEncoder(box)
    for _ in range(40):
        box.flags[0] = not box.flags[0]
    assert box.flags._nb_reset and box.flags._nb_log == []
    encoder.patch([0])
    assert not box.flags._nb_reset


def test_copies_and_pickles_carry_data_not_tracking() -> None:
    arena, _ = tracked_arena()
    clone = copy.deepcopy(arena)
    assert clone == arena
    assert clone._nb_tracker is None and clone.players["a"]._nb_parent is clone.players
    assert type(clone.players) is SyncDict
    again = pickle.loads(pickle.dumps(arena))
    assert again == arena and again._nb_tracker is None
    with pytest.raises(ValueError, match="already in a state"):
        copy.copy(arena)  # a shallow copy would share children


def test_synced_fields_cannot_be_deleted() -> None:
    p = Player()
    with pytest.raises(AttributeError, match="cannot delete"):
        del p.x
    p._local = 1  # type: ignore[attr-defined]
    del p._local  # type: ignore[attr-defined]


@dataclass
class WithLocal(Schema):
    n: int = 0
    _cooldown: float = 0.0  # not synced: underscore
    extra: list[int] = field(default_factory=list)


def test_underscore_fields_are_local() -> None:
    obj = WithLocal()
    encoder = StateEncoder(obj)
    obj._cooldown = 5.0
    assert not encoder.pending
    obj.n = 1
    assert encoder.pending


def test_item_fields_in_nested_containers_are_tracked() -> None:
    box = Box(items=[Item(1)], by_name={"k": Item(2, tags=["a"])})
    encoder = StateEncoder(box)
    box.by_name["k"].tags.append("b")
    box.items[0].n = 5
    dirty = encoder._tracker.dirty
    assert box.by_name["k"].tags in dirty and box.items[0] in dirty
