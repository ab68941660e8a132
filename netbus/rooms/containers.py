"""SyncList and SyncDict: the list and dict a state keeps its collections in.

Subclasses of list and dict that override every mutator to record changes (reads stay C-fast):
a list keeps an op log, a dict the keys that changed. Unbound (not yet in a state field) they
behave like plain containers; bound, they check their items against the field's element type
and own the structs they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex, TypeVar

from netbus.rooms.layout import STRUCT, StructBase, TypeDesc, primitive_check
from netbus.rooms.tracking import Gate, Tracker, attach, claim, release
from netbus.rooms.wire import TypeCode

__all__ = ["SyncDict", "SyncList"]

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_MISSING = object()
_LOG_SLACK = 16  #: a list's op log may exceed its length by this before it is resent whole


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
        if isinstance(value, StructBase):
            claim(value, self, self._nb_where)
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

    def _nb_bind(self, tracker: Tracker | None, ref: int, gate: Gate, new: bool) -> None:
        node: Any = self
        node._nb_tracker = tracker
        node._nb_ref = ref
        node._nb_new = new
        if tracker is not None:
            node._nb_gate = gate
        self._clear_pending()

    def _nb_children(self) -> Iterable[tuple[Any, Gate]]:
        elem = self._nb_elem
        if elem is None or elem.kind != STRUCT:
            return ()
        gate = self._nb_gate
        return [(item, gate) for item in self._items()]


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
            if isinstance(checked, StructBase) and checked._nb_parent is not self:
                claim(checked, self, where)

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
        log.append((op, index, value, value._nb_ref if isinstance(value, StructBase) else -1))
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
        if isinstance(value, StructBase):
            release(value)
        self._log("del", i)
        return value

    def remove(self, value: _T) -> None:
        self.pop(self.index(value))

    def clear(self) -> None:
        for value in list.__iter__(self):
            if isinstance(value, StructBase):
                release(value)
        list.clear(self)
        if self._nb_tracker is not None and not self._nb_reset:
            self._nb_log = [("clear", -1, None, -1)]
            self._enqueue()

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            new = [self._in(v) for v in value]
            old = list.__getitem__(self, index)
            for item in old:
                if isinstance(item, StructBase):
                    release(item)
            list.__setitem__(self, index, new)
            for item in new:
                self._adopt(item)
            self._resend()
            return
        i = self._norm(index)
        value = self._in(value)
        old_item = list.__getitem__(self, i)
        same = not isinstance(value, StructBase) and type(old_item) is type(value)
        if old_item is value or (same and old_item == value):
            return
        self._adopt(value)
        if isinstance(old_item, StructBase):
            release(old_item)
        list.__setitem__(self, i, value)
        self._log("replace", i, value)

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):
            for item in list.__getitem__(self, index):
                if isinstance(item, StructBase):
                    release(item)
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
            if isinstance(checked, StructBase) and checked._nb_parent is not self:
                claim(checked, self, where)

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
            and not isinstance(value, StructBase)
            and old == value
            and type(old) is type(value)
        ):
            return
        self._adopt(value)
        if isinstance(old, StructBase):
            release(old)
        dict.__setitem__(self, key, value)
        self._note(key, old is not _MISSING)

    def __delitem__(self, key: _K) -> None:
        value = dict.pop(self, key)
        if isinstance(value, StructBase):
            release(value)
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
            if isinstance(value, StructBase):
                release(value)
        dict.clear(self)
        if self._nb_tracker is not None:
            self._nb_changes = {}
            self._nb_cleared = True
            self._enqueue()

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (dict, (dict(self),))
