"""StateEncoder: a tracked state -> full-state and patch messages, per viewer where views differ.

The encoder keeps no per-viewer memory. A patch is encoded once as an ordered list of segments;
each segment holds the ops of one *gate* (the view rules on the path to what changed, empty for
public data). A viewer gets the segments its gate checks admit, concatenated in order, so
viewers that see the same thing share one bytes object and a state without `Visible` fields
costs one encoding for everyone. Order is causal (a node is created before its contents), and
a viewer that sees an op also sees the op that created its node, because a child's gate
extends its parent's.

Messages are bounded: ops are grouped in sections (a SELECT and the ops after it, at most ~12
KiB), and a patch or full state longer than ``max_message`` is cut between sections into
several messages, the last flagged END. A state too large overall (``max_total``) is refused
with `StateTooLarge`, which leaves the encoder unusable: the room must be disposed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from netbus.errors import LocalProtocolError
from netbus.rooms.containers import SyncDict, SyncList
from netbus.rooms.layout import (
    PRIM,
    STRUCT,
    FieldSpec,
    StructLayout,
    TypeDesc,
    fields_head,
    layout_of,
    schema_table,
)
from netbus.rooms.primitives import value_encoder
from netbus.rooms.schema import Schema
from netbus.rooms.segments import (
    HEADER_MAX,
    MIN_MAX_MESSAGE,
    PatchSink,
    Seg,
    Sink,
    ViewerSink,
    admits,
    cut,
)
from netbus.rooms.tracking import Tracker, attach
from netbus.rooms.wire import (
    FLAG_RESET,
    NEXT_MAX,
    OP_CLEAR,
    OP_DEL,
    OP_INSERT,
    OP_NEXT,
    OP_NULL,
    OP_PUSH,
    OP_PUT,
    OP_REPLACE,
    uvarint,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MAX_TOTAL",
    "MIN_MAX_MESSAGE",  # (from netbus.rooms.segments)
    "Delivery",
    "StateEncoder",
    "StateTooLarge",
]

V = TypeVar("V", bound=Hashable)

#: The largest cmd_buf (65533) minus the 10-byte header and 16 bytes for the rooms envelope.
DEFAULT_MAX_MESSAGE = 65533 - 10 - 16
DEFAULT_MAX_TOTAL = 4 << 20  #: bytes of one full state or patch, all messages together


class StateTooLarge(LocalProtocolError):
    """A full state or patch exceeds ``max_total`` bytes: a runaway state, not bad input."""


class Delivery(NamedTuple, Generic[V]):
    """The messages (send in order) that every viewer in ``viewers`` gets for one patch."""

    messages: tuple[bytes, ...]
    viewers: tuple[V, ...]


class StateEncoder(Generic[V]):
    """Encodes one room state for its viewers.

    Call `patch` at the patch rate with the viewers that hold the state, and `full` for a
    viewer that needs it whole (join, reconnection, a view that changed) right after a
    `patch`: `full` refuses to run while changes are pending, because a viewer given the state
    with those changes would get them again in the next patch.
    """

    def __init__(
        self,
        root: Schema,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_total: int = DEFAULT_MAX_TOTAL,
    ) -> None:
        if not isinstance(root, Schema):
            raise TypeError(f"a room state must be a Schema dataclass, got {type(root).__name__}")
        if max_message < MIN_MAX_MESSAGE:
            raise ValueError(f"max_message must be at least {MIN_MAX_MESSAGE}")
        self._table, index = schema_table(type(root))
        if len(self._table) + HEADER_MAX > max_message:
            raise ValueError(f"the schema table of {type(root).__name__} does not fit a message")
        if root._nb_tracker is not None or root._nb_parent is not None:
            raise ValueError("this state object already belongs to a state")
        self.root = root
        #: Whether any field of the schema is `Visible`-filtered; without, every viewer gets
        #: the same bytes (one `Delivery` per patch, one cached full state per seq).
        self.has_views = any(layout_of(cls).filtered for cls in index)
        self._full_cache: tuple[int, list[bytes]] | None = None
        self.max_message = max_message
        self.max_total = max_total
        self.seq = 0  #: number of the last patch (sent with every message)
        self._tracker = Tracker()
        attach(root, self._tracker, (), new=False)

    @property
    def pending(self) -> bool:
        """Whether anything changed since the last `patch`."""
        return bool(self._tracker.dirty)

    # ------------------------------------------------------------------------------ full

    def full(self, viewer: V) -> list[bytes]:
        """The whole state as ``viewer`` may see it: one or more messages, the first RESET.

        Raises:
            LocalProtocolError: changes are pending (call `patch` first).
            StateTooLarge: the state exceeds ``max_total``.
        """
        if self._tracker.dirty:
            raise LocalProtocolError("state changes are pending: call patch() before full()")
        cached = self._full_cache
        if cached is not None and cached[0] == self.seq:
            return list(cached[1])
        sink = ViewerSink(viewer)
        self._emit_tree(self.root, sink)
        messages = self._messages([sink.only], FLAG_RESET, self._table)
        if not self.has_views:
            self._full_cache = (self.seq, messages)
        return list(messages)

    # ----------------------------------------------------------------------------- patch

    def patch(self, viewers: Iterable[V]) -> list[Delivery[V]]:
        """Encode what changed since the last patch; empty when nothing did (or nobody sees it).

        Every viewer appears in at most one `Delivery`; viewers that see nothing of this patch
        appear in none.
        """
        tracker = self._tracker
        dirty = tracker.dirty
        if not dirty:
            return []
        tracker.dirty = []
        sink = PatchSink()
        shared = sink.segs[0]
        pending: deque[Any] = deque()
        for node in dirty:
            if node._nb_tracker is not tracker or node._nb_new:
                continue  # left the state, or new: sent whole by the op that created it
            if isinstance(node, Schema):
                d = node.__dict__
                bits = d["_nb_dirty"]
                if not bits:
                    continue
                d["_nb_dirty"] = 0
                layout: StructLayout = type(node)._nb_layout  # type: ignore[assignment]
                if bits & (bits - 1) and not d["_nb_gate"] and not bits & ~layout.public_mask:
                    # The hot path: a public struct with 2+ fields changed (an entity moved).
                    batch = layout.batches.get(bits) or layout.batch(bits)
                    values = batch.values(d)
                    if (batch.pack or batch.encode) is not None and None not in values:
                        seg = shared if shared is sink.segs[-1] else sink.seg(())
                        assert seg is not None
                        shared = seg
                        buf = seg.buf
                        ref = d["_nb_ref"]
                        seg.starts.append(len(buf))
                        seg.refs.append(ref)
                        step = ref - seg.cur
                        if seg.cur >= 0 and 0 < step <= NEXT_MAX:
                            buf.append(OP_NEXT + step)
                        else:
                            buf += d["_nb_select"]
                        seg.cur = ref
                        buf += batch.head
                        if batch.pack is not None:
                            buf += batch.pack(*values)
                        else:
                            buf += batch.encode(values)  # type: ignore[misc]
                        continue
                self._write_fields(node, d, bits, layout, sink, pending)
            elif isinstance(node, SyncList):
                self._list_changes(node, sink, pending)
            else:
                self._dict_changes(node, sink, pending)
            while pending:
                self._emit_full(pending.popleft(), sink, pending)
        segs = [seg for seg in sink.segs if seg.buf]
        if not segs:
            return []
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        gated = [seg for seg in segs if seg.gate]
        if not gated:
            return [Delivery(tuple(self._messages(segs, 0, b"")), tuple(viewers))]
        groups: dict[tuple[bool, ...], list[V]] = {}
        verdicts: dict[tuple[Any, tuple[int, ...]], bool] = {}
        for viewer in viewers:
            verdict_list = []
            for seg in gated:
                vkey = (viewer, seg.key)
                seen = verdicts.get(vkey)
                if seen is None:
                    seen = verdicts[vkey] = admits(seg.gate, viewer)
                verdict_list.append(seen)
            groups.setdefault(tuple(verdict_list), []).append(viewer)
        out = []
        for mask, members in groups.items():
            admitted = iter(mask)
            chosen = [seg for seg in segs if not seg.gate or next(admitted)]
            if any(seg.buf for seg in chosen):
                out.append(Delivery(tuple(self._messages(chosen, 0, b"")), tuple(members)))
        return out

    # ------------------------------------------------------------------------- emission

    def _emit_tree(self, root: Any, sink: Sink) -> None:
        pending: deque[Any] = deque([root])
        while pending:
            self._emit_full(pending.popleft(), sink, pending)

    def _emit_full(self, node: Any, sink: Sink, pending: deque[Any]) -> None:
        """Every item or non-default field of ``node``; its children go to ``pending``."""
        ref = node._nb_ref
        gate = node._nb_gate
        if isinstance(node, Schema):
            d = node.__dict__
            d["_nb_new"] = False
            d["_nb_dirty"] = 0
            layout = layout_of(type(node))
            mask = 0
            for spec in layout.fields:
                value = d.get(spec.name)
                if spec.kind == PRIM:
                    zero = spec.zero
                    if value is zero or (value == zero and type(value) is type(zero)):
                        continue
                elif value is None:
                    continue
                mask |= spec.bit
            if mask:
                self._write_fields(node, d, mask, layout, sink, pending)
            return
        node._nb_new = False
        node._clear_pending()
        seg = sink.seg(gate)
        if seg is None:
            return
        elem: TypeDesc = node._nb_elem
        enc = None if elem.kind == STRUCT else value_encoder(elem.code)
        if isinstance(node, SyncList):
            for item in list.__iter__(node):
                buf = seg.select(ref)
                buf.append(OP_PUSH)
                if enc is None:
                    buf += uvarint(item._nb_ref)
                    pending.append(item)
                else:
                    buf += enc(item)
            return
        key_enc = value_encoder(node._nb_key_type)
        for key, item in dict.items(node):
            buf = seg.select(ref)
            buf.append(OP_PUT)
            buf += key_enc(key)
            if enc is None:
                buf += uvarint(item._nb_ref)
                pending.append(item)
            else:
                buf += enc(item)

    def _struct_changes(self, node: Schema, sink: Sink, pending: deque[Any]) -> None:
        d = node.__dict__
        bits = d["_nb_dirty"]
        if bits:
            d["_nb_dirty"] = 0
            layout: StructLayout = type(node)._nb_layout  # type: ignore[assignment]
            self._write_fields(node, d, bits, layout, sink, pending)

    def _write_fields(
        self,
        node: Schema,
        d: dict[str, Any],
        bits: int,
        layout: StructLayout,
        sink: Sink,
        pending: deque[Any],
    ) -> None:
        """The fields in ``bits``: public ones in one op where possible, each hidden one in
        its own gate's segment."""
        ref = d["_nb_ref"]
        gate = d["_nb_gate"]
        public = bits & layout.public_mask
        if public:
            seg = sink.seg(gate)
            if seg is not None:
                if public & (public - 1):  # two or more fields: one FIELDS op
                    batch = layout.batches.get(public) or layout.batch(public)
                    values = batch.values(d)
                    if batch.pack is not None and None not in values:
                        buf = seg.select(ref)
                        buf += batch.head
                        buf += batch.pack(*values)
                    elif batch.encode is not None and None not in values:
                        buf = seg.select(ref)
                        buf += batch.head
                        buf += batch.encode(values)
                    else:
                        self._fields_slow(seg, ref, batch.specs, values, pending)
                else:
                    self._one(seg, ref, layout.fields[public.bit_length() - 1], d, pending)
        hidden = bits & ~layout.public_mask
        while hidden:
            low = hidden & -hidden
            hidden ^= low
            spec = layout.fields[low.bit_length() - 1]
            field_seg = sink.seg((*gate, (spec.visible, node)))  # type: ignore[arg-type]
            if field_seg is not None:
                self._one(field_seg, ref, spec, d, pending)

    @staticmethod
    def _one(seg: Seg, ref: int, spec: FieldSpec, d: dict[str, Any], pending: deque[Any]) -> None:
        """One field as SET (or NULL)."""
        buf = seg.select(ref)
        value = d[spec.name]
        if value is None:
            buf.append(OP_NULL)
            buf += uvarint(spec.index)
        elif spec.set_op is not None:
            buf += spec.set_op(value)
        else:
            buf.append(spec.index)
            buf += uvarint(value._nb_ref)
            pending.append(value)

    def _fields_slow(
        self,
        seg: Seg,
        ref: int,
        specs: tuple[FieldSpec, ...],
        values: tuple[Any, ...],
        pending: deque[Any],
    ) -> None:
        """A FIELDS op of variable-size values; nulls as NULL ops, strings as SET ops (each
        string may be long, so each gets its own section-size check)."""
        mask = 0
        parts: list[bytes] = []
        for spec, value in zip(specs, values, strict=True):
            if value is None:
                buf = seg.select(ref)
                buf.append(OP_NULL)
                buf += uvarint(spec.index)
            elif spec.big:
                seg.select(ref).extend(spec.set_op(value))  # type: ignore[misc]
            else:
                mask |= spec.bit
                if spec.encode is not None:
                    parts.append(spec.encode(value))
                else:
                    parts.append(uvarint(value._nb_ref))
                    pending.append(value)
        if mask & (mask - 1):
            buf = seg.select(ref)
            buf += fields_head(mask)
            for part in parts:
                buf += part
        elif mask:
            buf = seg.select(ref)
            buf.append(mask.bit_length() - 1)
            buf += parts[0]

    def _list_changes(self, node: SyncList[Any], sink: Sink, pending: deque[Any]) -> None:
        reset, log = node._nb_reset, node._nb_log
        node._clear_pending()
        seg = sink.seg(node._nb_gate)
        if seg is None:
            return
        ref = node._nb_ref
        elem = node._nb_elem
        assert elem is not None
        enc = None if elem.kind == STRUCT else value_encoder(elem.code)
        if reset:
            seg.select(ref).append(OP_CLEAR)
            for item in list.__iter__(node):
                buf = seg.select(ref)
                buf.append(OP_PUSH)
                self._item(buf, enc, item, item._nb_ref if enc is None else -1, pending)
            return
        for op, index, item, item_ref in log:
            buf = seg.select(ref)
            if op == "push":
                buf.append(OP_PUSH)
            elif op == "insert":
                buf.append(OP_INSERT)
                buf += uvarint(index)
            elif op == "replace":
                buf.append(OP_REPLACE)
                buf += uvarint(index)
            elif op == "del":
                buf.append(OP_DEL)
                buf += uvarint(index)
                continue
            else:
                buf.append(OP_CLEAR)
                continue
            self._item(buf, enc, item, item_ref, pending)

    @staticmethod
    def _item(
        buf: bytearray,
        enc: Callable[[Any], bytes] | None,
        item: Any,
        item_ref: int,
        pending: deque[Any],
    ) -> None:
        if enc is not None:
            buf += enc(item)
            return
        buf += uvarint(item_ref)
        # Still in place under the id the op names? Then send it whole; else it left again in
        # this same patch and the client gets an empty node that a later op removes.
        if item._nb_ref == item_ref:
            pending.append(item)

    def _dict_changes(self, node: SyncDict[Any, Any], sink: Sink, pending: deque[Any]) -> None:
        cleared, changes = node._nb_cleared, node._nb_changes
        node._clear_pending()
        seg = sink.seg(node._nb_gate)
        if seg is None:
            return
        ref = node._nb_ref
        elem = node._nb_elem
        assert elem is not None
        enc = None if elem.kind == STRUCT else value_encoder(elem.code)
        key_enc = value_encoder(node._nb_key_type)
        if cleared:
            seg.select(ref).append(OP_CLEAR)
        missing = _MISSING
        for key, existed in changes.items():
            item = dict.get(node, key, missing)
            buf = seg.select(ref)
            if item is missing:
                if existed:
                    buf.append(OP_DEL)
                    buf += key_enc(key)
                continue
            buf.append(OP_PUT)
            buf += key_enc(key)
            self._item(buf, enc, item, item._nb_ref if enc is None else -1, pending)

    # ------------------------------------------------------------------------- messages

    def _messages(self, segs: list[Seg], flags: int, table: bytes) -> list[bytes]:
        total = sum(len(seg.buf) for seg in segs) + len(table)
        if total > self.max_total:
            raise StateTooLarge(f"{total} bytes exceed max_total {self.max_total}")
        return cut(segs, flags, self.seq, table, self.max_message)


_MISSING = object()
