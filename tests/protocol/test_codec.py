"""netbus.protocol.codec: u16-prefixed UTF-8 strings, JSON ``{"0": value}``, BUF fields (§3)."""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol import (
    HEADER_SIZE,
    I16,
    I32,
    STR,
    U16,
    U32,
    FieldsCodec,
    Reader,
    ScalarCodec,
    Writer,
    decode_json_body,
    encode_json_body,
)

from .strategies import FIELD_VALUES, JSON_VALUE, SETTINGS, TEXT, ref_field, same

KINDS = [I16, U16, I32, U32, STR]
INT_RANGES = {
    I16: (-(2**15), 2**15 - 1),
    U16: (0, 2**16 - 1),
    I32: (-(2**31), 2**31 - 1),
    U32: (0, 2**32 - 1),
}


def json_body(text: bytes) -> bytes:
    """A JSON body from raw text bytes, count computed independently of the codec."""
    return len(text).to_bytes(2, "little") + text


def reader(body: bytes) -> Reader:
    return Reader(body, 0)


def kind_of(call: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        call()
    return info.value.kind


# ------------------------------------------------------------------------------ Reader/Writer


def test_reader_starts_after_the_header() -> None:
    buf = bytes(HEADER_SIZE) + b"\x05\x00"
    assert Reader(buf).u16() == 5


@pytest.mark.parametrize("kind", KINDS)
def test_field_boundaries(kind: str) -> None:
    values = ["", "遊客", "\x00", "😀" * 3] if kind == STR else list(INT_RANGES[kind])
    for value in values:
        data = getattr(Writer(), kind)(value).getvalue()
        assert data == ref_field(kind, value)
        r = reader(data)
        assert getattr(r, kind)() == value
        assert r.remaining == 0
        r.expect_end()


@pytest.mark.parametrize("kind", [I16, U16, I32, U32])
def test_int_out_of_range(kind: str) -> None:
    low, high = INT_RANGES[kind]
    for value in (low - 1, high + 1):
        with pytest.raises(LocalProtocolError):
            getattr(Writer(), kind)(value)


@SETTINGS
@given(
    st.lists(st.sampled_from(KINDS), max_size=8).flatmap(
        lambda kinds: st.tuples(st.just(kinds), st.tuples(*(FIELD_VALUES[k] for k in kinds)))
    )
)
def test_fields_round_trip(case: tuple[list[str], tuple[Any, ...]]) -> None:
    kinds, values = case
    writer = Writer()
    for kind, value in zip(kinds, values, strict=True):
        getattr(writer, kind)(value)
    data = writer.getvalue()
    assert data == b"".join(ref_field(k, v) for k, v in zip(kinds, values, strict=True))
    r = reader(data)
    assert [getattr(r, kind)() for kind in kinds] == list(values)
    r.expect_end()


@pytest.mark.parametrize("kind", KINDS)
def test_short_field(kind: str) -> None:
    full = ref_field(kind, "ab" if kind == STR else 1)
    for size in range(len(full)):
        assert kind_of(lambda size=size: getattr(reader(full[:size]), kind)()) == "short_body"


def test_string_count_overruns_body() -> None:
    assert kind_of(lambda: reader(b"\x05\x00abcd").str()) == "short_body"
    assert kind_of(lambda: reader(b"\xff\xff").str()) == "short_body"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",  # never valid
        b"\x80",  # lone continuation byte
        b"\xc3\x28",  # lead byte, then not a continuation
        b"\xe9\x81",  # 遊 cut after 2 of its 3 bytes
        b"\xf0\x9f\x98",  # 😀 cut after 3 of its 4 bytes
        b"\xc0\x80",  # overlong U+0000
        b"\xe0\x80\xaf",  # overlong "/"
        b"\xed\xa0\x80",  # encoded surrogate U+D800
        b"\xed\xbf\xbf",  # encoded surrogate U+DFFF
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xf8\x88\x80\x80\x80",  # 5-byte form
    ],
)
def test_invalid_utf8_in_str(raw: bytes) -> None:
    assert kind_of(lambda: reader(len(raw).to_bytes(2, "little") + raw).str()) == "bad_utf8"


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("\x7f", b"\x7f"),
        ("\x00", b"\x00"),
        ("é", b"\xc3\xa9"),
        ("遊客", b"\xe9\x81\x8a\xe5\xae\xa2"),
        ("😀", b"\xf0\x9f\x98\x80"),
        ("\uffff", b"\xef\xbf\xbf"),
        ("\U0010ffff", b"\xf4\x8f\xbf\xbf"),
    ],
)
def test_str_bytes(text: str, raw: bytes) -> None:
    data = Writer().str(text).getvalue()
    assert data == len(raw).to_bytes(2, "little") + raw  # the count is of UTF-8 bytes
    assert reader(data).str() == text


