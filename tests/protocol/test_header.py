"""netbus.protocol.header: the 10-byte little-endian cmd_buf header (PROTOCOL.md §1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol import (
    HEADER_SIZE,
    MAX_CMD_BUF,
    UTAG_OFFSET,
    Header,
    ProtoType,
    pack_header,
    read_utag,
    unpack_header,
    write_utag,
)

from .strategies import SETTINGS, ref_header

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
PROTO = st.sampled_from([1, 2])


def test_constants() -> None:
    assert HEADER_SIZE == 10
    assert UTAG_OFFSET == 4
    assert MAX_CMD_BUF == 65533  # a u16 frame length of 65535 minus its own 2 bytes
    assert ProtoType.JSON == 1
    assert ProtoType.BUF == 2


def test_little_endian_layout() -> None:
    data = pack_header(0x0102, 0x0304, 0x05060708, 2)
    assert data == bytes.fromhex("0201 0403 08070605 0200")
    assert unpack_header(data) == Header(0x0102, 0x0304, 0x05060708, 2)


def test_fields_by_name() -> None:
    header = unpack_header(bytes.fromhex("0200 0100 01000080 0100"))
    assert (header.stype, header.ctype, header.utag, header.proto_type) == (2, 1, 0x80000001, 1)


@SETTINGS
@given(U16, U16, U32, PROTO, st.binary(max_size=32))
def test_round_trip(stype: int, ctype: int, utag: int, proto_type: int, body: bytes) -> None:
    data = pack_header(stype, ctype, utag, proto_type)
    assert data == ref_header(stype, ctype, utag, proto_type)
    for buf in (data + body, bytearray(data + body), memoryview(data + body)):
        assert unpack_header(buf) == (stype, ctype, utag, proto_type)


@pytest.mark.parametrize("proto_type", [0, 3, 4, 0x100, 0x0201, 0x7FFF, 0x8000, 0xFFFF])
def test_unknown_proto_type(proto_type: int) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_header(pack_header(1, 1, 0, proto_type) + b"\x0a\x00" + b'{"0":null}')
    assert info.value.kind == "bad_proto_type"


@SETTINGS
@given(U16.filter(lambda p: p not in (1, 2)))
def test_any_other_proto_type(proto_type: int) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_header(pack_header(0, 0, 0, proto_type))
    assert info.value.kind == "bad_proto_type"


@pytest.mark.parametrize("size", range(HEADER_SIZE))
def test_short_header(size: int) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_header(pack_header(1, 1, 0, 1)[:size])
    assert info.value.kind == "short_header"


@SETTINGS
@given(st.binary(max_size=24))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        header = unpack_header(data)
    except ProtocolError as exc:
        assert exc.kind in {"short_header", "bad_proto_type"}
    else:
        assert len(data) >= HEADER_SIZE
        assert header.proto_type in (1, 2)


@pytest.mark.parametrize(
    "fields",
    [
        (-1, 0, 0, 1),
        (0x10000, 0, 0, 1),
        (0, -1, 0, 1),
        (0, 0, -1, 1),
        (0, 0, 2**32, 1),
        (0, 0, 0, -1),
    ],
)
def test_pack_out_of_range(fields: tuple[int, int, int, int]) -> None:
    with pytest.raises(LocalProtocolError):
        pack_header(*fields)


def test_pack_does_not_validate_proto_type() -> None:
    """netbus: pack_header stays permissive so tests can build malformed packets."""
    assert pack_header(0, 0, 0, 3)[8:] == b"\x03\x00"


@SETTINGS
@given(U16, U16, U32, U32, PROTO, st.binary(max_size=16))
def test_utag_rewrite_in_place(
    stype: int, ctype: int, utag: int, new: int, proto_type: int, body: bytes
) -> None:
    buf = bytearray(pack_header(stype, ctype, utag, proto_type) + body)
    assert read_utag(buf) == utag
    write_utag(buf, new)
    assert read_utag(buf) == new
    assert bytes(buf) == pack_header(stype, ctype, new, proto_type) + body


def test_utag_rewrite_through_a_view() -> None:
    """The gateway rewrites utag inside a larger buffer (a frame) without copying."""
    frame = bytearray(b"\x0e\x00" + pack_header(1, 5, 0, 2) + b"\x00\x00")
    view = memoryview(frame)[2:]
    write_utag(view, 0x80000001)
    assert frame == bytearray(b"\x0e\x00" + pack_header(1, 5, 0x80000001, 2) + b"\x00\x00")
    assert read_utag(view) == 0x80000001
    assert unpack_header(view).utag == 0x80000001


@pytest.mark.parametrize("utag", [-1, 2**32])
def test_write_utag_out_of_range(utag: int) -> None:
    buf = bytearray(pack_header(1, 1, 7, 1))
    with pytest.raises(LocalProtocolError):
        write_utag(buf, utag)
    assert read_utag(buf) == 7


def test_write_utag_short_buffer() -> None:
    buf = bytearray(6)
    with pytest.raises(LocalProtocolError):
        write_utag(buf, 1)
    assert buf == bytearray(6)
