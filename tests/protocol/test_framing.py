"""netbus.protocol.framing: TCP frames ``u16 length (counting itself) | cmd_buf`` (§2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import ProtocolError
from netbus.protocol import MAX_CMD_BUF, FrameDecoder, encode_frame, pack_header
from netbus.protocol.framing import MIN_FRAME

from .strategies import SETTINGS, ref_frame, split_at

#: Any cmd_buf is framed as opaque bytes: framing never looks past the length.
CMD_BUF = st.binary(min_size=10, max_size=160)
HEARTBEAT = pack_header(0, 1, 0, 2)  # the smallest cmd_buf: a bare header


def feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> list[bytearray]:
    return [buf for piece in pieces for buf in decoder.feed(piece)]


# ------------------------------------------------------------------------------ encode_frame


def test_encode_frame() -> None:
    assert MIN_FRAME == 12
    assert encode_frame(HEARTBEAT) == b"\x0c\x00" + HEARTBEAT
    assert encode_frame(bytearray(HEARTBEAT)) == b"\x0c\x00" + HEARTBEAT
    big = bytes(MAX_CMD_BUF)
    assert encode_frame(big)[:2] == b"\xff\xff"


@pytest.mark.parametrize("size", [0, 1, 9, MAX_CMD_BUF + 1, 70000])
def test_encode_frame_refuses(size: int) -> None:
    with pytest.raises(ProtocolError) as info:
        encode_frame(bytes(size))
    assert info.value.kind == "frame_length"


@SETTINGS
@given(CMD_BUF)
def test_encode_frame_matches_reference(cmd_buf: bytes) -> None:
    assert encode_frame(cmd_buf) == ref_frame(cmd_buf)


# ------------------------------------------------------------------------------ FrameDecoder


def test_one_frame_per_read() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0c\x00" + HEARTBEAT) == [bytearray(HEARTBEAT)]
    assert decoder.buffered == 0


def test_empty_reads() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x0c") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00" + HEARTBEAT) == [bytearray(HEARTBEAT)]


def test_first_read_of_one_byte() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0c") == []
    assert decoder.buffered == 1
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(HEARTBEAT[:5]) == []
    assert decoder.buffered == 7
    assert decoder.feed(HEARTBEAT[5:] + b"\x0c\x00") == [bytearray(HEARTBEAT)]
    assert decoder.buffered == 2
    assert decoder.feed(HEARTBEAT) == [bytearray(HEARTBEAT)]
    assert decoder.buffered == 0


def test_several_frames_in_one_read() -> None:
    frames = [pack_header(1, i, i, 1) + bytes(i) for i in range(5)]
    data = b"".join(ref_frame(f) for f in frames)
    assert FrameDecoder().feed(data) == frames


def test_output_is_owned_by_the_caller() -> None:
    """Returned buffers are fresh bytearrays: safe to rewrite the utag, safe to keep."""
    scratch = bytearray(b"\x0c\x00" + HEARTBEAT + b"\x0c\x00" + HEARTBEAT[:3])
    decoder = FrameDecoder()
    out = decoder.feed(memoryview(scratch))
    scratch[:] = b"\xee" * len(scratch)  # the transport reuses its receive buffer
    assert out == [bytearray(HEARTBEAT)]
    assert isinstance(out[0], bytearray)
    assert decoder.feed(HEARTBEAT[3:]) == [bytearray(HEARTBEAT)]


@pytest.mark.parametrize("length", [0, 1, 2, 10, 11])
def test_length_below_minimum(length: int) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(length.to_bytes(2, "little")[:1]) == []
    with pytest.raises(ProtocolError) as info:
        decoder.feed(length.to_bytes(2, "little")[1:])  # no body bytes have arrived
    assert info.value.kind == "frame_length"


def test_length_eleven_with_its_bytes() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"\x0b\x00" + HEARTBEAT[:9])


@pytest.mark.parametrize("max_cmd_buf", [10, 11, 64, 1000, 4096, 65532])
def test_listener_maximum(max_cmd_buf: int) -> None:
    # Exactly the maximum is accepted...
    cmd_buf = HEARTBEAT + bytes(max_cmd_buf - 10)
    decoder = FrameDecoder(max_cmd_buf)
    assert decoder.feed(ref_frame(cmd_buf)) == [cmd_buf]
    # ...one more is refused as soon as the 2 length bytes are known, before any body.
    decoder = FrameDecoder(max_cmd_buf)
    length = (max_cmd_buf + 3).to_bytes(2, "little")
    assert decoder.feed(length[:1]) == []
    with pytest.raises(ProtocolError) as info:
        decoder.feed(length[1:])
    assert info.value.kind == "frame_length"
    assert decoder.buffered <= 2
    with pytest.raises(ProtocolError):
        FrameDecoder(max_cmd_buf).feed(length + cmd_buf + b"\x00")


def test_contract_maximum() -> None:
    """Length 65535 (a 65533-byte cmd_buf) is the largest frame; u16 cannot say more."""
    cmd_buf = HEARTBEAT + bytes(MAX_CMD_BUF - 10)
    frame = b"\xff\xff" + cmd_buf
    decoder = FrameDecoder()
    pieces = split_at(frame, [1, 2, 3, 40000])
    assert feed_all(decoder, pieces) == [cmd_buf]
    assert decoder.buffered == 0


@pytest.mark.parametrize("max_cmd_buf", [-1, 0, 9, MAX_CMD_BUF + 1])
def test_bad_listener_maximum(max_cmd_buf: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_cmd_buf)


# ---------------------------------------------------------------------------------- property


@SETTINGS
@given(st.lists(CMD_BUF, max_size=8), st.data())
def test_split_anywhere(cmd_bufs: list[bytes], data: st.DataObject) -> None:
    """Any concatenation of valid frames, cut at any points, yields exactly the cmd_bufs."""
    stream = b"".join(ref_frame(b) for b in cmd_bufs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    if stream and data.draw(st.booleans(), label="1-byte first read"):
        cuts.append(1)
    decoder = FrameDecoder()
    assert feed_all(decoder, split_at(stream, cuts)) == cmd_bufs
    assert decoder.buffered == 0


@SETTINGS
@given(st.lists(CMD_BUF, min_size=1, max_size=6), st.data())
def test_split_anywhere_from_a_reused_buffer(cmd_bufs: list[bytes], data: st.DataObject) -> None:
    """Like a BufferedProtocol: each read lands in one scratch buffer that is then reused."""
    stream = b"".join(ref_frame(b) for b in cmd_bufs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    scratch = bytearray(len(stream))
    decoder = FrameDecoder()
    out: list[bytearray] = []
    for piece in split_at(stream, cuts):
        scratch[: len(piece)] = piece
        out += decoder.feed(memoryview(scratch)[: len(piece)])
        scratch[:] = b"\xa5" * len(scratch)
    assert out == cmd_bufs


@SETTINGS
@given(st.integers(10, 300), st.binary(max_size=400), st.data())
def test_garbage_raises_only_protocol_error(
    max_cmd_buf: int, garbage: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(garbage)), max_size=10), label="cuts")
    decoder = FrameDecoder(max_cmd_buf)
    out: list[bytearray] = []
    try:
        for piece in split_at(garbage, cuts):
            out += decoder.feed(piece)
            # Memory bound: never more than one incomplete frame is held.
            assert decoder.buffered < max_cmd_buf + 2
    except ProtocolError as exc:
        assert exc.kind == "frame_length"
        return
    # No error: what came out plus what is held is exactly what went in, in order.
    assert all(10 <= len(b) <= max_cmd_buf for b in out)
    assert b"".join(ref_frame(bytes(b)) for b in out) == garbage[: len(garbage) - decoder.buffered]


@SETTINGS
@given(st.lists(CMD_BUF, min_size=1, max_size=4), st.integers(0, 11), st.data())
def test_bad_length_after_good_frames(cmd_bufs: list[bytes], bad: int, data: st.DataObject) -> None:
    stream = b"".join(ref_frame(b) for b in cmd_bufs) + bad.to_bytes(2, "little") + b"\x00" * 12
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        feed_all(decoder, split_at(stream, cuts))