@SETTINGS
@given(TEXT)
def test_str_round_trip(text: str) -> None:
    data = Writer().str(text).getvalue()
    assert data == ref_field(STR, text)
    assert reader(data).str() == text


def test_str_size_limit() -> None:
    assert len(Writer().str("a" * 0xFFFF).getvalue()) == 0x10001
    with pytest.raises(LocalProtocolError):
        Writer().str("a" * 0x10000)
    with pytest.raises(LocalProtocolError):
        Writer().str("😀" * 0x4000)  # 16384 characters, 65536 bytes


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", 5, None, b"bytes"])
def test_str_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        Writer().str(value)


def test_expect_end() -> None:
    r = reader(b"\x01\x00\x02")
    assert r.i16() == 1
    assert r.remaining == 1
    assert kind_of(r.expect_end) == "long_body"


def test_reader_on_views() -> None:
    body = ref_field(STR, "遊客") + ref_field(I16, -3)
    for buf in (body, bytearray(body), memoryview(body)):
        r = reader(buf)  # type: ignore[arg-type]
        assert (r.str(), r.i16()) == ("遊客", -3)


# ---------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, b'{"0":null}'),
        (1, b'{"0":1}'),
        (-101, b'{"0":-101}'),
        (True, b'{"0":true}'),
        (1.5, b'{"0":1.5}'),
        ("遊客", '{"0":"遊客"}'.encode()),
        ("😀", b'{"0":"\xf0\x9f\x98\x80"}'),
        ("\x7f", b'{"0":"\x7f"}'),
        ('\x00\n"\\', b'{"0":"\\u0000\\n\\"\\\\"}'),
        ([], b'{"0":[]}'),
        ({"uname": "a", "usex": 0}, b'{"0":{"uname":"a","usex":0}}'),
    ],
)
def test_json_bytes(value: Any, text: bytes) -> None:
    """Compact UTF-8 with no ASCII escaping: the form the golden vectors use."""
    assert encode_json_body(value) == json_body(text)
    assert same(decode_json_body(json_body(text), 0), value)


@SETTINGS
@given(JSON_VALUE)
def test_json_round_trip(value: Any) -> None:
    body = encode_json_body(value)
    assert int.from_bytes(body[:2], "little") == len(body) - 2
    assert same(decode_json_body(body, 0), value)
    # The text is standard JSON: an independent parser reads the same document.
    assert same(json.loads(body[2:].decode("utf-8")), {"0": value})
    assert same(decode_json_body(bytes(HEADER_SIZE) + body), value)
    assert same(decode_json_body(memoryview(bytearray(body)), 0), value)


@SETTINGS
@given(JSON_VALUE)
def test_json_from_other_encoders(value: Any) -> None:
    """Whitespace and escaping chosen by a client (here: stdlib, ASCII-escaped) decode too."""
    text = json.dumps({"0": value}, indent=1, ensure_ascii=True).encode()
    if len(text) <= 0xFFFF:
        assert same(decode_json_body(json_body(text), 0), value)


def test_json_int_range() -> None:
    for value in (-(2**63), 2**63, 2**64 - 1):
        assert same(decode_json_body(encode_json_body(value), 0), value)
    # Beyond 64 bits a number decodes as a double, like JSON.parse in the original.
    assert decode_json_body(json_body(b'{"0":18446744073709551616}'), 0) == 2.0**64


@pytest.mark.parametrize(
    "value",
    [
        2**64,
        -(2**63) - 1,
        "\ud800",
        ["ok", "\udc00"],
        {1: "int key"},
        {"k": object()},
        b"raw",
        {1, 2},
    ],
)
def test_json_encode_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_json_body(value)


def test_json_encode_size_limit() -> None:
    assert len(encode_json_body("a" * (0xFFFF - 8))) == 0xFFFF + 2  # {"0":"…"} is 8 + n
    with pytest.raises(LocalProtocolError):
        encode_json_body("a" * (0xFFFF - 7))


def test_json_encode_non_finite_floats_become_null() -> None:
    """netbus (orjson): NaN and ±Infinity encode as null; they are never sent as NaN."""
    for value in (float("nan"), float("inf"), float("-inf")):
        assert encode_json_body(value) == json_body(b'{"0":null}')


