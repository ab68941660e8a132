"""Body encodings (PROTOCOL.md §3): u16-prefixed UTF-8 strings, JSON ``{"0": value}``, BUF.

Everything here is pure: bytes in, Python values out (or the reverse). Decoders raise only
`ProtocolError`; encoders raise `LocalProtocolError` when *our* value does not fit the wire.
`Reader`/`Writer` are the original framework's ``proto_tools`` (read/write i16, u16, i32, u32,
str), kept as small objects so that BUF layouts read like the tables in PROTOCOL.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol.header import HEADER_SIZE

__all__ = [
    "I16",
    "I32",
    "STR",
    "U16",
    "U32",
    "BodyCodec",
    "FieldKind",
    "FieldsCodec",
    "Reader",
    "ScalarCodec",
    "StatusCodec",
    "Writer",
    "decode_json_body",
    "encode_json_body",
]

_I16 = struct.Struct("<h")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


class Reader:
    """Reads BUF fields from ``buf`` starting at ``offset``; every read is bounds-checked."""

    __slots__ = ("_buf", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, offset: int = HEADER_SIZE) -> None:
        self._buf = buf
        self.pos = offset

    def _take(self, st: struct.Struct) -> int:
        end = self.pos + st.size
        if end > len(self._buf):
            raise ProtocolError("short_body", f"need {st.size} bytes at offset {self.pos}")
        (value,) = st.unpack_from(self._buf, self.pos)
        self.pos = end
        return value  # type: ignore[no-any-return]

    def i16(self) -> int:
        return self._take(_I16)

    def u16(self) -> int:
        return self._take(_U16)

    def i32(self) -> int:
        return self._take(_I32)

    def u32(self) -> int:
        return self._take(_U32)

    def str(self) -> str:
        size = self._take(_U16)
        end = self.pos + size
        if end > len(self._buf):
            raise ProtocolError("short_body", f"string of {size} bytes overruns the body")
        try:
            text = bytes(self._buf[self.pos : end]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_utf8", str(exc)) from None
        self.pos = end
        return text

    @property
    def remaining(self) -> int:
        return len(self._buf) - self.pos

    def expect_end(self) -> None:
        """Raise if bytes are left over: a BUF body that is too long is malformed (§3.3)."""
        if self.pos != len(self._buf):
            raise ProtocolError("long_body", f"{len(self._buf) - self.pos} trailing bytes")


class Writer:
    """Builds a BUF body; values outside their field's range raise `LocalProtocolError`."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def _put(self, st: struct.Struct, value: int) -> Writer:
        try:
            self._parts.append(st.pack(value))
        except struct.error as exc:
            raise LocalProtocolError(f"{value!r} does not fit {st.format}: {exc}") from None
        return self

    def i16(self, value: int) -> Writer:
        return self._put(_I16, value)

    def u16(self, value: int) -> Writer:
        return self._put(_U16, value)

    def i32(self, value: int) -> Writer:
        return self._put(_I32, value)

    def u32(self, value: int) -> Writer:
        return self._put(_U32, value)

    def str(self, value: str) -> Writer:
        if not isinstance(value, str):
            raise LocalProtocolError(f"expected str, got {type(value).__name__}")
        data = _utf8(value)
        self._put(_U16, len(data))
        self._parts.append(data)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _utf8(text: str) -> bytes:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot travel as UTF-8
        raise LocalProtocolError(f"string is not valid Unicode: {exc}") from None
    if len(data) > 0xFFFF:
        raise LocalProtocolError(f"string of {len(data)} UTF-8 bytes exceeds 65535")
    return data


# ---------------------------------------------------------------------------------------- JSON

_JSON_KEY = "0"


def encode_json_body(value: Any) -> bytes:
    """Encode ``value`` as a proto_type-1 body: u16 count, then ``{"0": value}`` in UTF-8."""
    try:
        text = orjson.dumps({_JSON_KEY: value})
    except TypeError as exc:
        raise LocalProtocolError(f"value is not JSON-serialisable: {exc}") from None
    if len(text) > 0xFFFF:
        raise LocalProtocolError(f"JSON body of {len(text)} bytes exceeds 65535")
    return _U16.pack(len(text)) + text


def decode_json_body(buf: bytes | bytearray | memoryview, offset: int = HEADER_SIZE) -> Any:
    """Decode a proto_type-1 body that fills ``buf`` from ``offset`` to its end.

    Raises:
        ProtocolError: wrong byte count, invalid UTF-8 or JSON, not an object, no key "0".
    """
    if len(buf) - offset < 2:
        raise ProtocolError("short_body", "JSON body without its length")
    (size,) = _U16.unpack_from(buf, offset)
    if offset + 2 + size != len(buf):
        raise ProtocolError("json_length", f"count {size} != {len(buf) - offset - 2} bytes")
    try:
        doc = orjson.loads(
            bytes(buf[offset + 2 :]) if not isinstance(buf, bytes) else buf[offset + 2 :]
        )
    except orjson.JSONDecodeError as exc:
        # orjson says "str is not valid UTF-8"; its BOM message also names UTF-8 but is bad JSON.
        kind = "bad_utf8" if "not valid utf-8" in str(exc).lower() else "bad_json"
        raise ProtocolError(kind, str(exc)) from None
    if type(doc) is not dict:
        raise ProtocolError("bad_json", "top-level value is not an object")
    try:
        return doc[_JSON_KEY]
    except KeyError:
        raise ProtocolError("bad_json", 'object has no key "0"') from None


