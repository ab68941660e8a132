"""How a room state is declared: dataclass annotations -> field layouts and the schema table.

A state class is a dataclass deriving from `netbus.rooms.Schema`. Its public fields (names not
starting with ``_``) are synced, in declaration order; each one's annotation picks its wire
type::

    bool, int, float, str          bool, zigzag varint, f64, UTF-8
    f32                            Annotated[float, ...]: 4 bytes instead of 8
    X | None                       nullable (primitives and Schema classes)
    SomeSchema                     a nested struct
    list[T], dict[str|int, T]      T: a primitive, f32 or a Schema class (no None, no nesting)
    Annotated[T, Visible(rule)]    the field reaches only viewers where rule(viewer, obj)

Anything else is refused with `TypeError` when the class is first used, naming the field:
the layout must be knowable up front because the client rebuilds it from the schema table
sent with every full state (docs/state-sync.md §2).
"""

from __future__ import annotations

import dataclasses
import operator
import re
import struct
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, Union

from netbus.rooms.primitives import (
    CHECKS,
    FAST,
    ZEROS,
    encode_str,
    nullable,
    set_op_for,
    value_encoder,
)
from netbus.rooms.wire import (
    MAX_FIELDS,
    MAX_NAME_BYTES,
    MAX_TYPES,
    NULLABLE,
    OP_FIELDS,
    OP_FIELDS_INLINE,
    TypeCode,
    uvarint,
)

__all__ = [
    "DICT",
    "LIST",
    "PRIM",
    "STRUCT",
    "Batch",
    "FieldSpec",
    "StructBase",
    "StructLayout",
    "TypeDesc",
    "ViewRule",
    "Visible",
    "f32",
    "fields_head",
    "layout_of",
    "owner_only",
    "primitive_check",
    "schema_table",
]

ViewRule = Callable[[Any, Any], bool]
"""``rule(viewer, obj) -> bool``: may ``viewer`` see this field of ``obj``? It must give the
same answer for a (viewer, obj) pair for as long as ``obj`` is in the state (the encoder keeps
no per-viewer memory); send the viewer a new full state when the answer changes."""


class _Float32:
    """Annotated marker: encode this float in 4 bytes (IEEE single)."""

    def __repr__(self) -> str:
        return "F32"


f32 = Annotated[float, _Float32()]
"""A float sent as IEEE single precision: half the bytes of ``float`` for positions."""


@dataclass(frozen=True, slots=True)
class Visible:
    """Annotated marker: the field reaches only the viewers ``rule`` admits (see `ViewRule`)."""

    rule: ViewRule


class _OwnerRule:
    __slots__ = ("attr",)

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __call__(self, viewer: Any, obj: Any) -> bool:
        return bool(viewer == getattr(obj, self.attr))

    def __repr__(self) -> str:
        return f"owner_only({self.attr!r})"


def owner_only(attr: str) -> Visible:
    """``Visible`` for a per-player private field: only the viewer equal to ``obj.<attr>``."""
    return Visible(_OwnerRule(attr))


class StructBase:
    """Marker base of `Schema` (layouts must recognise nested structs without importing it)."""

    __slots__ = ()
    _nb_parent: Any  #: the node holding this struct (tracking bookkeeping, see Schema)
    _nb_ref: int  #: its wire id while attached, else -1


PRIM, STRUCT, LIST, DICT = 0, 1, 2, 3
_KIND = {TypeCode.STRUCT: STRUCT, TypeCode.LIST: LIST, TypeCode.DICT: DICT}