def test_json_encodes_int_enums_as_numbers() -> None:
    class Status(IntEnum):
        IN_ROOM = -101

    assert encode_json_body(Status.IN_ROOM) == json_body(b'{"0":-101}')


def test_json_extra_keys_and_duplicates() -> None:
    """netbus: keys other than "0" are ignored; a duplicated "0" keeps the last (as JSON.parse)."""
    assert decode_json_body(json_body(b'{"1":2,"0":3}'), 0) == 3
    assert decode_json_body(json_body(b'{"0":1,"0":2}'), 0) == 2
    assert decode_json_body(json_body(b' \r\n\t{ "0" : [ ] } \n'), 0) == []


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "short_body"),
        (b"\x07", "short_body"),
        (b"\x08\x00" + b'{"0":1}', "json_length"),  # count larger than the text
        (b"\x06\x00" + b'{"0":1}', "json_length"),  # count smaller than the text
        (b"\x00\x00", "bad_json"),  # empty text
        (json_body(b'{"0":1'), "bad_json"),  # truncated
        (json_body(b'{"0":'), "bad_json"),
        (json_body(b'{"0":"abc'), "bad_json"),
        (json_body(b'{"0":1}x'), "bad_json"),  # trailing garbage
        (json_body(b'{"0":1}{"0":2}'), "bad_json"),
        (json_body(b"[1]"), "bad_json"),  # top level is not an object
        (json_body(b'"0"'), "bad_json"),
        (json_body(b"1"), "bad_json"),
        (json_body(b"null"), "bad_json"),
        (json_body(b"true"), "bad_json"),
        (json_body(b'{"1":2}'), "bad_json"),  # missing "0"
        (json_body(b"{}"), "bad_json"),
        (json_body(b'{"00":1}'), "bad_json"),
        (json_body(b'{"0":NaN}'), "bad_json"),
        (json_body(b'{"0":Infinity}'), "bad_json"),
        (json_body(b'{"0":-Infinity}'), "bad_json"),
        (json_body(b'{"0":1e400}'), "bad_json"),
        (json_body(b'{"0":[NaN]}'), "bad_json"),
        (json_body(b'{"0":01}'), "bad_json"),
        (json_body(b"{'0':1}"), "bad_json"),
        (json_body(b'{"0":"\\ud800"}'), "bad_json"),  # lone surrogate escape
        (json_body(b'{"0":"\x01"}'), "bad_json"),  # raw control character
        (json_body(b'\xef\xbb\xbf{"0":1}'), "bad_json"),  # a BOM is valid UTF-8, bad JSON
        (json_body(b'{"0":"\xff"}'), "bad_utf8"),
        (json_body(b'{"0":"\xc0\x80"}'), "bad_utf8"),
        (json_body(b'{"0":"\xed\xa0\x80"}'), "bad_utf8"),
        (json_body(b'{"0":"\xe9\x81"}'), "bad_utf8"),
        (json_body(b'{"\xff":1,"0":1}'), "bad_utf8"),
    ],
)
def test_json_malformed(body: bytes, kind: str) -> None:
    assert kind_of(lambda: decode_json_body(body, 0)) == kind
    assert kind_of(lambda: decode_json_body(bytes(HEADER_SIZE) + body)) == kind


def test_stdlib_would_have_accepted_nan() -> None:
    """The reason NaN is tested at all: Python's json accepts it, Node's JSON.parse does not."""
    assert json.loads('{"0":NaN}')["0"] != json.loads('{"0":NaN}')["0"]
    assert kind_of(lambda: decode_json_body(json_body(b'{"0":NaN}'), 0)) == "bad_json"


@SETTINGS
@given(st.binary(max_size=64))
def test_json_arbitrary_bytes(raw: bytes) -> None:
    for body in (raw, json_body(raw), json_body(b'{"0":' + raw + b"}")):
        try:
            decode_json_body(body, 0)
        except ProtocolError as exc:
            assert exc.kind in {"short_body", "json_length", "bad_json", "bad_utf8"}


@SETTINGS
@given(JSON_VALUE, st.data())
def test_json_truncated_or_extended(value: Any, data: st.DataObject) -> None:
    body = encode_json_body(value)
    cut = data.draw(st.integers(0, len(body) - 1), label="cut")
    with pytest.raises(ProtocolError):
        decode_json_body(body[:cut], 0)
    with pytest.raises(ProtocolError):
        decode_json_body(body + data.draw(st.binary(min_size=1, max_size=4)), 0)


