"""netbus.rooms.decoder: callbacks, read-only views of the state, limits."""

from __future__ import annotations

from typing import Any

import pytest

from netbus.errors import ProtocolError
from netbus.rooms import RemoteDict, RemoteList, RemoteStruct, StateDecoder, to_plain

from .test_golden_state import VECTORS, unhex

WORLD = [unhex(m) for m in VECTORS["world"]["viewers"]["0"]]


def test_callbacks_fire_after_each_message_in_op_order() -> None:
    decoder = StateDecoder()
    events: list[tuple[Any, ...]] = []

    def on_reset(state: Any) -> None:
        events.append(("reset", len(state.names)))

        def on_player(item: Any, key: Any) -> None:
            events.append(("add", key, item.x))
            decoder.listen(item, "x", lambda x, prev: events.append(("x", key, x, prev)))

        decoder.on_add(state.players, on_player)
        decoder.on_remove(state.players, lambda item, key: events.append(("remove", key)))
        decoder.on_add(
            state.names, lambda n, i: events.append(("name+", i, n)), immediate=False
        )
        decoder.on_remove(state.names, lambda n, i: events.append(("name-", i, n)))
        decoder.on_change(state.names, lambda n, i, p: events.append(("name=", i, n, p)))
        decoder.listen(
            state, "leader", lambda v, p: events.append(("leader", v is None, p is None))
        )

    decoder.on_reset(on_reset)
    decoder.on_patch(lambda seq: events.append(("patch", seq)))
    for message in WORLD:
        decoder.apply(message)
    assert events == [
        ("reset", 1), ("add", 7, 1.0), ("patch", 0),
        ("x", 7, 1.5, 1.0), ("patch", 1),
        ("add", 9, 0.0), ("remove", 7), ("name+", 1, "b"), ("name+", 0, "z"),
        ("name=", 1, "A", "a"), ("patch", 2),
        ("leader", False, True), ("name-", 0, "z"), ("patch", 3),
        ("leader", True, False), ("name-", 0, "A"), ("name-", 1, "b"), ("remove", 9),
        ("patch", 4),
    ]  # fmt: skip


def test_unsubscribe_and_callback_errors() -> None:
    decoder = StateDecoder()
    decoder.apply(WORLD[0])
    assert decoder.state is not None
    player = decoder.state.players[7]
    seen: list[float] = []
    stop = decoder.listen(player, "x", lambda x, prev: seen.append(x))
    decoder.listen(player, "y", lambda y, prev: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        decoder.apply(WORLD[1])
    assert player.y == -2.0 and seen == [1.5]  # applied before the callbacks ran
    stop()
    stop()  # twice is harmless
    with pytest.raises(AttributeError, match="no synced field"):
        decoder.listen(player, "z", print)
    with pytest.raises(TypeError, match="not a decoded"):
        decoder.on_add({}, print)
    stop_patch = decoder.on_patch(print)
    stop_patch()
    stop_reset = decoder.on_reset(print)
    stop_reset()


def test_decoded_types_and_repr() -> None:
    decoder = StateDecoder()
    decoder.apply(WORLD[0])
    state = decoder.state
    assert isinstance(state, RemoteStruct)
    assert isinstance(state.players, RemoteDict) and isinstance(state.names, RemoteList)
    assert repr(state).startswith("World(players={7: Pos(x=1.0, y=2.0)}")
    assert to_plain(state) == {"players": {7: {"x": 1.0, "y": 2.0}}, "names": ["a"], "leader": None}


def test_node_limit() -> None:
    decoder = StateDecoder(max_nodes=3)
    with pytest.raises(ProtocolError, match="more than 3 nodes"):
        decoder.apply(WORLD[0])


def test_deep_nesting_is_freed_without_recursion() -> None:
    # A list of lists is not a legal type, but structs can nest to any depth.
    from netbus.rooms import StateEncoder

    from .states import Box, Item, joined

    box = Box(child=Item(tags=["a"]))
    encoder: StateEncoder[int] = StateEncoder(box)
    decoder = joined(encoder, 0)
    box.child = None
    (delivery,) = encoder.patch([0])
    decoder.apply(delivery.messages[0])
    assert decoder.state is not None and decoder.state.child is None
    assert len(decoder._refs) == 6  # root + its 5 containers
