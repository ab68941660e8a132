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

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, SupportsIndex, TypeVar

from netbus.rooms.layout import (
    LIST,
    PRIM,
    STRUCT,
    FieldSpec,
    StructBase,
    StructLayout,
    TypeDesc,
    ViewRule,
    layout_of,
    primitive_check,
)
from netbus.rooms.wire import MAX_UVARINT, OP_SELECT, TypeCode, uvarint

__all__ = ["Gate", "Schema", "SyncDict", "SyncList", "Tracker", "attach", "detach"]

Gate = tuple[tuple[ViewRule, Any], ...]
"""(rule, obj) pairs that must all admit a viewer before it may see a node."""

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_MISSING = object()
_LOG_SLACK = 16  #: a list's op log may exceed its length by this before it is resent whole


class Tracker:
    """What one encoder knows of its state tree: wire ids handed out and the dirty nodes."""

    __slots__ = ("_next_ref", "dirty")

    def __init__(self) -> None:
        self.dirty: list[Any] = []  #: nodes changed since the last patch (may repeat)
        self._next_ref = 0

    def alloc(self) -> int:
        ref = self._next_ref
        if ref > MAX_UVARINT:
            raise OverflowError("state ran out of wire ids (2**32 nodes attached)")
        self._next_ref = ref + 1
        return ref


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


def _field_gate(obj: Any, spec: FieldSpec) -> Gate:
    gate: Gate = obj._nb_gate
    return gate if spec.visible is None else (*gate, (spec.visible, obj))


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
        _claim(value, obj, where)
    if old is not None:
        _release(old)
    d[spec.name] = value
    tracker = obj._nb_tracker
    if tracker is not None:
        if value is not None:
            attach(value, tracker, _field_gate(obj, spec))
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


def _claim(child: Any, parent: Any, where: str) -> None:
    """Make ``parent`` the one owner of ``child``: an object sits in one place at a time."""
    if child._nb_parent is not None:
        raise ValueError(f"{where}: {type(child).__name__} is already in a state; remove it first")
    if child._nb_tracker is not None:
        raise ValueError(f"{where}: {type(child).__name__} is the root of a state")
    _set_slot(child, "_nb_parent", parent)


def _release(child: Any) -> None:
    _set_slot(child, "_nb_parent", None)
    if child._nb_tracker is not None:
        detach(child)


def _set_slot(node: Any, name: str, value: Any) -> None:
    if isinstance(node, Schema):
        node.__dict__[name] = value
    else:
        object.__setattr__(node, name, value)


# ------------------------------------------------------------------------- attach/detach


def attach(node: Any, tracker: Tracker, gate: Gate, *, new: bool = True) -> None:
    """Give ``node`` and everything under it wire ids in ``tracker``; ``new`` = send whole."""
    if isinstance(node, Schema):
        d = node.__dict__
        d["_nb_tracker"] = tracker
        d["_nb_ref"] = ref = tracker.alloc()
        d["_nb_select"] = bytes((OP_SELECT,)) + uvarint(ref)  # cached for the encoder
        d["_nb_new"] = new
        d["_nb_gate"] = gate
        d["_nb_dirty"] = 0
        for spec in layout_of(type(node)).fields:
            if spec.kind != PRIM:
                child = d.get(spec.name)
                if child is not None:
                    attach(child, tracker, _field_gate(node, spec), new=new)
        return
    node._nb_tracker = tracker
    node._nb_ref = tracker.alloc()
    node._nb_new = new
    node._nb_gate = gate
    node._clear_pending()
    if node._nb_elem is not None and node._nb_elem.kind == STRUCT:
        for item in node._items():
            attach(item, tracker, gate, new=new)


def detach(node: Any) -> None:
    """Forget ``node``'s wire ids (it left the state); its data and children stay intact."""
    if isinstance(node, Schema):
        d = node.__dict__
        d["_nb_tracker"] = None
        d["_nb_ref"] = -1
        d["_nb_new"] = False
        d["_nb_dirty"] = 0
        for spec in layout_of(type(node)).fields:
            if spec.kind != PRIM:
                child = d.get(spec.name)
                if child is not None:
                    detach(child)
        return
    node._nb_tracker = None
    node._nb_ref = -1
    node._nb_new = False
    node._clear_pending()
    if node._nb_elem is not None and node._nb_elem.kind == STRUCT:
        for item in node._items():
            detach(item)


# ----------------------------------------------------------------------------- containers