# ---------------------------------------------------------------------- FieldsCodec/ScalarCodec


def test_fields_codec() -> None:
    codec = FieldsCodec(("uname", STR), ("usex", I16), ("n", U32))
    value = {"uname": "遊客", "usex": 1, "n": 2**32 - 1}
    data = codec.encode(value)
    assert data == ref_field(STR, "遊客") + ref_field(I16, 1) + ref_field(U32, 2**32 - 1)
    assert codec.decode(reader(data)) == value
    # Extra keys are ignored on encode; order comes from the layout, not the dict.
    assert codec.encode({"n": 2**32 - 1, "usex": 1, "uname": "遊客", "extra": 0}) == data


def test_empty_fields_codec() -> None:
    codec = FieldsCodec()
    assert codec.encode(None) == b""
    assert codec.decode(reader(b"")) is None
    assert kind_of(lambda: codec.decode(reader(b"\x00"))) == "long_body"


@pytest.mark.parametrize(
    "value",
    [
        None,
        ["遊客", 1],
        {"uname": "a"},  # missing field
        {"uname": "a", "usex": "1"},  # wrong type
        {"uname": "a", "usex": 1.0},
        {"uname": "a", "usex": True},  # netbus: bool is not an int on the wire
        {"uname": 5, "usex": 1},
        {"uname": "a", "usex": 40000},  # out of i16 range
        {"uname": "\ud800", "usex": 1},
    ],
)
def test_fields_codec_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        FieldsCodec(("uname", STR), ("usex", I16)).encode(value)


def test_scalar_codec() -> None:
    assert ScalarCodec(I16).encode(-101) == b"\x9b\xff"
    assert ScalarCodec(I16).decode(reader(b"\x9b\xff")) == -101
    assert ScalarCodec(STR).encode("😀") == b"\x04\x00\xf0\x9f\x98\x80"
    assert kind_of(lambda: ScalarCodec(I16).decode(reader(b"\x01\x00\x00"))) == "long_body"
    assert kind_of(lambda: ScalarCodec(I16).decode(reader(b"\x01"))) == "short_body"


def test_scalar_codec_accepts_int_enums() -> None:
    """Status codes are IntEnums (STYLE 2.2); BUF must encode them like plain ints."""

    class Status(IntEnum):
        IN_ROOM = -101

    assert ScalarCodec(I16).encode(Status.IN_ROOM) == b"\x9b\xff"
    assert FieldsCodec(("s", I16)).encode({"s": Status.IN_ROOM}) == b"\x9b\xff"


@pytest.mark.parametrize("value", [None, "1", 1.0, True, 2**15])
def test_scalar_codec_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        ScalarCodec(I16).encode(value)


def test_unknown_field_kind() -> None:
    with pytest.raises(ValueError):
        FieldsCodec(("x", "i64"))
    with pytest.raises(ValueError):
        ScalarCodec("f32")


@SETTINGS
@given(
    st.lists(st.tuples(TEXT, st.sampled_from(KINDS)), max_size=5, unique_by=lambda f: f[0]).flatmap(
        lambda fields: st.tuples(
            st.just(fields),
            st.fixed_dictionaries({name: FIELD_VALUES[kind] for name, kind in fields}),
        )
    )
)
def test_fields_codec_round_trip(case: tuple[list[tuple[str, str]], dict[str, Any]]) -> None:
    fields, value = case
    codec = FieldsCodec(*fields)
    data = codec.encode(value)
    assert data == b"".join(ref_field(kind, value[name]) for name, kind in fields)
    assert codec.decode(reader(data)) == (value if fields else None)


@SETTINGS
@given(st.lists(st.sampled_from(KINDS), max_size=4), st.binary(max_size=40))
def test_fields_codec_arbitrary_bytes(kinds: list[str], raw: bytes) -> None:
    codec = FieldsCodec(*((str(i), kind) for i, kind in enumerate(kinds)))
    try:
        value = codec.decode(reader(raw))
    except ProtocolError as exc:
        assert exc.kind in {"short_body", "long_body", "bad_utf8"}
    else:
        assert codec.encode(value) == raw  # whatever decodes re-encodes to the same bytes


def test_reference_helpers_are_independent() -> None:
    """Sanity check of the test's own reference encoder against bare struct."""
    assert ref_field(I16, -2) == struct.pack("<h", -2) == b"\xfe\xff"
    assert ref_field(STR, "遊") == b"\x03\x00\xe9\x81\x8a"