@dataclass(frozen=True, slots=True)
class TypeDesc:
    """One wire type: a primitive, a struct class, or a list/dict of an element type."""

    code: TypeCode
    nullable: bool = False
    struct: type | None = None  #: the Schema class of a STRUCT
    elem: TypeDesc | None = None  #: element type of a LIST or DICT
    key: TypeCode | None = None  #: key type of a DICT (INT or STR)

    @property
    def kind(self) -> int:
        return _KIND.get(self.code, PRIM)


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One synced field: its index (= SET opcode), type and the helpers hot paths call."""

    index: int
    name: str
    desc: TypeDesc
    kind: int  #: PRIM, STRUCT, LIST or DICT
    bit: int  #: 1 << index, the field's bit in a struct's dirty mask
    check: Callable[[Any], Any]  #: validates (and normalises) a primitive value
    encode: Callable[[Any], bytes] | None  #: a primitive value's bytes
    zero: Any  #: a full state omits a field equal to this (the decoder's default)
    visible: ViewRule | None
    # Hot-path shortcuts: a value of type ``fast`` within [lo, hi] needs no ``check`` call,
    # and ``set_op`` is the whole SET op (opcode included) in one call.
    fast: type | None
    lo: float
    hi: float
    set_op: Callable[[Any], bytes] | None
    big: bool  #: ops may be long (strings): the encoder checks section size before each


_NO_ZERO = object()


def fields_head(mask: int) -> bytes:
    """The opcode (and mask) of a FIELDS op: one byte when only fields 0-5 are in it."""
    if mask < 0x40:
        return bytes((OP_FIELDS_INLINE | mask,))
    return bytes((OP_FIELDS,)) + uvarint(mask)


class Batch(NamedTuple):
    """How to write a FIELDS op for one dirty mask: cached per mask, since a moving entity
    changes the same fields every tick."""

    head: bytes  #: OP_FIELDS and the mask
    values: Callable[[dict[str, Any]], Any]  #: instance dict -> the fields' values, in order
    pack: Callable[..., bytes] | None  #: all values at once, when every field is fixed-size
    encode: Callable[[tuple[Any, ...]], bytes] | None  #: the values (no None), when no str
    specs: tuple[FieldSpec, ...]


_FIXED = {TypeCode.F32: "f", TypeCode.F64: "d", TypeCode.BOOL: "?"}


class StructLayout:
    """The synced fields of one Schema class, in wire order."""

    __slots__ = ("batches", "by_name", "cls", "fields", "filtered", "name", "public_mask")

    def __init__(self, cls: type, fields: tuple[FieldSpec, ...]) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.fields = fields
        self.by_name = {spec.name: spec for spec in fields}
        self.filtered = any(spec.visible is not None for spec in fields)
        self.public_mask = sum(spec.bit for spec in fields if spec.visible is None)
        self.batches: dict[int, Batch] = {}

    def batch(self, mask: int) -> Batch:
        """The (cached) FIELDS writer for ``mask`` (two or more bits)."""
        batch = self.batches.get(mask)
        if batch is None:
            specs = tuple(spec for spec in self.fields if mask & spec.bit)
            codes = [_FIXED.get(spec.desc.code) for spec in specs]
            pack = None
            if all(codes):
                pack = struct.Struct("<" + "".join(c for c in codes if c)).pack
            names = [spec.name for spec in specs]
            head = fields_head(mask)
            encode = None
            if all(spec.encode is not None and not spec.big for spec in specs):
                encoders = [spec.encode for spec in specs]

                def encode(values: tuple[Any, ...], encoders: Any = encoders) -> bytes:
                    return b"".join([enc(v) for enc, v in zip(encoders, values, strict=True)])

            batch = Batch(head, operator.itemgetter(*names), pack, encode, specs)
            if len(self.batches) < 256:  # masks seen in practice are few; bound the cache
                self.batches[mask] = batch
        return batch


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StructBase)


def _prim_code(tp: Any, extras: tuple[Any, ...]) -> TypeCode | None:
    if tp is bool:
        return TypeCode.BOOL
    if tp is int:
        return TypeCode.INT
    if tp is float:
        return TypeCode.F32 if any(isinstance(x, _Float32) for x in extras) else TypeCode.F64
    if tp is str:
        return TypeCode.STR
    return None


def _split_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, tuple(tp.__metadata__)
    return tp, ()


def _desc(tp: Any, where: str, *, element: bool = False) -> TypeDesc:
    tp, extras = _split_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(tp)) != 2:
            raise TypeError(f"{where}: only 'X | None' unions are supported, got {tp!r}")
        if element:
            raise TypeError(f"{where}: list and dict elements cannot be None")
        inner = _desc(args[0], where)
        if inner.kind in (LIST, DICT):
            raise TypeError(f"{where}: a list or dict cannot be None (use an empty one)")
        return dataclasses.replace(inner, nullable=True)
    code = _prim_code(tp, extras)
    if code is not None:
        return TypeDesc(code)
    if _is_struct(tp):
        return TypeDesc(TypeCode.STRUCT, struct=tp)
    if element:
        raise TypeError(f"{where}: {tp!r} cannot be an element (primitives and Schema only)")
    if origin is list:
        (elem,) = typing.get_args(tp) or (None,)
        return TypeDesc(TypeCode.LIST, elem=_desc(elem, where, element=True))
    if origin is dict:
        key, elem = typing.get_args(tp) or (None, None)
        if key not in (str, int):
            raise TypeError(f"{where}: dict keys must be str or int, got {key!r}")
        key_code = TypeCode.STR if key is str else TypeCode.INT
        return TypeDesc(TypeCode.DICT, elem=_desc(elem, where, element=True), key=key_code)
    raise TypeError(f"{where}: unsupported state type {tp!r}")


def _spec(index: int, name: str, hint: Any, where: str) -> FieldSpec:
    visible = None
    for extra in _split_annotated(hint)[1]:
        if isinstance(extra, Visible):
            visible = extra.rule
    desc = _desc(hint, where)
    check: Callable[[Any], Any] = CHECKS.get(desc.code, _no_check)
    encode = value_encoder(desc.code) if desc.kind == PRIM else None
    zero = _NO_ZERO
    if desc.nullable:
        check, zero = nullable(check), None
    elif desc.kind == PRIM:
        zero = ZEROS[desc.code]
    fast, lo, hi = FAST.get(desc.code, (None, 0.0, 0.0))
    return FieldSpec(
        index,
        name,
        desc,
        desc.kind,
        1 << index,
        check,
        encode,
        zero,
        visible,
        fast,
        lo,
        hi,
        set_op_for(index, desc.code) if desc.kind == PRIM else None,
        desc.code is TypeCode.STR,
    )


def _no_check(value: Any) -> Any:
    return value


def primitive_check(desc: TypeDesc) -> Callable[[Any], Any]:
    """The value check of a primitive type (identity for struct, list and dict types)."""
    return CHECKS.get(desc.code, _no_check)


def layout_of(cls: type) -> StructLayout:
    """The (cached) layout of a Schema dataclass.

    Raises:
        TypeError: not a dataclass, declared with ``slots=True``, an unsupported annotation,
            a name the schema table cannot carry, or more than 128 synced fields.
    """
    cached = cls.__dict__.get("_nb_layout")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} must be a @dataclass to be a room state")
    if "__slots__" in cls.__dict__ or not hasattr(cls, "__dict__"):
        raise TypeError(f"{cls.__qualname__}: state dataclasses cannot use slots=True")
    _check_name(cls.__name__, cls.__qualname__)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise TypeError(f"{cls.__qualname__}: cannot resolve an annotation: {exc}") from None
    names = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    if len(names) > MAX_FIELDS:
        raise TypeError(f"{cls.__qualname__}: {len(names)} synced fields exceed {MAX_FIELDS}")
    specs = []
    for index, name in enumerate(names):
        where = f"{cls.__qualname__}.{name}"
        _check_name(name, where)
        specs.append(_spec(index, name, hints[name], where))
    layout = StructLayout(cls, tuple(specs))
    cls._nb_layout = layout  # type: ignore[attr-defined]
    cls._nb_specs = layout.by_name  # type: ignore[attr-defined]
    return layout


def _check_name(name: str, where: str) -> None:
    if not _NAME.match(name) or len(name) > MAX_NAME_BYTES:
        raise TypeError(f"{where}: name {name!r} must match [A-Za-z][A-Za-z0-9_]* (≤ 64)")


# ------------------------------------------------------------------------- schema table


def _type_bytes(desc: TypeDesc, index: dict[type, int]) -> bytes:
    head = desc.code | (NULLABLE if desc.nullable else 0)
    if desc.code is TypeCode.STRUCT:
        assert desc.struct is not None
        return bytes((head,)) + uvarint(index[desc.struct])
    if desc.code is TypeCode.LIST:
        assert desc.elem is not None
        return bytes((head,)) + _type_bytes(desc.elem, index)
    if desc.code is TypeCode.DICT:
        assert desc.elem is not None and desc.key is not None
        return bytes((head, desc.key)) + _type_bytes(desc.elem, index)
    return bytes((head,))


def _struct_of(desc: TypeDesc) -> type | None:
    if desc.code is TypeCode.STRUCT:
        return desc.struct
    if desc.elem is not None:
        return desc.elem.struct
    return None


def schema_table(root: type) -> tuple[bytes, dict[type, int]]:
    """Every struct type reachable from ``root`` (index 0), breadth first, as wire bytes.

    Returns:
        The table bytes and the type -> index map the encoder uses.

    Raises:
        TypeError: more than 256 struct types.
    """
    order = [root]
    index = {root: 0}
    i = 0
    while i < len(order):
        for spec in layout_of(order[i]).fields:
            child = _struct_of(spec.desc)
            if child is not None and child not in index:
                index[child] = len(order)
                order.append(child)
        i += 1
    if len(order) > MAX_TYPES:
        raise TypeError(f"state of {root.__qualname__} uses {len(order)} types (max {MAX_TYPES})")
    out = bytearray(uvarint(len(order)))
    for cls in order:
        layout = layout_of(cls)
        out += encode_str(layout.name) + uvarint(len(layout.fields))
        for spec in layout.fields:
            out += encode_str(spec.name) + _type_bytes(spec.desc, index)
    return bytes(out), index
