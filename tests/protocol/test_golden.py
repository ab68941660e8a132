"""Golden byte vectors (tests/golden/vectors.toml), written by hand from PROTOCOL.md.

Every vector is checked both ways: the bytes decode to the documented header and value, and
encoding the value gives exactly the bytes. The vectors are the independent reference: if one
fails, compare the code with PROTOCOL.md before touching the vector.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netbus.errors import ProtocolError
from netbus.protocol import (
    USER_DISCONNECT,
    Direction,
    FrameDecoder,
    Header,
    ProtoType,
    encode_frame,
    pack_header,
    unpack_header,
)
from tests.helpers import CODECS

from .strategies import same

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "vectors.toml"
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DIRECTIONS = {"to_server": Direction.TO_SERVER, "to_client": Direction.TO_CLIENT}


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


@dataclass(frozen=True)
class Vector:
    name: str
    direction: Direction
    header: Header
    value: Any
    data: bytes
    frame: bytes | None


def _load() -> dict[str, Any]:
    with GOLDEN.open("rb") as fh:
        return tomllib.load(fh)


RAW = _load()
VECTORS = [
    Vector(
        name=v["name"],
        direction=DIRECTIONS[v["direction"]],
        header=Header(v["stype"], v["ctype"], v["utag"], v["proto_type"]),
        value=json.loads(v["value"]),
        data=unhex(v["hex"]),
        frame=unhex(v["frame"]) if "frame" in v else None,
    )
    for v in RAW["vector"]
]
MALFORMED = RAW["malformed"]
BAD_FRAMES = RAW["bad_frame"]


def by_name(items: list[Any]) -> dict[str, Any]:
    return {"argvalues": items, "ids": [getattr(i, "name", None) or i["name"] for i in items]}


def decode(cmd_buf: bytes, direction: Direction) -> tuple[Header, Any]:
    header = unpack_header(cmd_buf)
    body = CODECS.decode_body(cmd_buf, header.stype, header.ctype, header.proto_type, direction)
    return header, body


# ------------------------------------------------------------------------- the vector file


def test_names_are_unique() -> None:
    names = [v["name"] for v in (*RAW["vector"], *MALFORMED, *BAD_FRAMES)]
    assert len(names) == len(set(names))


def test_protocol_md_guest_login_example() -> None:
    """PROTOCOL.md §3.2, byte for byte: 02 00 | 01 00 | 00 00 00 00 | 01 00 | 28 00 | text."""
    (vector,) = [v for v in VECTORS if v.name == "auth.guest_login.request.json"]
    key = vector.value
    assert isinstance(key, str) and len(key) == 32
    expected = bytes.fromhex("0200 0100 00000000 0100 2800") + b'{"0":"' + key.encode() + b'"}'
    assert vector.data == expected
    assert CODECS.encode(2, 1, key, direction=Direction.TO_SERVER) == expected


#: (stype, ctype, direction, proto_type) that PROTOCOL.md (and docs/protocol.md for stype 0)
#: defines; each needs at least one golden vector.
REQUIRED = {
    *((2, 1, d, ProtoType.JSON) for d in Direction),  # GUEST_LOGIN
    (2, 2, Direction.TO_CLIENT, ProtoType.JSON),  # RELOGIN
    (1, USER_DISCONNECT, Direction.TO_SERVER, ProtoType.JSON),
    (2, USER_DISCONNECT, Direction.TO_SERVER, ProtoType.JSON),
    *((1, c, d, p) for c in (1, 2, 5) for d in Direction for p in ProtoType),
    *((1, c, Direction.TO_CLIENT, p) for c in (3, 4, 6) for p in ProtoType),
    *((0, 1, d, p) for d in Direction for p in ProtoType),  # HEARTBEAT
    *((0, c, Direction.TO_CLIENT, p) for c in (2, 3, 4, 5, 6, 10) for p in ProtoType),
}


def test_every_command_has_a_vector() -> None:
    have = {(v.header.stype, v.header.ctype, v.direction, v.header.proto_type) for v in VECTORS}
    assert not REQUIRED - have, sorted(REQUIRED - have)


def test_non_ascii_is_covered() -> None:
    text = b"".join(v.data for v in VECTORS)
    for char in ("遊客", "😀", "\x7f"):
        assert char.encode() in text


# ------------------------------------------------------------------------ well-formed vectors


@pytest.mark.parametrize("vector", **by_name(VECTORS))
def test_header(vector: Vector) -> None:
    assert unpack_header(vector.data) == vector.header
    assert pack_header(*vector.header) == vector.data[:10]


@pytest.mark.parametrize("vector", **by_name(VECTORS))
def test_decode(vector: Vector) -> None:
    header, value = decode(vector.data, vector.direction)
    assert header == vector.header
    assert same(value, vector.value)


@pytest.mark.parametrize("vector", **by_name(VECTORS))
def test_encode(vector: Vector) -> None:
    stype, ctype, utag, proto_type = vector.header
    data = CODECS.encode(
        stype, ctype, vector.value, utag=utag, proto_type=proto_type, direction=vector.direction
    )
    if proto_type == ProtoType.JSON:
        # Parsed comparison first (key order, spacing), then the exact bytes: our encoder is
        # compact orjson, so it must reproduce the reference text too.
        assert same(json.loads(data[12:]), json.loads(vector.data[12:]))
    assert data.hex(" ") == vector.data.hex(" ")


@pytest.mark.parametrize("vector", **by_name([v for v in VECTORS if v.frame is not None]))
def test_frame(vector: Vector) -> None:
    assert vector.frame is not None
    assert encode_frame(vector.data) == vector.frame
    assert FrameDecoder().feed(vector.frame) == [vector.data]
    decoder = FrameDecoder()
    out = [buf for i in range(len(vector.frame)) for buf in decoder.feed(vector.frame[i : i + 1])]
    assert out == [vector.data]


def test_all_vectors_as_one_tcp_stream() -> None:
    stream = b"".join(encode_frame(v.data) for v in VECTORS)
    assert FrameDecoder().feed(stream) == [v.data for v in VECTORS]
    decoder = FrameDecoder()
    out = [buf for i in range(len(stream)) for buf in decoder.feed(stream[i : i + 1])]
    assert out == [v.data for v in VECTORS]
    assert decoder.buffered == 0


# -------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("case", **by_name(MALFORMED))
def test_malformed(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(unhex(case["hex"]), DIRECTIONS[case["direction"]])
    assert info.value.kind == case["kind"]


@pytest.mark.parametrize("case", **by_name(BAD_FRAMES))
def test_bad_frame(case: dict[str, Any]) -> None:
    data = unhex(case["hex"])
    max_cmd_buf = case.get("max_cmd_buf", 65533)
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(max_cmd_buf).feed(data)
    assert info.value.kind == case["kind"]
    # Byte by byte, the error surfaces with the second byte of the bad length, not later.
    decoder = FrameDecoder(max_cmd_buf)
    fed = 0
    with pytest.raises(ProtocolError):
        for fed in range(1, len(data) + 1):
            decoder.feed(data[fed - 1 : fed])
    bad_length_end = len(data) if len(data) <= 2 else _bad_length_end(data, max_cmd_buf)
    assert fed == bad_length_end


def _bad_length_end(data: bytes, max_cmd_buf: int) -> int:
    """Offset just past the first out-of-range length, walking valid frames from the start."""
    pos = 0
    while True:
        size = int.from_bytes(data[pos : pos + 2], "little")
        if not 12 <= size <= max_cmd_buf + 2:
            return pos + 2
        pos += size


# ------------------------------------------------------------------------ docs/protocol.md


def test_docs_reproduce_the_vectors() -> None:
    """docs/protocol.md "Golden vectors" shows the same bytes as the machine-readable copy."""
    text = DOC.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"\*\*`([\w.]+)`\*\*[^\n]*\n\n```text\n(.*?)```", text, re.S))
    for vector in VECTORS:
        assert vector.name in blocks, vector.name
        assert unhex(blocks[vector.name]) == vector.data, vector.name
    for case in (*MALFORMED, *BAD_FRAMES):
        assert f"`{case['name']}`" in text
