"""Tracked room state: the `Schema` base class and the list/dict types it keeps its data in.

Change tracking is paid per mutation, not per patch: setting a synced field costs a dict
write, a type check and an int OR (the field's bit in its object's dirty mask), and the first
change of an object since the last patch appends it to the tracker's dirty list. The encoder
then visits only those objects. Comparing the whole state with a snapshot at every patch would
be cheaper for tiny states but grows with the state instead of with what changed.

Reads stay plain attribute and item reads (no descriptors, no proxies): game logic reads far
more than it writes. Lists and dicts assigned to synced fields become `SyncList`/`SyncDict`
(subclasses of list and dict that override every mutator), so after ``state.items = []`` keep
using ``state.items``, not the plain list you assigned.

Every object lives at most once in a state tree: putting one that is already in a state (or in
another container) somewhere else raises `ValueError`; remove it first. A tracked node knows
its ``ref`` (the wire id the decoder keys it by), whether it is ``new`` (the client has not
seen it: the encoder sends it whole), and its ``gate`` (the view rules on the path from the
root, see `netbus.rooms.layout.Visible`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from netbus.rooms.containers import SyncDict, SyncList
from netbus.rooms.layout import (
    LIST,
    PRIM,
    STRUCT,
    FieldSpec,
    StructBase,
    StructLayout,
    TypeDesc,
    layout_of,
)
from netbus.rooms.tracking import Gate, Tracker, attach, claim, field_gate, release
from netbus.rooms.wire import OP_SELECT, uvarint

__all__ = ["Schema"]

_MISSING = object()


class Schema(StructBase):
    """Base class of room state dataclasses (see `netbus.rooms.layout` for field types).

    ::

        @dataclass
        class Player(Schema):
            name: str = ""
            x: f32 = 0.0
            y: f32 = 0.0
            uid: int = 0
            hand: Annotated[list[int], owner_only("uid")] = field(default_factory=list)
    """

    _nb_specs: ClassVar[dict[str, FieldSpec] | None] = None
    _nb_layout: ClassVar[StructLayout | None] = None
    # Per-instance bookkeeping; class-level defaults until an instance is attached.
    _nb_tracker: Tracker | None = None
    _nb_ref: int = -1
    _nb_new: bool = False
    _nb_gate: Gate = ()
    _nb_parent: Any = None
    _nb_dirty: int = 0

    def __new__(cls, *args: Any, **kwargs: Any) -> Schema:
        self = super().__new__(cls)
        # Present from the start, so the hot path reads them from the instance dict.
        self.__dict__.update(_nb_tracker=None, _nb_dirty=0)
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._nb_specs = None  # each class builds its own layout on first use
        cls._nb_layout = None

    def __setattr__(self, name: str, value: Any) -> None:
        specs = self._nb_specs
        if specs is None:
            specs = layout_of(type(self)).by_name
        spec = specs.get(name)
        d = self.__dict__
        if spec is None:  # not synced: an _underscore field, or a plain attribute
            d[name] = value
            return
        if type(value) is not spec.fast or not spec.lo <= value <= spec.hi:  # type: ignore[operator]
            if spec.kind != PRIM:
                _set_ref(self, spec, value)
                return
            try:
                value = spec.check(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__qualname__}.{name}: {exc}") from None
        old = d.get(name, _MISSING)
        if old == value and type(old) is type(value):
            return
        d[name] = value
        bits = d["_nb_dirty"]
        if bits:  # already queued since the last patch
            d["_nb_dirty"] = bits | spec.bit
        elif d["_nb_tracker"] is not None:
            d["_nb_tracker"].dirty.append(self)
            d["_nb_dirty"] = spec.bit

    def __delattr__(self, name: str) -> None:
        specs = self._nb_specs or layout_of(type(self)).by_name
        if name in specs:
            raise AttributeError(f"cannot delete synced field {type(self).__qualname__}.{name}")
        super().__delattr__(name)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the data, never the tracking (a copy is a new object)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_nb_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    # Node hooks (netbus.rooms.tracking): bookkeeping lives in the instance dict.

    def _nb_bind(self, tracker: Tracker | None, ref: int, gate: Gate, new: bool) -> None:
        d = self.__dict__
        d["_nb_tracker"] = tracker
        d["_nb_ref"] = ref
        d["_nb_new"] = new
        d["_nb_dirty"] = 0
        if tracker is not None:
            d["_nb_gate"] = gate
            d["_nb_select"] = bytes((OP_SELECT,)) + uvarint(ref)  # cached for the encoder

    def _nb_children(self) -> Iterable[tuple[Any, Gate]]:
        d = self.__dict__
        return [
            (d[spec.name], field_gate(self, spec))
            for spec in layout_of(type(self)).fields
            if spec.kind != PRIM and d.get(spec.name) is not None
        ]


def _set_ref(obj: Schema, spec: FieldSpec, value: Any) -> None:
    d = obj.__dict__
    old = d.get(spec.name)
    where = f"{type(obj).__qualname__}.{spec.name}"
    desc = spec.desc
    if value is None:
        if not desc.nullable:
            raise TypeError(f"{where}: cannot be None")
        if old is None:
            d[spec.name] = None  # (first assignment, from __init__)
            return
    elif value is old:
        return
    elif spec.kind == STRUCT:
        if type(value) is not desc.struct:
            raise TypeError(f"{where}: expected {desc.struct.__name__}, got {type(value).__name__}")  # type: ignore[union-attr]
    else:
        value = _as_container(value, spec.kind, desc, where)
    if value is not None:
        claim(value, obj, where)
    if old is not None:
        release(old)
    d[spec.name] = value
    tracker = obj._nb_tracker
    if tracker is not None:
        if value is not None:
            attach(value, tracker, field_gate(obj, spec))
        bits = obj._nb_dirty
        if not bits:
            tracker.dirty.append(obj)
        d["_nb_dirty"] = bits | spec.bit


def _as_container(value: Any, kind: int, desc: TypeDesc, where: str) -> Any:
    elem = desc.elem
    assert elem is not None
    if kind == LIST:
        if isinstance(value, SyncList) and value._nb_parent is None:
            value._bind(elem, where)
            return value
        if isinstance(value, SyncList) or not isinstance(value, list | tuple):
            if not isinstance(value, list | tuple):
                raise TypeError(f"{where}: expected a list, got {type(value).__name__}")
            raise ValueError(f"{where}: this list is already in a state")
        new_list: SyncList[Any] = SyncList()
        new_list._bind(elem, where)
        new_list.extend(value)
        return new_list
    if isinstance(value, SyncDict) and value._nb_parent is None:
        value._bind(elem, desc.key, where)
        return value
    if isinstance(value, SyncDict):
        raise ValueError(f"{where}: this dict is already in a state")
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected a dict, got {type(value).__name__}")
    new_dict: SyncDict[Any, Any] = SyncDict()
    new_dict._bind(elem, desc.key, where)
    new_dict.update(value)
    return new_dict
