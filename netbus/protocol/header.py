"""The 10-byte cmd_buf header (docs/protocol.md §1): stype, ctype, utag, proto_type, little-endian.

The gateway touches only this part of a packet: it reads the header, rewrites the utag in
place and forwards the bytes verbatim, so re-encoding never changes a body in transit.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from netbus.errors import LocalProtocolError, ProtocolError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAX_CMD_BUF",
    "MAX_UID",
    "PRELOGIN_BIT",
    "UTAG",
    "UTAG_OFFSET",
    "Header",
    "ProtoType",
    "pack_header",
    "read_utag",
    "unpack_header",
    "write_utag",
]

HEADER = struct.Struct("<HHIH")
HEADER_SIZE = HEADER.size  #: 10 bytes
UTAG_OFFSET = 4
MAX_CMD_BUF = 65535 - 2  #: the largest cmd_buf a u16 frame length can carry
#: the utag field alone (``UTAG.pack_into(cmd_buf, UTAG_OFFSET, utag)`` rewrites it in place)
UTAG = struct.Struct("<I")
#: utags with the top bit set are a gateway's pre-login connection keys, never uids
PRELOGIN_BIT = 0x8000_0000
#: uids are ``1 .. MAX_UID``, so a uid never has ``PRELOGIN_BIT`` set (docs/protocol.md §8)
MAX_UID = PRELOGIN_BIT - 1


class ProtoType(IntEnum):
    """Body encoding (docs/protocol.md §1). Any other value makes the packet malformed."""

    JSON = 1
    BUF = 2


class Header(NamedTuple):
    stype: int
    ctype: int
    utag: int
    proto_type: int


def unpack_header(cmd_buf: bytes | bytearray | memoryview) -> Header:
    """Parse and validate the header at the start of ``cmd_buf``.

    Raises:
        ProtocolError: the buffer is shorter than a header or proto_type is not 1 or 2.
    """
    if len(cmd_buf) < HEADER_SIZE:
        raise ProtocolError("short_header", f"{len(cmd_buf)} bytes")
    stype, ctype, utag, proto_type = HEADER.unpack_from(cmd_buf)
    if proto_type != 1 and proto_type != 2:
        raise ProtocolError("bad_proto_type", str(proto_type))
    return Header(stype, ctype, utag, proto_type)


def pack_header(stype: int, ctype: int, utag: int, proto_type: int) -> bytes:
    """Pack a header. proto_type is not checked (tests build malformed packets with it).

    Raises:
        LocalProtocolError: a field does not fit its u16/u32 slot.
    """
    try:
        return HEADER.pack(stype, ctype, utag, proto_type)
    except struct.error as exc:
        raise LocalProtocolError(f"header field out of range: {exc}") from None


def read_utag(cmd_buf: bytes | bytearray | memoryview) -> int:
    utag: int = UTAG.unpack_from(cmd_buf, UTAG_OFFSET)[0]
    return utag


def write_utag(cmd_buf: bytearray | memoryview, utag: int) -> None:
    """Overwrite the utag of a mutable cmd_buf in place (no copy of the body).

    Raises:
        LocalProtocolError: ``utag`` is not a u32 or ``cmd_buf`` is shorter than a header.
    """
    # Check first: a failed pack_into has already zeroed the 4 bytes it was writing.
    if not isinstance(utag, int) or not 0 <= utag <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"utag {utag!r} is not a u32")
    try:
        UTAG.pack_into(cmd_buf, UTAG_OFFSET, utag)
    except struct.error as exc:
        raise LocalProtocolError(f"cannot write utag {utag!r}: {exc}") from None
