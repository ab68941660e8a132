"""Primitive field values: checks at assignment, wire bytes at encoding (docs/state-sync.md §2).

Checks run when game code assigns a value, so a bad value fails where the bug is (naming the
field), not 50 ms later in the encoder; they return the value to store (an int assigned to a
float field becomes a float). Encoders then trust what they are given.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from typing import Any

from netbus.rooms.wire import MAX_SAFE_INT, MAX_STRING_BYTES, TypeCode, svarint, uvarint

__all__ = [
    "CHECKS",
    "F32_MAX",
    "FAST",
    "ZEROS",
    "encode_str",
    "nullable",
    "set_op_for",
    "value_encoder",
]

F32_MAX = 3.4028234663852886e38


def _bad(value: Any, what: str) -> TypeError:
    return TypeError(f"expected {what}, got {type(value).__name__}")


def _check_bool(value: Any) -> Any:
    if type(value) is not bool:
        raise _bad(value, "bool")
    return value


def _check_int(value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(value, "int")
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise ValueError(f"int {value} is outside ±(2**53 - 1), not exact in JavaScript")
    return value


def _check_f64(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _bad(value, "float")


def _check_f32(value: Any) -> Any:
    value = _check_f64(value)
    if (value > F32_MAX or value < -F32_MAX) and not math.isinf(value):
        raise ValueError(f"{value} does not fit an f32 field")
    return value


def _check_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise _bad(value, "str")
    if len(value) * 4 > MAX_STRING_BYTES or not value.isascii():
        encode_str(value)
    return value


CHECKS: dict[TypeCode, Callable[[Any], Any]] = {
    TypeCode.BOOL: _check_bool,
    TypeCode.INT: _check_int,
    TypeCode.F64: _check_f64,
    TypeCode.F32: _check_f32,
    TypeCode.STR: _check_str,
}


def nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check_or_none(value: Any) -> Any:
        return None if value is None else check(value)

    return check_or_none


def encode_str(value: str) -> bytes:
    """uvarint byte count + UTF-8; too long or unencodable text raises ValueError."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string holds a lone surrogate and cannot be UTF-8") from None
    if len(data) > MAX_STRING_BYTES:
        raise ValueError(f"string of {len(data)} UTF-8 bytes exceeds {MAX_STRING_BYTES}")
    return uvarint(len(data)) + data


_F32S = struct.Struct("<f")
_F64S = struct.Struct("<d")
_BOOLS = (b"\x00", b"\x01")


def _enc_bool(value: Any) -> bytes:
    return _BOOLS[1 if value else 0]


def _enc_f32(value: Any) -> bytes:
    return _F32S.pack(value)


def _enc_f64(value: Any) -> bytes:
    return _F64S.pack(value)


def value_encoder(code: TypeCode) -> Callable[[Any], bytes]:
    """The byte encoder of one primitive type (values already checked)."""
    return {
        TypeCode.BOOL: _enc_bool,
        TypeCode.INT: svarint,
        TypeCode.F64: _enc_f64,
        TypeCode.F32: _enc_f32,
        TypeCode.STR: encode_str,
    }[code]


ZEROS: dict[TypeCode, Any] = {
    TypeCode.BOOL: False,
    TypeCode.INT: 0,
    TypeCode.F64: 0.0,
    TypeCode.F32: 0.0,
    TypeCode.STR: "",
}


_INF = math.inf
#: type, low, high: a value of exactly this type within [low, high] needs no check call
FAST: dict[TypeCode, tuple[type, float, float]] = {
    TypeCode.BOOL: (bool, -_INF, _INF),
    TypeCode.INT: (int, -MAX_SAFE_INT, MAX_SAFE_INT),
    TypeCode.F64: (float, -_INF, _INF),
    TypeCode.F32: (float, -F32_MAX, F32_MAX),  # NaN and ±inf take the slow (valid) path
}


def set_op_for(index: int, code: TypeCode) -> Callable[[Any], bytes]:
    """SET of field ``index``: one C call for floats, the common case of moving things."""
    if code is TypeCode.F32:
        return functools.partial(struct.Struct("<Bf").pack, index)
    if code is TypeCode.F64:
        return functools.partial(struct.Struct("<Bd").pack, index)
    head = bytes((index,))
    encode = value_encoder(code)

    def set_op(value: Any) -> bytes:
        return head + encode(value)

    return set_op