# ----------------------------------------------------------------------------------------- BUF

FieldKind = str  #: one of I16, U16, I32, U32, STR
I16: FieldKind = "i16"
U16: FieldKind = "u16"
I32: FieldKind = "i32"
U32: FieldKind = "u32"
STR: FieldKind = "str"
_KINDS = (I16, U16, I32, U32, STR)


class BodyCodec(Protocol):
    """A BUF layout for one direction of one command: Python value <-> body bytes."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, reader: Reader) -> Any: ...


def _check_kinds(kinds: Iterable[FieldKind]) -> None:
    for kind in kinds:
        if kind not in _KINDS:
            raise ValueError(f"unknown BUF field kind {kind!r}")


_INT_STRUCTS = {I16: _I16, U16: _U16, I32: _I32, U32: _U32}


def _pack_int(kind: FieldKind, value: Any) -> bytes:
    # isinstance, not ``type() is int``: status IntEnums are ints; bool is refused on purpose.
    if not isinstance(value, int) or isinstance(value, bool):
        raise LocalProtocolError(f"{kind} field needs an int, got {type(value).__name__}")
    st = _INT_STRUCTS[kind]
    try:
        return st.pack(value)
    except struct.error as exc:
        raise LocalProtocolError(f"{value!r} does not fit {st.format}: {exc}") from None


def _encode_field(kind: FieldKind, value: Any) -> bytes:
    """One BUF field; the one encoder both layouts share."""
    if kind != STR:
        return _pack_int(kind, value)
    if not isinstance(value, str):
        raise LocalProtocolError(f"expected str, got {type(value).__name__}")
    data = _utf8(value)
    return _U16.pack(len(data)) + data


class FieldsCodec:
    """A BUF body of named fields, decoded to (and encoded from) a dict, like its JSON twin.

    ``FieldsCodec(("uname", STR), ("usex", I16))`` is talkroom Enter: ``{"uname", "usex"}``.
    With no fields it is the empty body, decoded to ``None``.
    """

    __slots__ = ("_readers", "fields")

    def __init__(self, *fields: tuple[str, FieldKind]) -> None:
        _check_kinds(kind for _, kind in fields)
        self.fields = fields
        # Resolved once: this runs for every BUF packet a service decodes.
        self._readers: tuple[tuple[str, Callable[[Reader], Any]], ...] = tuple(
            (name, getattr(Reader, kind)) for name, kind in fields
        )

    def encode(self, value: Any) -> bytes:
        if not self.fields:
            return b""
        if not isinstance(value, dict):
            raise LocalProtocolError(f"BUF layout needs a dict, got {type(value).__name__}")
        parts: list[bytes] = []
        for name, kind in self.fields:
            if name not in value:
                raise LocalProtocolError(f"BUF body is missing field {name!r}")
            parts.append(_encode_field(kind, value[name]))
        return b"".join(parts)

    def decode(self, reader: Reader) -> Any:
        if not self._readers:
            reader.expect_end()
            return None
        value = {name: read(reader) for name, read in self._readers}
        reader.expect_end()
        return value


class ScalarCodec:
    """A BUF body of exactly one field, decoded to the bare value (a status, a message)."""

    __slots__ = ("kind",)

    def __init__(self, kind: FieldKind) -> None:
        _check_kinds((kind,))
        self.kind = kind

    def encode(self, value: Any) -> bytes:
        return _encode_field(self.kind, value)

    def decode(self, reader: Reader) -> Any:
        value = getattr(reader, self.kind)()
        reader.expect_end()
        return value


class StatusCodec:
    """A status reply that carries fields only on success: ``i16 status``, then, when the
    status equals ``ok``, the named fields. Decoded to (and encoded from) a dict keyed by
    ``status_key`` plus the field names; an error status alone is ``{status_key: status}``.

    Talkroom's SendMsg reply is ``StatusCodec(("1", STR), ("2", I16), ("3", STR))``:
    ``{"0": 1, "1": uname, "2": usex, "3": msg}`` on OK, ``{"0": -100}`` otherwise.
    """

    __slots__ = ("_tail", "fields", "ok", "status_key")

    def __init__(self, *fields: tuple[str, FieldKind], status_key: str = "0", ok: int = 1) -> None:
        _check_kinds(kind for _, kind in fields)
        self.fields = fields
        self.status_key = status_key
        self.ok = ok
        self._tail = FieldsCodec(*fields)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, dict) or self.status_key not in value:
            raise LocalProtocolError(f"status reply needs {{{self.status_key!r}: status, ...}}")
        status = value[self.status_key]
        head = _encode_field(I16, status)
        if status != self.ok or not self.fields:
            return head
        return head + self._tail.encode(value)

    def decode(self, reader: Reader) -> Any:
        status = reader.i16()
        value: dict[str, Any] = {self.status_key: status}
        if status == self.ok:
            for name, read in self._tail._readers:
                value[name] = read(reader)
        reader.expect_end()
        return value
