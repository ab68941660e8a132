"""The state-sync wire format (docs/state-sync.md): constants, varints and a bounded reader.

Pure: bytes in, ints and strings out. The encoder and the decoder share these numbers, and
the JavaScript decoder (``roomstate.js``) repeats them; the golden vectors in
``tests/golden/state_sync.json`` keep the three in step.

Malformed input raises `ProtocolError` with kind ``"bad_state"`` and nothing else: the
decoders are fed by servers, but a client must still fail cleanly on corrupt bytes.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from netbus.errors import ProtocolError

__all__ = [
    "BAD_STATE",
    "FLAGS_KNOWN",
    "FLAG_END",
    "FLAG_RESET",
    "MAX_FIELDS",
    "MAX_NAME_BYTES",
    "MAX_SAFE_INT",
    "MAX_STRING_BYTES",
    "MAX_TYPES",
    "MAX_UVARINT",
    "NEXT_MAX",
    "NULLABLE",
    "OP_CLEAR",
    "OP_DEL",
    "OP_FIELDS",
    "OP_FIELDS_INLINE",
    "OP_INSERT",
    "OP_NEXT",
    "OP_NULL",
    "OP_PUSH",
    "OP_PUT",
    "OP_REPLACE",
    "OP_SELECT",
    "StateReader",
    "TypeCode",
    "svarint",
    "uvarint",
]

#: ProtocolError.kind of every decoding failure.
BAD_STATE = "bad_state"

# ------------------------------------------------------------------------ message header
FLAG_RESET = 0x01  #: a full state follows (schema table first); drop the old state
FLAG_END = 0x02  #: the last message of this full state or patch
FLAGS_KNOWN = FLAG_RESET | FLAG_END

# ----------------------------------------------------------------------------- opcodes
# 0x00-0x7F: SET field <opcode> of the current struct, value follows.
OP_SELECT = 0x80  #: uvarint ref: the following ops apply to that node
OP_NULL = 0x81  #: uvarint field: a nullable struct field becomes null
OP_PUT = 0x82  #: dict: key, value (add or replace)
OP_DEL = 0x83  #: dict: key / list: uvarint index
OP_PUSH = 0x84  #: list: value (append)
OP_INSERT = 0x85  #: list: uvarint index, value
OP_REPLACE = 0x86  #: list: uvarint index, value
OP_CLEAR = 0x87  #: list or dict: remove every item
OP_FIELDS = 0x88  #: struct: mask (uvarint, up to 128 bits), then each set field's value
# 0x89-0x8F: reserved.
OP_NEXT = 0x8F  #: 0x90-0xBF: SELECT (previous SELECT's ref + op - 0x8F), i.e. +1 ... +48
NEXT_MAX = 48
OP_FIELDS_INLINE = 0xC0  #: 0xC1-0xFF: FIELDS whose mask (fields 0-5) is the low 6 bits


class TypeCode(IntEnum):
    """Type codes of the schema table; the low 6 bits of a type byte."""

    BOOL = 1  #: u8 0 or 1
    INT = 2  #: zigzag varint, |v| <= 2**53 - 1 (exact in JavaScript)
    F64 = 3  #: IEEE 754 double, little-endian
    F32 = 4  #: IEEE 754 single, little-endian
    STR = 5  #: uvarint byte count, UTF-8
    STRUCT = 6  #: a child struct node (uvarint ref); type index follows in the schema
    LIST = 7  #: a child list node (uvarint ref); element type follows in the schema
    DICT = 8  #: a child dict node (uvarint ref); key code and element type follow


NULLABLE = 0x40  #: type-byte flag: the field may be null (primitives and structs only)

# ------------------------------------------------------------------------------ limits
MAX_FIELDS = 128  #: synced fields per struct (SET opcodes 0x00-0x7F)
MAX_TYPES = 256  #: struct types in one schema table
MAX_NAME_BYTES = 64  #: a type or field name in the schema table
MAX_STRING_BYTES = 4096  #: a str value or dict key, in UTF-8 bytes
MAX_SAFE_INT = 2**53 - 1  #: ints beyond this are not exact in JavaScript
MAX_UVARINT = 2**32 - 1  #: refs, counts, lengths and indexes

_SMALL = [bytes((i,)) for i in range(0x80)]
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def uvarint(value: int) -> bytes:
    """LEB128: 7 bits per byte, low group first, high bit set on every byte but the last."""
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def svarint(value: int) -> bytes:
    """A signed int as zigzag LEB128 (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)."""
    zigzag = value << 1 if value >= 0 else ((-value) << 1) - 1
    if zigzag < 0x80:
        return _SMALL[zigzag]
    if zigzag < 0x4000:  # positions in tenths, scores: the common case, without a loop
        return bytes(((zigzag & 0x7F) | 0x80, zigzag >> 7))
    return uvarint(zigzag)


class StateReader:
    """Bounds-checked reads over one message; every failure is ``ProtocolError(bad_state)``."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def fail(self, detail: str) -> ProtocolError:
        return ProtocolError(BAD_STATE, f"{detail} (offset {self.pos})")

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self.fail("truncated")
        self.pos = pos + 1
        return self.buf[pos]

    def _varint(self, max_bytes: int) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        value = 0
        shift = 0
        for i in range(max_bytes):
            if pos >= end:
                raise self.fail("truncated varint")
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and i > 0:
                    raise self.fail("overlong varint")
                self.pos = pos
                return value
            shift += 7
        raise self.fail("varint too long")

    def mask(self, nfields: int) -> int:
        """A FIELDS mask: up to 19 bytes (128 bits), not zero, no bit at or past ``nfields``."""
        value = self._varint(19)
        if not value or value >> nfields:
            raise self.fail(f"bad field mask {value:#x}")
        return value

    def uvarint(self) -> int:
        """A ref, count, length or index: at most 5 bytes and 2**32 - 1."""
        value = self._varint(5)
        if value > MAX_UVARINT:
            raise self.fail("uvarint out of range")
        return value

    def svarint(self) -> int:
        """A zigzag int: at most 8 bytes, magnitude at most 2**53 - 1."""
        raw = self._varint(8)
        value = -((raw + 1) >> 1) if raw & 1 else raw >> 1
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise self.fail("int out of range")
        return value

    def boolean(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise self.fail(f"bool byte {byte}")
        return byte == 1

    def f32(self) -> float:
        pos = self.pos
        if pos + 4 > self.end:
            raise self.fail("truncated f32")
        self.pos = pos + 4
        return float(_F32.unpack_from(self.buf, pos)[0])

    def f64(self) -> float:
        pos = self.pos
        if pos + 8 > self.end:
            raise self.fail("truncated f64")
        self.pos = pos + 8
        return float(_F64.unpack_from(self.buf, pos)[0])

    def string(self, limit: int = MAX_STRING_BYTES) -> str:
        size = self.uvarint()
        if size > limit:
            raise self.fail(f"string of {size} bytes exceeds {limit}")
        pos = self.pos
        if pos + size > self.end:
            raise self.fail("truncated string")
        try:
            text = self.buf[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("invalid UTF-8") from None
        self.pos = pos + size
        return text

    @property
    def at_end(self) -> bool:
        return self.pos >= self.end