class _Node:
    """Bookkeeping slots shared by SyncList and SyncDict (a mixin with no data of its own)."""

    __slots__ = ()
    _nb_elem: TypeDesc | None
    _nb_check: Callable[[Any], Any]
    _nb_where: str
    _nb_tracker: Tracker | None
    _nb_ref: int
    _nb_new: bool
    _nb_gate: Gate
    _nb_parent: Any
    _nb_queued: bool

    def _init_node(self) -> None:
        node: Any = self  # the slots live in the concrete classes (list/dict layouts differ)
        node._nb_elem = None
        node._nb_check = _identity
        node._nb_where = "state"
        node._nb_tracker = None
        node._nb_ref = -1
        node._nb_new = False
        node._nb_gate = ()
        node._nb_parent = None
        node._nb_queued = False

    def _in(self, value: Any) -> Any:
        """Check one incoming item (and claim it when it is a struct)."""
        elem = self._nb_elem
        if elem is None:
            return value
        if elem.kind == STRUCT:
            if type(value) is not elem.struct:
                raise TypeError(
                    f"{self._nb_where}: expected {elem.struct.__name__}, "  # type: ignore[union-attr]
                    f"got {type(value).__name__}"
                )
            return value
        try:
            return self._nb_check(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{self._nb_where}: {exc}") from None

    def _adopt(self, value: Any) -> None:
        """Take ownership of a struct item that is now stored in this container."""
        if isinstance(value, Schema):
            _claim(value, self, self._nb_where)
            if self._nb_tracker is not None:
                attach(value, self._nb_tracker, self._nb_gate)

    def _enqueue(self) -> None:
        node: Any = self
        if not node._nb_queued:
            node._nb_queued = True
            node._nb_tracker.dirty.append(self)

    def _items(self) -> Iterable[Any]:
        raise NotImplementedError

    def _clear_pending(self) -> None:
        raise NotImplementedError


def _identity(value: Any) -> Any:
    return value


class SyncList(list[_T], _Node):
    """A list that records its changes (an op log) for the encoder.

    ``append``/``insert``/``pop``/``del l[i]``/``l[i] = v``/``clear`` travel as single ops;
    slice assignment, ``sort`` and ``reverse`` resend the whole list, as does an op log
    that grows longer than the list itself.
    """

    __slots__ = (
        "_nb_check",
        "_nb_elem",
        "_nb_gate",
        "_nb_log",
        "_nb_new",
        "_nb_parent",
        "_nb_queued",
        "_nb_ref",
        "_nb_reset",
        "_nb_tracker",
        "_nb_where",
    )
    _nb_log: list[tuple[Any, ...]]
    _nb_reset: bool

    def __init__(self, items: Iterable[_T] = ()) -> None:
        self._init_node()
        self._nb_log = []
        self._nb_reset = False
        super().__init__(items)

    def _bind(self, elem: TypeDesc, where: str) -> None:
        self._nb_elem = elem
        self._nb_check = primitive_check(elem)
        self._nb_where = where
        for i, item in enumerate(list.__iter__(self)):
            checked = self._in(item)
            if checked is not item:
                list.__setitem__(self, i, checked)
            if isinstance(checked, Schema) and checked._nb_parent is not self:
                _claim(checked, self, where)

    def _items(self) -> Iterable[Any]:
        return list.__iter__(self)

    def _clear_pending(self) -> None:
        self._nb_log = []
        self._nb_reset = False
        self._nb_queued = False

    def _log(self, op: str, index: int, value: Any = None) -> None:
        """Record one op with the item's wire id now (it may move before the patch)."""
        if self._nb_tracker is None or self._nb_reset:
            return
        log = self._nb_log
        log.append((op, index, value, value._nb_ref if isinstance(value, Schema) else -1))
        if len(log) > len(self) + _LOG_SLACK:
            self._resend()
        self._enqueue()

    def _resend(self) -> None:
        if self._nb_tracker is None:
            return
        self._nb_reset = True
        self._nb_log = []
        self._enqueue()

    def _norm(self, index: SupportsIndex) -> int:
        i = index.__index__()
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        return i

    def append(self, value: _T) -> None:
        value = self._in(value)
        self._adopt(value)
        list.append(self, value)
        self._log("push", -1, value)

    def extend(self, values: Iterable[_T]) -> None:
        items = [self._in(v) for v in values]
        for value in items:
            self._adopt(value)
            list.append(self, value)
            self._log("push", -1, value)

    def __iadd__(self, values: Iterable[_T]) -> SyncList[_T]:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def __imul__(self, times: SupportsIndex) -> SyncList[_T]:
        n = times.__index__()
        if n <= 0:
            self.clear()
        elif n > 1:
            self.extend(list(self) * (n - 1))
        return self

    def insert(self, index: SupportsIndex, value: _T) -> None:
        n = len(self)
        i = index.__index__()
        i = max(0, i + n) if i < 0 else min(i, n)
        value = self._in(value)
        self._adopt(value)
        list.insert(self, i, value)
        self._log("insert", i, value)

    def pop(self, index: SupportsIndex = -1) -> _T:
        i = self._norm(index)
        value = list.pop(self, i)
        if isinstance(value, Schema):
            _release(value)
        self._log("del", i)
        return value

    def remove(self, value: _T) -> None:
        self.pop(self.index(value))

    def clear(self) -> None:
        for value in list.__iter__(self):
            if isinstance(value, Schema):
                _release(value)
        list.clear(self)
        if self._nb_tracker is not None and not self._nb_reset:
            self._nb_log = [("clear", -1, None, -1)]
            self._enqueue()

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            new = [self._in(v) for v in value]
            old = list.__getitem__(self, index)
            for item in old:
                if isinstance(item, Schema):
                    _release(item)
            list.__setitem__(self, index, new)
            for item in new:
                self._adopt(item)
            self._resend()
            return
        i = self._norm(index)
        value = self._in(value)
        old_item = list.__getitem__(self, i)
        if old_item is value or (
            not isinstance(value, Schema) and old_item == value and type(old_item) is type(value)
        ):
            return
        self._adopt(value)
        if isinstance(old_item, Schema):
            _release(old_item)
        list.__setitem__(self, i, value)
        self._log("replace", i, value)

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):
            for item in list.__getitem__(self, index):
                if isinstance(item, Schema):
                    _release(item)
            list.__delitem__(self, index)
            self._resend()
            return
        self.pop(index)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        list.sort(self, *args, **kwargs)
        self._resend()

    def reverse(self) -> None:
        list.reverse(self)
        self._resend()

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (list, (list(self),))


