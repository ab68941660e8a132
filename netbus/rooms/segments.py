"""Segments and messages: how one patch becomes the bytes each viewer receives.

A *segment* holds consecutive ops with the same gate (docs/state-sync.md §3), in *sections*
(a SELECT or NEXT and the ops after it). `PatchSink` collects a patch's segments for every
viewer at once; `ViewerSink` collects one viewer's full state, dropping what it may not see.
`cut` turns the segments a viewer gets into messages no longer than the limit, cutting only
between sections.
"""

from __future__ import annotations

from typing import Any

from netbus.rooms.tracking import Gate
from netbus.rooms.wire import (
    FLAG_END,
    MAX_STRING_BYTES,
    NEXT_MAX,
    OP_NEXT,
    OP_SELECT,
    uvarint,
)

__all__ = [
    "HEADER_MAX",
    "MIN_MAX_MESSAGE",
    "PatchSink",
    "Seg",
    "Sink",
    "ViewerSink",
    "admits",
    "cut",
]

_SECTION_SOFT = 4096  #: a section longer than this gets a fresh SELECT before its next op
_MAX_OP = 1 + 2 * (5 + MAX_STRING_BYTES)  #: PUT with a str key and a str value
HEADER_MAX = 1 + 5  #: flags + seq
MIN_MAX_MESSAGE = 16384  #: any section (< _SECTION_SOFT + _MAX_OP) fits in one message
assert _SECTION_SOFT + _MAX_OP + HEADER_MAX < MIN_MAX_MESSAGE


class Seg:
    """Ops of one gate, in emission order, in sections (a SELECT and the ops after it).

    ``starts`` and ``refs`` give each section's offset and node. A segment's first SELECT is
    absolute; later ones may be one-byte steps from the previous (NEXT), which `_messages`
    turns back into absolute SELECTs where it cuts a patch into several messages.
    """

    __slots__ = ("buf", "cur", "gate", "key", "refs", "starts")

    def __init__(self, gate: Gate, key: tuple[int, ...]) -> None:
        self.gate = gate
        self.key = key
        self.buf = bytearray()
        self.starts: list[int] = []
        self.refs: list[int] = []
        self.cur = -1

    def select(self, ref: int) -> bytearray:
        """Make ``ref`` the current node (a new section when needed) and return the buffer."""
        buf = self.buf
        cur = self.cur
        if cur != ref or len(buf) - self.starts[-1] >= _SECTION_SOFT:
            self.starts.append(len(buf))
            self.refs.append(ref)
            step = ref - cur
            if cur >= 0 and 0 < step <= NEXT_MAX:
                buf.append(OP_NEXT + step)
            else:
                buf.append(OP_SELECT)
                buf += uvarint(ref)
            self.cur = ref
        return buf


def _gate_key(gate: Gate) -> tuple[int, ...]:
    return tuple(i for rule, obj in gate for i in (id(rule), id(obj)))


def admits(gate: Gate, viewer: Any) -> bool:
    return all(rule(viewer, obj) for rule, obj in gate)


class PatchSink:
    """Segments of a patch: consecutive ops of the same gate share a segment."""

    __slots__ = ("segs",)

    def __init__(self) -> None:
        self.segs = [Seg((), ())]

    def seg(self, gate: Gate) -> Seg | None:
        last = self.segs[-1]
        if gate is last.gate or (not gate and not last.gate):
            return last
        key = _gate_key(gate)
        if key != last.key:
            last = Seg(gate, key)
            self.segs.append(last)
        return last


class ViewerSink:
    """One segment for one viewer: ops whose gate does not admit the viewer are dropped."""

    __slots__ = ("cache", "only", "viewer")

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.only = Seg((), ())
        self.cache: dict[tuple[int, ...], bool] = {}

    def seg(self, gate: Gate) -> Seg | None:
        if not gate:
            return self.only
        key = _gate_key(gate)
        seen = self.cache.get(key)
        if seen is None:
            seen = self.cache[key] = admits(gate, self.viewer)
        return self.only if seen else None


Sink = PatchSink | ViewerSink


def cut(segs: list[Seg], flags: int, seq: int, table: bytes, max_message: int) -> list[bytes]:
    """The messages carrying ``table`` (a full state's schema) and ``segs``, in order.

    One message when it fits in ``max_message``; else several, cut between sections, the first
    with ``flags`` and the last with END. A section moved to the start of a message gets an
    absolute SELECT in place of its NEXT (a message starts with no previous node).
    """
    head = uvarint(seq)
    total = len(table) + sum(len(seg.buf) for seg in segs)
    if 1 + len(head) + total <= max_message:
        parts: list[bytes | bytearray] = [bytes((flags | FLAG_END,)), head, table]
        parts.extend(seg.buf for seg in segs)
        return [b"".join(parts)]
    room = max_message - 1 - len(head)
    bodies: list[bytearray] = [bytearray(table)]
    for seg in segs:
        starts, buf = seg.starts, seg.buf
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(buf)
            if len(bodies[-1]) + end - start + 5 > room:  # + 5: a NEXT may grow to a SELECT
                bodies.append(bytearray())
            body = bodies[-1]
            if not body and buf[start] != OP_SELECT:
                body.append(OP_SELECT)
                body += uvarint(seg.refs[i])
                body += buf[start + 1 : end]
            else:
                body += buf[start:end]
    out = []
    last = len(bodies) - 1
    for i, body in enumerate(bodies):
        bits = (flags if i == 0 else 0) | (FLAG_END if i == last else 0)
        out.append(bytes((bits,)) + head + body)
    return out
