"""What a decoded room state is made of, and the schema table that describes it.

`RemoteStruct` (attribute access), `RemoteList` and `RemoteDict` hold the state a client
rebuilt; each carries its `Node` (wire id, type, listeners). `read_schema` parses and checks
the schema table that starts every full state (docs/state-sync.md §2.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netbus.rooms.wire import MAX_FIELDS, MAX_NAME_BYTES, MAX_TYPES, NULLABLE, StateReader, TypeCode

__all__ = [
    "REMOTE",
    "Callback",
    "DecodedType",
    "Desc",
    "Node",
    "RemoteDict",
    "RemoteList",
    "RemoteStruct",
    "read_schema",
    "to_plain",
]

Callback = Callable[..., Any]  #: a state-change listener (see StateDecoder)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ZERO: dict[int, Any] = {
    TypeCode.BOOL: False,
    TypeCode.INT: 0,
    TypeCode.F64: 0.0,
    TypeCode.F32: 0.0,
    TypeCode.STR: "",
}
_PRIMS = frozenset(_ZERO)


class Desc:
    """A decoded type: code, nullable, struct index, element and key type."""

    __slots__ = ("code", "elem", "key", "nullable", "struct")

    def __init__(self, code: int, nullable: bool, struct: int, elem: Desc | None, key: int):
        self.code = code
        self.nullable = nullable
        self.struct = struct
        self.elem = elem
        self.key = key


class DecodedType:
    __slots__ = ("defaults", "descs", "name", "names")

    def __init__(self, name: str, names: list[str], descs: list[Desc]) -> None:
        self.name = name
        self.names = names
        self.descs = descs
        self.defaults = {
            n: (None if d.nullable or d.code not in _PRIMS else _ZERO[d.code])
            for n, d in zip(names, descs, strict=True)
        }


class Node:
    """One decoded struct, list or dict: its wire id, type and listeners."""

    __slots__ = ("desc", "listeners", "ref", "type", "value")

    def __init__(self, ref: int, desc: Desc, type_: DecodedType | None, value: Any) -> None:
        self.ref = ref
        self.desc = desc
        self.type = type_
        self.value = value
        self.listeners: dict[str, list[Callback]] | None = None


class RemoteStruct:
    """A decoded struct: its fields are attributes (``player.x``)."""

    __slots__ = ("__dict__", "_nb_node")
    _nb_node: Node

    def __repr__(self) -> str:
        name = self._nb_node.type.name if self._nb_node.type else "?"
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{name}({fields})"


class RemoteList(list[Any]):
    """A decoded list (read-only by convention)."""

    __slots__ = ("_nb_node",)
    _nb_node: Node


class RemoteDict(dict[Any, Any]):
    """A decoded dict (read-only by convention)."""

    __slots__ = ("_nb_node",)
    _nb_node: Node


REMOTE = (RemoteStruct, RemoteList, RemoteDict)


def to_plain(value: Any) -> Any:
    """Decoded state -> plain dicts and lists (struct fields become dict keys)."""
    if isinstance(value, RemoteStruct):
        return {k: to_plain(v) for k, v in value.__dict__.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def read_schema(reader: StateReader) -> list[DecodedType]:
    """The schema table of a RESET message (docs/state-sync.md §2.1), validated."""
    count = reader.uvarint()
    if not 1 <= count <= MAX_TYPES:
        raise reader.fail(f"{count} types in the schema table")
    types = []
    for _ in range(count):
        name = _name(reader)
        nfields = reader.uvarint()
        if nfields > MAX_FIELDS:
            raise reader.fail(f"{nfields} fields in type {name}")
        names: list[str] = []
        descs = []
        for _ in range(nfields):
            field = _name(reader)
            if field in names:
                raise reader.fail(f"duplicate field {field} in type {name}")
            names.append(field)
            descs.append(_type(reader, count, top=True))
        types.append(DecodedType(name, names, descs))
    return types

def _name(reader: StateReader) -> str:
    name = reader.string(MAX_NAME_BYTES)
    if not name or not name[0].isascii() or not name[0].isalpha() or set(name) - _NAME_CHARS:
        raise reader.fail(f"bad name {name!r}")
    return name

def _type(reader: StateReader, ntypes: int, *, top: bool) -> Desc:
    head = reader.u8()
    code, nullable = head & 0x3F, bool(head & NULLABLE)
    if head & 0x80 or not TypeCode.BOOL <= code <= TypeCode.DICT:
        raise reader.fail(f"bad type byte {head:#04x}")
    if code == TypeCode.STRUCT:
        index = reader.uvarint()
        if index >= ntypes:
            raise reader.fail(f"struct type {index} out of range")
        return _checked(reader, Desc(code, nullable, index, None, 0), top)
    if code in (TypeCode.LIST, TypeCode.DICT):
        if nullable or not top:
            raise reader.fail("a list or dict cannot be nullable or an element")
        key = 0
        if code == TypeCode.DICT:
            key = reader.u8()
            if key not in (TypeCode.INT, TypeCode.STR):
                raise reader.fail(f"bad dict key type {key}")
        elem = _type(reader, ntypes, top=False)
        return Desc(code, False, 0, elem, key)
    return _checked(reader, Desc(code, nullable, 0, None, 0), top)

def _checked(reader: StateReader, desc: Desc, top: bool) -> Desc:
    if desc.nullable and not top:
        raise reader.fail("list and dict elements cannot be nullable")
    return desc