class SyncDict(dict[_K, _V], _Node):
    """A dict that records which keys changed since the last patch (latest value wins)."""

    __slots__ = (
        "_nb_changes",
        "_nb_check",
        "_nb_cleared",
        "_nb_elem",
        "_nb_gate",
        "_nb_key_check",
        "_nb_key_type",
        "_nb_new",
        "_nb_parent",
        "_nb_queued",
        "_nb_ref",
        "_nb_tracker",
        "_nb_where",
    )
    _nb_changes: dict[Any, bool]  #: key -> did it exist at the last patch
    _nb_cleared: bool
    _nb_key_check: Callable[[Any], Any]
    _nb_key_type: TypeCode

    def __init__(self, items: Any = (), **kwargs: _V) -> None:
        self._init_node()
        self._nb_changes = {}
        self._nb_cleared = False
        self._nb_key_check = _identity
        self._nb_key_type = TypeCode.STR
        super().__init__(items, **kwargs)

    def _bind(self, elem: TypeDesc, key: TypeCode | None, where: str) -> None:
        assert key is not None
        self._nb_elem = elem
        self._nb_check = primitive_check(elem)
        self._nb_key_check = primitive_check(TypeDesc(key))
        self._nb_key_type = key
        self._nb_where = where
        for k, item in list(dict.items(self)):
            self._key(k)
            checked = self._in(item)
            if checked is not item:
                dict.__setitem__(self, k, checked)
            if isinstance(checked, Schema) and checked._nb_parent is not self:
                _claim(checked, self, where)

    def _items(self) -> Iterable[Any]:
        return dict.values(self)

    def _clear_pending(self) -> None:
        self._nb_changes = {}
        self._nb_cleared = False
        self._nb_queued = False

    def _key(self, key: Any) -> Any:
        try:
            return self._nb_key_check(key)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{self._nb_where} key: {exc}") from None

    def _note(self, key: Any, existed: bool) -> None:
        if self._nb_tracker is None:
            return
        changes = self._nb_changes
        if key not in changes:
            changes[key] = existed
        self._enqueue()

    def __setitem__(self, key: _K, value: _V) -> None:
        key = self._key(key)
        value = self._in(value)
        old = dict.get(self, key, _MISSING)
        if old is value or (
            old is not _MISSING
            and not isinstance(value, Schema)
            and old == value
            and type(old) is type(value)
        ):
            return
        self._adopt(value)
        if isinstance(old, Schema):
            _release(old)
        dict.__setitem__(self, key, value)
        self._note(key, old is not _MISSING)

    def __delitem__(self, key: _K) -> None:
        value = dict.pop(self, key)
        if isinstance(value, Schema):
            _release(value)
        self._note(key, True)

    def pop(self, key: _K, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = dict.__getitem__(self, key)
        self.__delitem__(key)
        return value

    def popitem(self) -> tuple[_K, _V]:
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(self.keys()))
        return key, self.pop(key)

    def setdefault(self, key: _K, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, other: Any = (), /, **kwargs: _V) -> None:
        items = other.items() if hasattr(other, "items") else other
        for key, value in items:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value  # type: ignore[index]

    def __ior__(self, other: Any) -> SyncDict[_K, _V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        for value in dict.values(self):
            if isinstance(value, Schema):
                _release(value)
        dict.clear(self)
        if self._nb_tracker is not None:
            self._nb_changes = {}
            self._nb_cleared = True
            self._enqueue()

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (dict, (dict(self),))
