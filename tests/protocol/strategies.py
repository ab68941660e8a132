"""Hypothesis strategies and helpers shared by the protocol tests (not a test module)."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Modest example counts keep the whole protocol suite within a few seconds.
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------------- text

#: Text that is valid Unicode (hypothesis never draws lone surrogates by default), biased
#: towards the cases the contract names: U+007F, CJK, characters outside the BMP.
TEXT = st.one_of(
    st.text(max_size=24),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=8),
    st.text(st.sampled_from("a\x00\x7f\x80\u07ff\u0800遊客\uffff😀\U0010ffff"), max_size=12),
    st.sampled_from(["", "遊客", "😀", "\x7f", "hi 😀"]),
)

# ----------------------------------------------------------------------------------- JSON

#: orjson decodes integers in this range as int (outside it, as float, like JavaScript).
JSON_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    JSON_INT,
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)

#: Any JSON value: null, scalars, nested arrays and objects (keys are text).
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(TEXT, children, max_size=4),
    ),
    max_leaves=16,
)


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares types (``1 != 1.0 != True``) and the sign of zero.

    Object key order is not compared (JSON objects are unordered); tests that care about the
    exact text compare bytes.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


# ------------------------------------------------------------------------------------ BUF

#: Value strategy per BUF field kind (PROTOCOL.md §3.3).
FIELD_VALUES = {
    "i16": st.integers(-(2**15), 2**15 - 1),
    "u16": st.integers(0, 2**16 - 1),
    "i32": st.integers(-(2**31), 2**31 - 1),
    "u32": st.integers(0, 2**32 - 1),
    "str": TEXT,
}

_INT_FORMATS = {"i16": "<h", "u16": "<H", "i32": "<i", "u32": "<I"}


def ref_field(kind: str, value: Any) -> bytes:
    """Reference encoder for one BUF field, written from the contract with bare ``struct``."""
    if kind == "str":
        data = value.encode("utf-8")
        return struct.pack("<H", len(data)) + data
    return struct.pack(_INT_FORMATS[kind], value)


def ref_header(stype: int, ctype: int, utag: int, proto_type: int) -> bytes:
    """Reference header encoder: four little-endian fields, u16 u16 u32 u16."""
    return (
        stype.to_bytes(2, "little")
        + ctype.to_bytes(2, "little")
        + utag.to_bytes(4, "little")
        + proto_type.to_bytes(2, "little")
    )


def ref_frame(cmd_buf: bytes) -> bytes:
    """Reference TCP framing: u16 LE length counting itself, then the cmd_buf."""
    return (len(cmd_buf) + 2).to_bytes(2, "little") + cmd_buf


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (any order, duplicates allowed: empty reads)."""
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]
