"""TCP framing (PROTOCOL.md §2): ``u16 LE length (counting itself) | cmd_buf``.

`FrameDecoder` is sans-I/O: feed it whatever the socket produced, get back whole cmd_bufs.
The length is validated the moment its two bytes are known, before any body is buffered,
so a peer announcing a frame larger than the listener allows costs no memory.
"""

from __future__ import annotations

import struct

from netbus.errors import ProtocolError
from netbus.protocol.header import HEADER_SIZE, MAX_CMD_BUF

__all__ = ["LENGTH", "MIN_FRAME", "FrameDecoder", "encode_frame"]

LENGTH = struct.Struct("<H")
MIN_FRAME = 2 + HEADER_SIZE  #: 12: a length prefix and an empty-bodied header


def encode_frame(cmd_buf: bytes | bytearray) -> bytes:
    """Prefix ``cmd_buf`` with its frame length.

    Raises:
        ProtocolError: the cmd_buf cannot be framed (shorter than a header or too long).
    """
    n = len(cmd_buf)
    if n < HEADER_SIZE or n > MAX_CMD_BUF:
        raise ProtocolError("frame_length", f"cannot frame a {n}-byte cmd_buf")
    return LENGTH.pack(n + 2) + cmd_buf


class FrameDecoder:
    """Incremental decoder of length-prefixed frames.

    An unfinished frame is kept in one buffer of its own final size, so completing it costs
    no copy and no growth (repeated reallocation fragments the heap: held frames then ratchet
    memory up burst after burst). Only the first ``FIRST_CHUNK`` bytes are allocated up front:
    a peer must send more than that before it makes the decoder hold a bigger frame, so what
    it announces costs at most four times what it sent.

    Args:
        max_cmd_buf: the largest cmd_buf this listener accepts (at most 65533).
    """

    __slots__ = ("_body", "_filled", "_low", "_max_frame", "_size", "held")

    FIRST_CHUNK = 16 * 1024

    def __init__(self, max_cmd_buf: int = MAX_CMD_BUF) -> None:
        if not HEADER_SIZE <= max_cmd_buf <= MAX_CMD_BUF:
            raise ValueError(f"max_cmd_buf must be {HEADER_SIZE}..{MAX_CMD_BUF}")
        self._max_frame = max_cmd_buf + 2
        self._low = -1  #: the first length byte, when only that one has arrived
        self._size = 0  #: the unfinished cmd_buf's length (0: none)
        self._body: bytearray | None = None  #: its bytes so far (allocated ahead)
        self._filled = 0
        #: bytes of memory held for the incomplete frame (what input budgets count); a plain
        #: attribute, read after every read on the hot path
        self.held = 0

    @property
    def buffered(self) -> int:
        """Bytes received for an incomplete frame (a stalled peer shows up here)."""
        if self._body is not None:
            return 2 + self._filled
        return 1 if self._low >= 0 else 0

    def clear(self) -> None:
        """Drop the unfinished frame (its connection is closing): its memory is freed now,
        not when the connection object is collected."""
        self._low, self._size, self._body, self._filled, self.held = -1, 0, None, 0, 0

    def _check(self, size: int) -> None:
        if size < MIN_FRAME or size > self._max_frame:
            raise ProtocolError(
                "frame_length", f"length {size} outside {MIN_FRAME}..{self._max_frame}"
            )

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Consume ``data`` and return every cmd_buf it completes, in order.

        The returned buffers are fresh ``bytearray`` copies, owned by the caller, so the utag
        can be rewritten in place. ``data`` may be a view of a reused receive buffer.

        Raises:
            ProtocolError: a frame length outside 12..max. The decoder is then unusable and
                the connection must be closed.
        """
        out: list[bytearray] = []
        pos = 0
        end = len(data)
        if self._low >= 0 or self._body is not None:
            pos = self._resume(data, out)
            if pos < 0:
                return out  # still unfinished: every byte went into it
        max_frame = self._max_frame
        while end - pos >= 2:
            size = data[pos] | (data[pos + 1] << 8)
            if size < MIN_FRAME or size > max_frame:
                raise ProtocolError(
                    "frame_length", f"length {size} outside {MIN_FRAME}..{max_frame}"
                )
            if end - pos < size:
                self._start(size - 2, data[pos + 2 : end])
                return out
            out.append(bytearray(data[pos + 2 : pos + size]))
            pos += size
        if pos < end:
            self._low = data[pos]
            self.held = 1
        return out

    def _start(self, size: int, first: bytes | bytearray | memoryview) -> None:
        """Begin an unfinished cmd_buf of ``size`` bytes with its ``first`` bytes."""
        body = bytearray(min(size, max(self.FIRST_CHUNK, len(first))))
        body[: len(first)] = first
        self._size, self._body, self._filled = size, body, len(first)
        self.held = 2 + len(body)

    def _resume(self, data: bytes | bytearray | memoryview, out: list[bytearray]) -> int:
        """Continue the unfinished frame; where in ``data`` the next frame starts, or -1."""
        pos = 0
        end = len(data)
        if self._low >= 0:
            if not end:
                return -1
            size = self._low | (data[0] << 8)
            self._check(size)
            self._low = -1
            self._start(size - 2, b"")
            pos = 1
        body = self._body
        assert body is not None
        size, filled = self._size, self._filled
        take = min(size - filled, end - pos)
        if filled + take > len(body):  # past the first chunk: one move to the final size
            whole = bytearray(size)
            whole[:filled] = memoryview(body)[:filled]
            body = self._body = whole
            self.held = 2 + size
        body[filled : filled + take] = data[pos : pos + take]
        filled += take
        pos += take
        if filled < size:
            self._filled = filled
            return -1
        out.append(body)
        self._body, self._size, self._filled, self.held = None, 0, 0, 0
        return pos
