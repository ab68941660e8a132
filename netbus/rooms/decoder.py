"""StateDecoder: rebuilds a room state from state-sync messages and fires change callbacks.

The client side of docs/state-sync.md, used by the Python client (``netbus.js`` has its twin,
``roomstate.js``). It needs no schema of its own: every full state starts with the schema
table. Decoded structs are `RemoteStruct` objects (attribute access), lists and dicts are
`RemoteList`/`RemoteDict` (plain list and dict subclasses). Treat them as read-only: the next
patch assumes the state the server sent.

Malformed input raises `ProtocolError` (kind ``"bad_state"``) and nothing else. A message is
applied op by op, so after an error the state is half-updated: the decoder refuses everything
but a new full state (RESET) from then on, and the client should ask for one (rejoin).

Callbacks fire after the message that caused them has been applied in full, in op order, so a
callback always sees a consistent state (both x and y of a move). An exception raised by a
callback propagates out of `StateDecoder.apply` after the state is applied; the remaining
callbacks of that message are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netbus.errors import ProtocolError
from netbus.rooms.remote import (
    REMOTE,
    Callback,
    DecodedType,
    Desc,
    Node,
    RemoteDict,
    RemoteList,
    RemoteStruct,
    read_schema,
    to_plain,
)
from netbus.rooms.wire import (
    BAD_STATE,
    FLAG_END,
    FLAG_RESET,
    FLAGS_KNOWN,
    NEXT_MAX,
    OP_CLEAR,
    OP_DEL,
    OP_FIELDS,
    OP_FIELDS_INLINE,
    OP_INSERT,
    OP_NEXT,
    OP_NULL,
    OP_PUSH,
    OP_PUT,
    OP_REPLACE,
    OP_SELECT,
    StateReader,
    TypeCode,
)

__all__ = [
    "DEFAULT_MAX_NODES",
    "RemoteDict",
    "RemoteList",
    "RemoteStruct",
    "StateDecoder",
    "to_plain",
]

DEFAULT_MAX_NODES = 1 << 20  #: structs, lists and dicts one decoder holds at most



class StateDecoder:
    """Applies state-sync messages in order; `state` is the rebuilt root (None before)."""

    def __init__(self, *, max_nodes: int = DEFAULT_MAX_NODES) -> None:
        self.max_nodes = max_nodes
        self.state: RemoteStruct | None = None
        self.seq = 0  #: patch number of the last message applied
        self.complete = False  #: the last message ended a full state or patch
        self._types: list[DecodedType] = []
        self._refs: dict[int, Node] = {}
        self._broken = True  # nothing to patch until the first full state
        self._events: list[tuple[list[Callback], tuple[Any, ...]]] = []
        self._on_patch: list[Callback] = []
        self._on_reset: list[Callback] = []
        self._resetting = False

    # ------------------------------------------------------------------------- callbacks

    def listen(self, obj: Any, field: str, callback: Callback) -> Callable[[], None]:
        """``callback(value, previous)`` whenever ``obj.<field>`` changes."""
        node = self._node_of(obj, RemoteStruct)
        assert node.type is not None
        if field not in node.type.names:
            raise AttributeError(f"{node.type.name} has no synced field {field!r}")
        return self._add(node, field, callback)

    def on_add(
        self, coll: Any, callback: Callback, *, immediate: bool = True
    ) -> Callable[[], None]:
        """``callback(item, key)`` for each item added to a list or dict (and, with
        ``immediate``, for the items already there)."""
        node = self._node_of(coll, (RemoteList, RemoteDict))
        if immediate:
            items = coll.items() if isinstance(coll, dict) else enumerate(coll)
            for key, item in list(items):
                callback(item, key)
        return self._add(node, "+", callback)

    def on_remove(self, coll: Any, callback: Callback) -> Callable[[], None]:
        """``callback(item, key)`` for each item removed from a list or dict."""
        return self._add(self._node_of(coll, (RemoteList, RemoteDict)), "-", callback)

    def on_change(self, coll: Any, callback: Callback) -> Callable[[], None]:
        """``callback(item, key, previous)`` when a list index or dict key gets a new value."""
        return self._add(self._node_of(coll, (RemoteList, RemoteDict)), "=", callback)

    def on_patch(self, callback: Callback) -> Callable[[], None]:
        """``callback(seq)`` after the last message of each patch."""
        self._on_patch.append(callback)
        return lambda: _discard(self._on_patch, callback)

    def on_reset(self, callback: Callback) -> Callable[[], None]:
        """``callback(state)`` after a full state (join, resync): attach listeners here."""
        self._on_reset.append(callback)
        return lambda: _discard(self._on_reset, callback)

    @staticmethod
    def _node_of(obj: Any, kinds: Any) -> Node:
        if not isinstance(obj, kinds):
            raise TypeError(f"not a decoded state object: {type(obj).__name__}")
        node: Node = obj._nb_node
        return node

    @staticmethod
    def _add(node: Node, key: str, callback: Callback) -> Callable[[], None]:
        if node.listeners is None:
            node.listeners = {}
        bucket = node.listeners.setdefault(key, [])
        bucket.append(callback)
        return lambda: _discard(bucket, callback)

    def _event(self, node: Node, key: str, *args: Any) -> None:
        if node.listeners is not None:
            bucket = node.listeners.get(key)
            if bucket:
                self._events.append((bucket, args))

    # ----------------------------------------------------------------------------- apply

    def apply(self, data: bytes | bytearray | memoryview) -> None:
        """Apply one message (a state message's body).

        Raises:
            ProtocolError: malformed message (kind ``"bad_state"``); see the module docstring.
        """
        buf = bytes(data)
        reader = StateReader(buf)
        self._events = []
        try:
            flags = reader.u8()
            if flags & ~FLAGS_KNOWN:
                raise reader.fail(f"unknown flags {flags:#04x}")
            seq = reader.uvarint()
            if flags & FLAG_RESET:
                self._begin_reset(reader)
            elif self._broken:
                raise reader.fail("no state to patch: a full state (RESET) must come first")
            self._ops(reader)
        except ProtocolError:
            self._broken = True
            self._events = []
            raise
        except RecursionError:  # pragma: no cover - freeing is iterative; defensive
            self._broken = True
            raise ProtocolError(BAD_STATE, "state nested too deeply") from None
        self.seq = seq
        self.complete = bool(flags & FLAG_END)
        events, self._events = self._events, []
        for bucket, args in events:
            for callback in list(bucket):
                callback(*args)
        if self.complete:
            if self._resetting:
                self._resetting = False
                for callback in list(self._on_reset):
                    callback(self.state)
            for callback in list(self._on_patch):
                callback(seq)

    # ------------------------------------------------------------------------ full state

    def _begin_reset(self, reader: StateReader) -> None:
        self._types = read_schema(reader)
        self._refs = {}
        self._resetting = True
        self._broken = False
        root_desc = Desc(TypeCode.STRUCT, False, 0, None, 0)
        self.state = self._create(reader, 0, root_desc)

    # ------------------------------------------------------------------------------- ops

    def _create(self, reader: StateReader, ref: int, desc: Desc) -> Any:
        refs = self._refs
        if ref in refs:
            raise reader.fail(f"node {ref} already exists")
        if len(refs) >= self.max_nodes:
            raise reader.fail(f"more than {self.max_nodes} nodes")
        value: Any
        type_ = None
        if desc.code == TypeCode.STRUCT:
            type_ = self._types[desc.struct]
            value = RemoteStruct()
            value.__dict__.update(type_.defaults)
        elif desc.code == TypeCode.LIST:
            value = RemoteList()
        else:
            value = RemoteDict()
        node = Node(ref, desc, type_, value)
        value._nb_node = node
        refs[ref] = node
        return value

    def _free(self, value: Any) -> None:
        """Forget a removed subtree's nodes (iteratively: depth is the server's choice)."""
        stack = [value]
        refs = self._refs
        while stack:
            item = stack.pop()
            if not isinstance(item, REMOTE):
                continue
            refs.pop(item._nb_node.ref, None)
            if isinstance(item, RemoteStruct):
                stack.extend(item.__dict__.values())
            elif isinstance(item, RemoteList):
                stack.extend(item)
            else:
                stack.extend(item.values())

    def _value(self, reader: StateReader, desc: Desc) -> Any:
        code = desc.code
        if code == TypeCode.F32:
            return reader.f32()
        if code == TypeCode.INT:
            return reader.svarint()
        if code == TypeCode.STR:
            return reader.string()
        if code == TypeCode.F64:
            return reader.f64()
        if code == TypeCode.BOOL:
            return reader.boolean()
        return self._create(reader, reader.uvarint(), desc)

    def _key(self, reader: StateReader, desc: Desc) -> Any:
        return reader.string() if desc.key == TypeCode.STR else reader.svarint()

    def _ops(self, reader: StateReader) -> None:
        node: Node | None = None
        while not reader.at_end:
            op = reader.u8()
            if op == OP_SELECT or OP_NEXT < op <= OP_NEXT + NEXT_MAX:
                if op == OP_SELECT:
                    ref = reader.uvarint()
                elif node is None:
                    raise reader.fail("NEXT before any SELECT")
                else:
                    ref = node.ref + op - OP_NEXT
                node = self._refs.get(ref)
                if node is None:
                    raise reader.fail(f"SELECT of unknown node {ref}")
                continue
            if node is None:
                raise reader.fail(f"op {op:#04x} before any SELECT")
            code = node.desc.code
            if code == TypeCode.STRUCT:
                self._struct_op(reader, node, op)
            elif code == TypeCode.LIST:
                self._list_op(reader, node, op)
            else:
                self._dict_op(reader, node, op)

    def _struct_op(self, reader: StateReader, node: Node, op: int) -> None:
        type_ = node.type
        assert type_ is not None
        count = len(type_.descs)
        if op < 0x80:
            if op >= count:
                raise reader.fail(f"SET of field {op}; {type_.name} has {count}")
            self._set(node, type_, op, self._value(reader, type_.descs[op]))
        elif op == OP_FIELDS or op > OP_FIELDS_INLINE:
            if op == OP_FIELDS:
                mask = reader.mask(count)
            else:
                mask = op & 0x3F
                if mask >> count:
                    raise reader.fail(f"FIELDS of {mask:#x}; {type_.name} has {count} fields")
            index = 0
            while mask:
                if mask & 1:
                    self._set(node, type_, index, self._value(reader, type_.descs[index]))
                mask >>= 1
                index += 1
        elif op == OP_NULL:
            index = reader.uvarint()
            if index >= count or not type_.descs[index].nullable:
                raise reader.fail(f"NULL of field {index}, not a nullable field")
            self._set(node, type_, index, None)
        else:
            raise reader.fail(f"op {op:#04x} on a struct")

    def _set(self, node: Node, type_: DecodedType, index: int, value: Any) -> None:
        name = type_.names[index]
        attrs = node.value.__dict__
        previous = attrs[name]
        attrs[name] = value
        if isinstance(previous, REMOTE):
            self._free(previous)
        self._event(node, name, value, previous)

    def _list_op(self, reader: StateReader, node: Node, op: int) -> None:
        items: RemoteList = node.value
        elem = node.desc.elem
        assert elem is not None
        if op == OP_PUSH:
            items.append(self._value(reader, elem))
            self._event(node, "+", items[-1], len(items) - 1)
        elif op == OP_INSERT:
            index = reader.uvarint()
            if index > len(items):
                raise reader.fail(f"INSERT at {index} in a list of {len(items)}")
            value = self._value(reader, elem)
            items.insert(index, value)
            self._event(node, "+", value, index)
        elif op in (OP_REPLACE, OP_DEL):
            index = reader.uvarint()
            if index >= len(items):
                raise reader.fail(f"index {index} in a list of {len(items)}")
            previous = items[index]
            if op == OP_DEL:
                del items[index]
                self._free(previous)
                self._event(node, "-", previous, index)
                return
            items[index] = value = self._value(reader, elem)
            self._free(previous)
            self._event(node, "=", value, index, previous)
        elif op == OP_CLEAR:
            removed = list(items)
            items.clear()
            for index, previous in enumerate(removed):
                self._free(previous)
                self._event(node, "-", previous, index)
        else:
            raise reader.fail(f"op {op:#04x} on a list")

    def _dict_op(self, reader: StateReader, node: Node, op: int) -> None:
        items: RemoteDict = node.value
        elem = node.desc.elem
        assert elem is not None
        if op == OP_PUT:
            key = self._key(reader, node.desc)
            value = self._value(reader, elem)
            if key in items:
                previous = items[key]
                items[key] = value
                self._free(previous)
                self._event(node, "=", value, key, previous)
            else:
                items[key] = value
                self._event(node, "+", value, key)
        elif op == OP_DEL:
            key = self._key(reader, node.desc)
            if key not in items:
                raise reader.fail(f"DEL of missing key {key!r}")
            previous = items.pop(key)
            self._free(previous)
            self._event(node, "-", previous, key)
        elif op == OP_CLEAR:
            removed = list(items.items())
            items.clear()
            for key, previous in removed:
                self._free(previous)
                self._event(node, "-", previous, key)
        else:
            raise reader.fail(f"op {op:#04x} on a dict")


def _discard(bucket: list[Callback], callback: Callback) -> None:
    if callback in bucket:
        bucket.remove(callback)
