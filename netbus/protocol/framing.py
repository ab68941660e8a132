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

    Args:
        max_cmd_buf: the largest cmd_buf this listener accepts (at most 65533).
    """

    __slots__ = ("_max_frame", "_pending")

    def __init__(self, max_cmd_buf: int = MAX_CMD_BUF) -> None:
        if not HEADER_SIZE <= max_cmd_buf <= MAX_CMD_BUF:
            raise ValueError(f"max_cmd_buf must be {HEADER_SIZE}..{MAX_CMD_BUF}")
        self._max_frame = max_cmd_buf + 2
        self._pending = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (a stalled peer shows up here)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Consume ``data`` and return every cmd_buf it completes, in order.

        The returned buffers are fresh ``bytearray`` copies, owned by the caller, so the utag
        can be rewritten in place. ``data`` may be a view of a reused receive buffer.

        Raises:
            ProtocolError: a frame length outside 12..max. The decoder is then unusable and
                the connection must be closed.
        """
        if self._pending:
            self._pending += data
            buf: bytes | bytearray | memoryview = self._pending
        else:
            buf = data
        out: list[bytearray] = []
        pos = 0
        end = len(buf)
        max_frame = self._max_frame
        while end - pos >= 2:
            size = buf[pos] | (buf[pos + 1] << 8)
            if size < MIN_FRAME or size > max_frame:
                raise ProtocolError(
                    "frame_length", f"length {size} outside {MIN_FRAME}..{max_frame}"
                )
            if end - pos < size:
                break
            out.append(bytearray(buf[pos + 2 : pos + size]))
            pos += size
        if buf is self._pending:
            del self._pending[:pos]
        elif pos < end:
            self._pending = bytearray(buf[pos:])
        return out
