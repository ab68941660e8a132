"""Hypothesis: random mutations stay in sync for every viewer; corrupt bytes fail cleanly."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import ProtocolError
from netbus.rooms import StateDecoder, StateEncoder, to_plain
from netbus.rooms.wire import MAX_SAFE_INT

from .states import SETTINGS, Box, Item, expected_view, joined, sync

VIEWERS = (0, 1, 2)
TEXT = st.text(max_size=6)
INTS = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
F32 = st.floats(width=32, allow_nan=False)
F64 = st.floats(allow_nan=False)


def new_item(data: st.DataObject) -> Item:
    return Item(
        n=data.draw(INTS),
        tag=data.draw(TEXT),
        owner=data.draw(st.sampled_from(VIEWERS)),  # fixed for the item's life (view rule)
        secret=data.draw(st.integers(-5, 5)),
        tags=data.draw(st.lists(TEXT, max_size=3)),
    )


def all_items(box: Box) -> list[Item]:
    found = [box.child] if box.child is not None else []
    found += list(box.items) + list(box.by_name.values()) + list(box.hidden)
    return found


def op_scalar(box: Box, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["f", "d", "b", "s", "maybe"]))
    value = {
        "f": F32,
        "d": F64,
        "b": st.booleans(),
        "s": TEXT,
        "maybe": st.none() | INTS,
    }[name]
    setattr(box, name, data.draw(value))


def op_child(box: Box, data: st.DataObject) -> None:
    box.child = data.draw(st.sampled_from([None, "new"])) and new_item(data)


def op_list(box: Box, data: st.DataObject) -> None:
    target = data.draw(st.sampled_from([box.items, box.hidden]))
    kind = data.draw(st.sampled_from(["append", "insert", "pop", "set", "clear", "sort", "slice"]))
    if kind == "append" or (not target and kind != "clear"):
        target.append(new_item(data))
    elif kind == "insert":
        target.insert(data.draw(st.integers(-3, 5)), new_item(data))
    elif kind == "pop":
        target.pop(data.draw(st.integers(0, len(target) - 1)))
    elif kind == "set":
        target[data.draw(st.integers(0, len(target) - 1))] = new_item(data)
    elif kind == "clear":
        target.clear()
    elif kind == "sort":
        target.sort(key=lambda item: item.n)
    else:
        target[0:1] = [new_item(data), new_item(data)]


def op_dict(box: Box, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["set", "del", "clear", "update"]))
    key = data.draw(st.sampled_from(["a", "b", "c", "é"]))
    if kind == "set":
        box.by_name[key] = new_item(data)
    elif kind == "del":
        box.by_name.pop(key, None)
    elif kind == "clear":
        box.by_name.clear()
    else:
        box.by_name.update({key: new_item(data)})


def op_primitive_collections(box: Box, data: st.DataObject) -> None:
    key = data.draw(st.integers(-3, 3))
    if data.draw(st.booleans()):
        if data.draw(st.booleans()):
            box.nums[key] = data.draw(F64)
        else:
            box.nums.pop(key, None)
    elif data.draw(st.booleans()) or not box.flags:
        box.flags.insert(key, data.draw(st.booleans()))
    else:
        box.flags[key % len(box.flags)] = data.draw(st.booleans())


def op_item(box: Box, data: st.DataObject) -> None:
    items = all_items(box)
    if not items:
        return
    item = data.draw(st.sampled_from(items))
    kind = data.draw(st.sampled_from(["n", "tag", "secret", "tags", "tags_clear"]))
    if kind == "n":
        item.n = data.draw(INTS)
    elif kind == "tag":
        item.tag = data.draw(TEXT)
    elif kind == "secret":
        item.secret = data.draw(st.integers(-5, 5))
    elif kind == "tags":
        item.tags.append(data.draw(TEXT))
    else:
        item.tags.clear()


def op_move(box: Box, data: st.DataObject) -> None:
    """Take an item out of one place and put it in another (it gets a new wire id)."""
    if not box.items:
        return
    item = box.items.pop(0)
    if data.draw(st.booleans()):
        box.by_name["moved"] = item
    else:
        box.child = item


OPS: list[Callable[[Box, st.DataObject], None]] = [
    op_scalar,
    op_child,
    op_list,
    op_dict,
    op_primitive_collections,
    op_item,
    op_move,
]


def check(box: Box, decoders: dict[int, StateDecoder]) -> None:
    for viewer, decoder in decoders.items():
        assert to_plain(decoder.state) == expected_view(box, viewer)


@SETTINGS
@given(st.data())
def test_random_mutations_stay_in_sync(data: st.DataObject) -> None:
    box = Box(owner=data.draw(st.sampled_from(VIEWERS)))
    encoder: StateEncoder[int] = StateEncoder(box)
    decoders = {viewer: joined(encoder, viewer) for viewer in VIEWERS}
    for _ in range(data.draw(st.integers(1, 25))):
        data.draw(st.sampled_from(OPS))(box, data)
        if data.draw(st.integers(0, 3)) == 0:
            sync(encoder, decoders)
            check(box, decoders)
    sync(encoder, decoders)
    check(box, decoders)
    late = {viewer: joined(encoder, viewer) for viewer in VIEWERS}
    check(box, late)


def _messages() -> list[bytes]:
    box = Box(
        f=1.5,
        s="s",
        maybe=3,
        child=Item(1, "t", 1, 2, ["x"]),
        items=[Item(2)],
        by_name={"k": Item(3)},
        nums={1: 2.0},
        flags=[True],
        hidden=[Item(4)],
    )
    encoder: StateEncoder[int] = StateEncoder(box)
    out = encoder.full(0)
    box.items.append(Item(5))
    box.by_name.clear()
    box.child = None
    for delivery in encoder.patch([0]):
        out.extend(delivery.messages)
    return out


MESSAGES = _messages()


@SETTINGS
@given(st.data())
def test_corrupt_messages_raise_only_protocol_error(data: st.DataObject) -> None:
    decoder = StateDecoder()
    for message in MESSAGES:
        blob = bytearray(message)
        mode = data.draw(st.sampled_from(["keep", "cut", "flip", "garbage"]))
        if mode == "cut":
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        elif mode == "flip" and blob:
            at = data.draw(st.integers(0, len(blob) - 1))
            blob[at] ^= 1 << data.draw(st.integers(0, 7))
        elif mode == "garbage":
            blob = bytearray(data.draw(st.binary(max_size=40)))
        try:
            decoder.apply(bytes(blob))
        except ProtocolError as exc:
            assert exc.kind == "bad_state"


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_after_a_full_state(blob: bytes) -> None:
    decoder = StateDecoder()
    decoder.apply(MESSAGES[0])
    try:
        decoder.apply(blob)
    except ProtocolError as exc:
        assert exc.kind == "bad_state"

