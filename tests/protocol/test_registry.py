"""`CodecRegistry` and the layout table that services declare (docs/protocol.md §5-§7).

`CODECS` here is built the way every client builds its registry: the control channel plus the
layouts that `TalkroomService` and `AuthService` declare with ``@command`` and ``pushes``. The
table below is transcribed from the contract by hand, so a declaration that drifts fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol import (
    MAX_CMD_BUF,
    STR,
    U32,
    USER_DISCONNECT,
    CodecRegistry,
    Direction,
    FieldsCodec,
    FrameDecoder,
    GatewayCmd,
    ProtoType,
    RequestStatus,
    encode_frame,
    unpack_header,
)
from netbus.protocol.codec import ScalarCodec
from netbus.protocol.control import CONTROL_CODECS
from netbus.protocol.registry import describe_layout, layout
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.helpers import CODECS

from .strategies import FIELD_VALUES, JSON_VALUE, SETTINGS, ref_field, ref_header, same, split_at

S, C = Direction.TO_SERVER, Direction.TO_CLIENT
BUF, JSON = ProtoType.BUF, ProtoType.JSON
USER = (("uname", "str"), ("usex", "i16"))

#: Every BUF layout, transcribed from PROTOCOL.md §4.1 and docs/protocol.md (stype 0):
#: key -> ("fields", [(name, kind), ...]) decoded to a dict (None when empty),
#:        ("scalar", kind) decoded to the bare value, or ("send_msg_reply", None).
LAYOUTS: dict[tuple[int, int, Direction], tuple[str, Any]] = {
    (1, 1, S): ("fields", USER),  # Enter: str uname, i16 usex
    (1, 1, C): ("scalar", "i16"),  # Enter reply: i16 status
    (1, 2, S): ("fields", ()),  # Exit: (none)
    (1, 2, C): ("scalar", "i16"),
    (1, 3, C): ("fields", USER),  # UserArrived
    (1, 4, C): ("fields", USER),  # UserExit
    (1, 5, S): ("scalar", "str"),  # SendMsg: str msg
    (1, 5, C): ("send_msg_reply", None),
    (1, 6, C): ("fields", (("0", "str"), ("1", "i16"), ("2", "str"))),  # UserMsg
    (0, 1, S): ("fields", ()),  # HEARTBEAT
    (0, 1, C): ("fields", ()),
    (0, 2, C): ("fields", (("stype", "u16"), ("ctype", "u16"))),  # SERVICE_UNAVAILABLE
    (0, 3, C): ("fields", (("reason", "str"),)),  # SHUTDOWN
    (0, 4, C): ("fields", (("dropped", "u16"),)),  # RATE_LIMITED
    (0, 5, C): ("fields", (("stype", "u16"), ("ctype", "u16"))),  # LOGIN_REQUIRED
    (0, 6, C): ("fields", (("stype", "u16"), ("ctype", "u16"))),  # SERVICE_AVAILABLE
    (0, 10, C): ("fields", (("stype", "u16"), ("ctype", "u16"), ("status", "i16"))),  # FAILED
    (2, 2, C): ("fields", ()),  # RELOGIN: netbus accepts an empty BUF body too
}


def layout_value(key: tuple[int, int, Direction]) -> st.SearchStrategy[Any]:
    shape, spec = LAYOUTS[key]
    if shape == "scalar":
        return FIELD_VALUES[spec]
    if shape == "fields":
        if not spec:
            return st.none()
        return st.fixed_dictionaries({name: FIELD_VALUES[kind] for name, kind in spec})
    ok = st.fixed_dictionaries(
        {
            "0": st.just(1),
            "1": FIELD_VALUES["str"],
            "2": FIELD_VALUES["i16"],
            "3": FIELD_VALUES["str"],
        }
    )
    error = FIELD_VALUES["i16"].filter(lambda s: s != 1).map(lambda s: {"0": s})
    return ok | error


def ref_body(key: tuple[int, int, Direction], value: Any) -> bytes:
    """Reference BUF encoder, from the layout table above and bare struct."""
    shape, spec = LAYOUTS[key]
    if shape == "scalar":
        return ref_field(spec, value)
    if shape == "fields":
        return b"".join(ref_field(kind, value[name]) for name, kind in spec)
    body = ref_field("i16", value["0"])
    if value["0"] == 1:
        body += ref_field("str", value["1"]) + ref_field("i16", value["2"])
        body += ref_field("str", value["3"])
    return body


# ---------------------------------------------------------------------------------- numbers


def test_numbers_match_protocol_md() -> None:
    assert (Stype.Gateway, Stype.TalkRoom, Stype.Auth) == (0, 1, 2)
    assert [int(c) for c in TalkroomCmd] == [1, 2, 3, 4, 5, 6]
    assert [c.name for c in TalkroomCmd] == [
        "Enter",
        "Exit",
        "UserArrived",
        "UserExit",
        "SendMsg",
        "UserMsg",
    ]
    assert (AuthCmd.GUEST_LOGIN, AuthCmd.RELOGIN) == (1, 2)
    assert USER_DISCONNECT == 10000
    assert {s.name: int(s) for s in TalkroomStatus} == {
        "OK": 1,
        "INVALID_OPT": -100,
        "IN_ROOM": -101,
        "NOT_IN_ROOM": -102,
    }
    assert {s.name: int(s) for s in AuthStatus} == {
        "OK": 1,
        "SYSTEM_ERROR": -100,
        "INVALID_PARAMS": -101,
        "INVALID_OPT": -102,
        "ILLEGAL_ACCOUNT": -103,
    }


def test_gateway_control_numbers() -> None:
    """netbus-designed (docs/protocol.md §7): stype 0, ctypes 1..10."""
    assert {c.name: int(c) for c in GatewayCmd} == {
        "HEARTBEAT": 1,
        "SERVICE_UNAVAILABLE": 2,
        "SHUTDOWN": 3,
        "RATE_LIMITED": 4,
        "LOGIN_REQUIRED": 5,
        "SERVICE_AVAILABLE": 6,
        "SERVICE_BUSY": 7,
        "RESUME": 8,
        "RESUME_LOST": 9,
        "REQUEST_FAILED": 10,
    }
    assert {s.name: int(s) for s in RequestStatus} == {
        "UNKNOWN_COMMAND": -1,
        "BAD_REQUEST": -2,
        "SERVER_ERROR": -3,
        "SERVICE_BUSY": -4,
        "NOT_ALLOWED": -5,
    }


# ------------------------------------------------------------------------------ layout table


def test_layout_table_is_exactly_the_contract() -> None:
    """No layout missing, none extra (§3.3: a command without a layout is JSON-only)."""
    ctypes = [*range(0, 12), USER_DISCONNECT, 0xFFFF]
    for stype in range(0, 4):
        for ctype in ctypes:
            for direction in Direction:
                has = CODECS.buf_codec(stype, ctype, direction) is not None
                assert has == ((stype, ctype, direction) in LAYOUTS), (stype, ctype, direction)


@pytest.mark.parametrize(
    ("stype", "ctype", "direction"),
    [
        (2, 1, S),
        (2, 1, C),
        (2, 2, S),
        (1, USER_DISCONNECT, S),
        (2, USER_DISCONNECT, S),
        (1, 3, S),
        (1, 6, S),
        (0, 2, S),
        (9, 1, S),
    ],
)
def test_json_only(stype: int, ctype: int, direction: Direction) -> None:
    with pytest.raises(LocalProtocolError):
        CODECS.encode(stype, ctype, None, proto_type=BUF, direction=direction)
    with pytest.raises(ProtocolError) as info:
        CODECS.decode_body(ref_header(stype, ctype, 0, 2), stype, ctype, BUF, direction)
    assert info.value.kind == "no_buf_layout"


@pytest.mark.parametrize("key", list(LAYOUTS), ids=str)
@SETTINGS
@given(data=st.data())
def test_buf_round_trip(key: tuple[int, int, Direction], data: st.DataObject) -> None:
    stype, ctype, direction = key
    value = data.draw(layout_value(key), label="value")
    utag = data.draw(st.integers(0, 2**32 - 1), label="utag")
    cmd_buf = CODECS.encode(stype, ctype, value, utag=utag, proto_type=BUF, direction=direction)
    assert cmd_buf == ref_header(stype, ctype, utag, 2) + ref_body(key, value)
    header = unpack_header(cmd_buf)
    assert header == (stype, ctype, utag, BUF)
    assert CODECS.decode_body(cmd_buf, stype, ctype, BUF, direction) == value


@pytest.mark.parametrize("key", list(LAYOUTS), ids=str)
@SETTINGS
@given(raw=st.binary(max_size=40))
def test_buf_arbitrary_bodies(key: tuple[int, int, Direction], raw: bytes) -> None:
    stype, ctype, direction = key
    cmd_buf = ref_header(stype, ctype, 0, 2) + raw
    try:
        value = CODECS.decode_body(cmd_buf, stype, ctype, BUF, direction)
    except ProtocolError as exc:
        assert exc.kind in {"short_body", "long_body", "bad_utf8"}
    else:
        encoded = CODECS.encode(stype, ctype, value, proto_type=BUF, direction=direction)
        assert encoded == cmd_buf


@pytest.mark.parametrize("key", list(LAYOUTS), ids=str)
@SETTINGS
@given(data=st.data())
def test_buf_truncated_or_extended(key: tuple[int, int, Direction], data: st.DataObject) -> None:
    stype, ctype, direction = key
    value = data.draw(layout_value(key), label="value")
    cmd_buf = CODECS.encode(stype, ctype, value, proto_type=BUF, direction=direction)
    extra = data.draw(st.binary(min_size=1, max_size=4), label="extra")
    with pytest.raises(ProtocolError) as info:
        CODECS.decode_body(cmd_buf + extra, stype, ctype, BUF, direction)
    # A valid body plus bytes is "too long", unless a SendMsg error status became OK's prefix.
    assert info.value.kind in {"long_body", "short_body", "bad_utf8"}
    if len(cmd_buf) > 10:
        cut = data.draw(st.integers(10, len(cmd_buf) - 1), label="cut")
        with pytest.raises(ProtocolError) as info:
            CODECS.decode_body(cmd_buf[:cut], stype, ctype, BUF, direction)
        assert info.value.kind == "short_body"


@SETTINGS
@given(
    stype=st.sampled_from([0, 1, 2, 9]),
    ctype=st.sampled_from([1, 2, 3, 4, 5, 6, USER_DISCONNECT]),
    direction=st.sampled_from(Direction),
    value=JSON_VALUE,
    utag=st.integers(0, 2**32 - 1),
)
def test_json_round_trip_any_command(
    stype: int, ctype: int, direction: Direction, value: Any, utag: int
) -> None:
    """JSON needs no layout: any command carries any JSON value, null included."""
    cmd_buf = CODECS.encode(stype, ctype, value, utag=utag, direction=direction)
    assert cmd_buf[:10] == ref_header(stype, ctype, utag, 1)
    assert same(CODECS.decode_body(cmd_buf, stype, ctype, JSON, direction), value)


# ------------------------------------------------------------------------- SendMsg reply


def test_send_msg_reply_forms() -> None:
    ok = {"0": 1, "1": "遊客", "2": 1, "3": "hi 😀"}
    data = CODECS.encode(1, 5, ok, proto_type=BUF, direction=C)
    uname, msg = "遊客".encode(), "hi 😀".encode()
    assert data[10:] == b"\x01\x00\x06\x00" + uname + b"\x01\x00\x07\x00" + msg
    # The error form carries the status alone, even if other keys are present.
    error = CODECS.encode(1, 5, {"0": -100, "1": "ignored"}, proto_type=BUF, direction=C)
    assert error[10:] == b"\x9c\xff"
    assert CODECS.decode_body(error, 1, 5, BUF, C) == {"0": -100}
    enum_ok = {"0": TalkroomStatus.OK, "1": "遊客", "2": 1, "3": "hi 😀"}
    assert CODECS.encode(1, 5, enum_ok, proto_type=BUF, direction=C) == data


@pytest.mark.parametrize(
    "value",
    [
        {"0": 1},  # OK needs uname, usex, msg
        {"0": 1, "1": "a", "2": 0},
        {"0": 1, "1": "a", "2": "0", "3": "m"},
        {"0": 1, "1": "a", "2": True, "3": "m"},
        {"0": True, "1": "a", "2": 0, "3": "m"},
        {"0": "1"},
        {"1": "a"},
        -100,
        None,
    ],
)
def test_send_msg_reply_refuses(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        CODECS.encode(1, 5, value, proto_type=BUF, direction=C)


# ---------------------------------------------------------------------- CodecRegistry


def test_encode_checks_the_cmd_buf_size() -> None:
    biggest = "a" * (MAX_CMD_BUF - 12)  # header + str count + text = 65533
    data = CODECS.encode(1, 5, biggest, proto_type=BUF, direction=S)
    assert len(data) == MAX_CMD_BUF
    assert FrameDecoder().feed(encode_frame(data)) == [data]
    with pytest.raises(LocalProtocolError):
        CODECS.encode(1, 5, biggest + "a", proto_type=BUF, direction=S)
    with pytest.raises(LocalProtocolError):
        CODECS.encode(1, 5, biggest, proto_type=JSON, direction=S)  # 8 more bytes of JSON


@pytest.mark.parametrize("proto_type", [0, 3, 0xFFFF])
def test_encode_unknown_proto_type(proto_type: int) -> None:
    with pytest.raises(LocalProtocolError):
        CODECS.encode(1, 1, 1, proto_type=proto_type, direction=C)


@pytest.mark.parametrize(("stype", "ctype", "utag"), [(-1, 1, 0), (1, 0x10000, 0), (1, 1, 2**32)])
def test_encode_header_out_of_range(stype: int, ctype: int, utag: int) -> None:
    with pytest.raises(LocalProtocolError):
        CODECS.encode(stype, ctype, None, utag=utag, direction=S)


def test_registries_combine_without_changing() -> None:
    extra = CodecRegistry.of([(9, 1, [("id", U32), ("name", STR)], None)])
    registry = CODECS | extra
    value = {"id": 7, "name": "遊客"}
    data = registry.encode(9, 1, value, proto_type=BUF, direction=S)
    assert registry.decode_body(data, 9, 1, BUF, S) == value
    assert registry.buf_codec(9, 1, C) is None
    assert CODECS.buf_codec(9, 1, S) is None  # both operands are untouched
    assert len(registry) == len(CODECS) + 1
    assert registry.buf_codec(1, 1, S) is CODECS.buf_codec(1, 1, S)
    assert CodecRegistry().buf_codec(1, 1, S) is None and len(CodecRegistry()) == 0
    assert not hasattr(registry, "register")  # no mutation API at all
    assert registry.only([9]) == extra and len(registry.only([0])) == len(CONTROL_CODECS)


def test_conflicting_declarations_are_refused() -> None:
    one = CodecRegistry.of([(9, 1, [("id", U32)], None)])
    same_again = CodecRegistry.of([(9, 1, FieldsCodec(("id", U32)), None)])
    assert one | same_again == one  # an equal layout declared twice is fine
    with pytest.raises(ValueError, match=r"\(9, 1\) TO_SERVER is declared twice"):
        _ = one | CodecRegistry.of([(9, 1, [("id", U32), ("x", STR)], None)])
    with pytest.raises(ValueError, match="declared twice"):
        CodecRegistry.of([(9, 1, "u16", None), (9, 1, "i16", None)])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("i16", ScalarCodec("i16")),
        ([], FieldsCodec()),
        ([("a", "u32"), ("b", "str")], FieldsCodec(("a", "u32"), ("b", "str"))),
        (None, None),
    ],
)
def test_layout_shorthand(spec: Any, expected: Any) -> None:
    got = layout(spec)
    if expected is None:
        assert got is None
    else:
        assert describe_layout(got) == describe_layout(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["f64", [("a",)], [("a", "u8")], [(1, "u16")], 5])
def test_layout_shorthand_refuses(spec: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        layout(spec)


def test_declaration_round_trip_is_json() -> None:
    doc = CODECS.declaration()
    assert doc["format"] == "netbus-codecs/1"
    text = json.dumps(doc)
    again = CodecRegistry.from_declaration(json.loads(text))
    assert again == CODECS
    for key in CODECS:
        a, b = CODECS.buf_codec(*key), again.buf_codec(*key)
        assert a is not None and b is not None
        assert describe_layout(a) == describe_layout(b)
    enter = next(row for row in doc["layouts"] if (row["stype"], row["ctype"]) == (1, 1))
    assert enter == {
        "stype": 1,
        "ctype": 1,
        "to_server": {"fields": [["uname", "str"], ["usex", "i16"]]},
        "to_client": {"scalar": "i16"},
    }
    send_msg = next(row for row in doc["layouts"] if (row["stype"], row["ctype"]) == (1, 5))
    assert send_msg["to_client"] == {
        "status": "0",
        "ok": 1,
        "fields": [["1", "str"], ["2", "i16"], ["3", "str"]],
    }


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {"format": "other", "layouts": []},
        {"format": "netbus-codecs/1"},
        {"format": "netbus-codecs/1", "layouts": [{"stype": 1}]},
        {"format": "netbus-codecs/1", "layouts": [{"stype": 1, "ctype": 70000}]},
        {"format": "netbus-codecs/1", "layouts": [{"stype": 1, "ctype": 1, "to_server": {}}]},
        {
            "format": "netbus-codecs/1",
            "layouts": [{"stype": 1, "ctype": 1, "to_server": {"scalar": "f"}}],
        },
        {
            "format": "netbus-codecs/1",
            "layouts": [{"stype": 1, "ctype": 1, "to_server": {"fields": [["a"]]}}],
        },
        {
            "format": "netbus-codecs/1",
            "layouts": [{"stype": 1, "ctype": 1, "to_server": {"status": "0", "fields": []}}],
        },
        {"format": "netbus-codecs/1", "layouts": ["x"]},
    ],
)
def test_bad_declarations_are_refused(doc: Any) -> None:
    with pytest.raises(ValueError):
        CodecRegistry.from_declaration(doc)


def test_custom_codec_without_description_cannot_be_declared() -> None:
    class Opaque:
        def encode(self, value: Any) -> bytes:
            return b""

        def decode(self, reader: Any) -> Any:
            return None

    registry = CodecRegistry.of([(9, 1, Opaque(), None)])  # usable in Python ...
    assert registry.encode(9, 1, None, proto_type=BUF, direction=S)[10:] == b""
    with pytest.raises(LocalProtocolError, match="no JSON description"):
        registry.declaration()  # ... but clients elsewhere could not know it


# ---------------------------------------------------------------- end to end, no sockets


@SETTINGS
@given(st.lists(st.sampled_from(list(LAYOUTS)), min_size=1, max_size=6), st.data())
def test_pipeline(keys: list[tuple[int, int, Direction]], data: st.DataObject) -> None:
    """encode -> frame -> split anywhere -> decode frames -> header -> body, both encodings."""
    packets = []
    for stype, ctype, direction in keys:
        proto_type = data.draw(st.sampled_from(ProtoType), label="proto_type")
        value = data.draw(
            layout_value((stype, ctype, direction)) if proto_type == BUF else JSON_VALUE,
            label="value",
        )
        cmd_buf = CODECS.encode(stype, ctype, value, proto_type=proto_type, direction=direction)
        packets.append((direction, value, cmd_buf))
    stream = b"".join(encode_frame(p[2]) for p in packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    decoder = FrameDecoder()
    out = [b for piece in split_at(stream, cuts) for b in decoder.feed(piece)]
    assert len(out) == len(packets)
    for (direction, value, cmd_buf), got in zip(packets, out, strict=True):
        assert got == cmd_buf
        h = unpack_header(got)
        assert same(CODECS.decode_body(got, h.stype, h.ctype, h.proto_type, direction), value)
