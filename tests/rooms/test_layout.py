"""netbus.rooms.layout: which declarations are states, and the schema table."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Optional

import pytest

from netbus.rooms import Schema, Visible, f32, owner_only
from netbus.rooms.layout import layout_of, schema_table
from netbus.rooms.wire import TypeCode

from .states import Arena, Player


@dataclass
class Node(Schema):
    """A self-referencing type: the schema table lists it once."""

    children: list[Node] = field(default_factory=list)
    parent_id: Optional[int] = None  # noqa: UP045 - the typing spelling works too
    weight: Annotated[f32 | None, Visible(operator.eq)] = None
    KIND: ClassVar[str] = "node"


@dataclass
class NotState:
    x: int = 0


@dataclass
class BadUnion(Schema):
    x: int | str = 0


@dataclass
class BadNested(Schema):
    x: list[list[int]] = field(default_factory=list)


@dataclass
class BadKey(Schema):
    x: dict[float, int] = field(default_factory=dict)


@dataclass
class BadNullableList(Schema):
    x: list[int] | None = None


@dataclass
class BadElement(Schema):
    x: list[int | None] = field(default_factory=list)


@dataclass
class BadType(Schema):
    x: bytes = b""


@dataclass
class Bad_Name_Ok(Schema):
    ok_field: int = 0


@dataclass(slots=True)
class Slotted(Schema):
    x: int = 0


class Plain(Schema):
    pass


def test_layout_of_a_state() -> None:
    layout = layout_of(Player)
    assert [s.name for s in layout.fields] == ["name", "x", "y", "uid", "score", "secret"]
    assert layout.fields[1].desc.code is TypeCode.F32
    assert layout.filtered and layout.fields[5].visible is not None
    assert repr(layout.fields[5].visible) == "owner_only('uid')"
    assert layout.public_mask == 0b011111


def test_self_reference_and_optional_and_classvar() -> None:
    layout = layout_of(Node)
    assert [s.name for s in layout.fields] == ["children", "parent_id", "weight"]
    assert layout.fields[1].desc.nullable and layout.fields[2].desc.code is TypeCode.F32
    table, index = schema_table(Node)
    assert index == {Node: 0}
    assert table.startswith(bytes.fromhex("01 04") + b"Node" + bytes.fromhex("03"))


def test_schema_table_breadth_first() -> None:
    _, index = schema_table(Arena)
    assert list(index.values()) == [0, 1, 2]
    assert [cls.__name__ for cls in index] == ["Arena", "Player", "Pos"]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (BadUnion, "only 'X | None'"),
        (BadNested, "cannot be an element"),
        (BadKey, "dict keys must be str or int"),
        (BadNullableList, "cannot be None"),
        (BadElement, "elements cannot be None"),
        (BadType, "unsupported state type"),
        (Slotted, "slots=True"),
        (Plain, "must be a @dataclass"),
    ],
)
def test_refused_declarations(cls: type, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        layout_of(cls)


def test_names_with_underscores_inside_are_fine() -> None:
    assert layout_of(Bad_Name_Ok).name == "Bad_Name_Ok"


@dataclass
class Holder(Schema):
    x: NotState | None = None


def test_a_dataclass_that_is_not_a_schema_is_refused_in_a_field() -> None:
    with pytest.raises(TypeError, match="unsupported state type"):
        layout_of(Holder)


def test_local_names_do_not_resolve() -> None:
    @dataclass
    class Local(Schema):
        n: int = 0

    @dataclass
    class Outer(Schema):
        inner: Local | None = None

    with pytest.raises(TypeError, match="cannot resolve"):
        layout_of(Outer)  # state classes belong at module level


def test_too_many_fields() -> None:
    namespace: dict[str, object] = {"__annotations__": {f"f{i}": int for i in range(129)}}
    namespace.update({f"f{i}": 0 for i in range(129)})
    wide = dataclass(type("Wide", (Schema,), namespace))
    with pytest.raises(TypeError, match="exceed 128"):
        layout_of(wide)


def test_owner_only_rule() -> None:
    rule = owner_only("uid").rule
    assert rule(3, Player(uid=3)) and not rule(4, Player(uid=3))
