"""netbus.rooms.wire: varints and the bounded reader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import ProtocolError
from netbus.rooms.wire import MAX_SAFE_INT, MAX_UVARINT, StateReader, svarint, uvarint

from .states import SETTINGS


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (2**32 - 1, "ff ff ff ff 0f"),
    ],
)
def test_uvarint_vectors(value: int, hex_: str) -> None:
    assert uvarint(value) == bytes.fromhex(hex_)
    assert StateReader(uvarint(value)).uvarint() == value


@pytest.mark.parametrize(
    ("value", "hex_"),
    [(0, "00"), (-1, "01"), (1, "02"), (-3, "05"), (7, "0e"), (-64, "7f"), (64, "80 01")],
)
def test_svarint_vectors(value: int, hex_: str) -> None:
    assert svarint(value) == bytes.fromhex(hex_)
    assert StateReader(svarint(value)).svarint() == value


@SETTINGS
@given(st.integers(-MAX_SAFE_INT, MAX_SAFE_INT))
def test_svarint_round_trip(value: int) -> None:
    data = svarint(value)
    reader = StateReader(data)
    assert reader.svarint() == value and reader.at_end and len(data) <= 8


@SETTINGS
@given(st.integers(0, MAX_UVARINT))
def test_uvarint_round_trip(value: int) -> None:
    reader = StateReader(uvarint(value))
    assert reader.uvarint() == value and reader.at_end


@pytest.mark.parametrize(
    ("hex_", "method", "detail"),
    [
        ("", "u8", "truncated"),
        ("80", "uvarint", "truncated varint"),
        ("80 00", "uvarint", "overlong"),
        ("ff ff ff ff ff 01", "uvarint", "too long"),
        ("ff ff ff ff 1f", "uvarint", "out of range"),
        ("fe ff ff ff ff ff ff 7f", "svarint", "out of range"),
        ("ff ff ff ff ff ff ff ff 01", "svarint", "too long"),
        ("02", "boolean", "bool byte"),
        ("00 00 80", "f32", "truncated f32"),
        ("00", "f64", "truncated f64"),
        ("02 c3 28", "string", "UTF-8"),
        ("03 61", "string", "truncated string"),
        ("81 20", "string", "exceeds"),
    ],
)
def test_reader_failures(hex_: str, method: str, detail: str) -> None:
    with pytest.raises(ProtocolError, match=detail) as info:
        getattr(StateReader(bytes.fromhex(hex_)), method)()
    assert info.value.kind == "bad_state"


def test_masks() -> None:
    assert StateReader(bytes.fromhex("03")).mask(2) == 3
    widest = bytes.fromhex("80" * 18 + "03")
    assert StateReader(widest).mask(128) == 3 << 126
    for hex_ in ("00", "04"):
        with pytest.raises(ProtocolError, match="mask"):
            StateReader(bytes.fromhex(hex_)).mask(2)
