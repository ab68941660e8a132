"""PROXY protocol v1 (text) and v2 (binary) headers: who the client behind a proxy really is.

A load balancer or TLS terminator that speaks the PROXY protocol (HAProxy's specification,
``proxy-protocol.txt``) writes one header before the client's bytes, naming the client's
address. A listener accepts it only from configured trusted proxies (docs/protocol.md §2.4,
docs/security.md);
`ProxyHeaderParser` reads it, sans-I/O and bounded: a v1 header is at most 107 bytes, a v2
header at most ``16 + MAX_V2_PAYLOAD`` bytes, and anything that cannot be the start of a
header fails at once with `ProtocolError` (kind ``"proxy_header"``).

`looks_like_proxy` is the other half of the trust rule: a peer that is *not* a trusted proxy
must not send a header (it would name any address it likes), and a listener that expects
headers treats one from anyone else as a protocol error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netbus.errors import ProtocolError

__all__ = [
    "MAX_V1",
    "MAX_V2_PAYLOAD",
    "V1_PREFIX",
    "V2_SIGNATURE",
    "ProxyHeaderParser",
    "ProxyInfo",
    "encode_v1",
    "encode_v2",
    "looks_like_proxy",
]

V1_PREFIX = b"PROXY "
MAX_V1 = 107  #: the longest v1 header, CRLF included (the specification's own bound)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_HEADER = 16  #: signature, version/command, family/transport, u16 BE length
MAX_V2_PAYLOAD = 2048  #: addresses + TLVs accepted after the 16-byte v2 header

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM = 0x1


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a PROXY header said.

    ``source`` is the client's (ip, port), or None when the header carries no address
    (v1 ``UNKNOWN``, v2 ``LOCAL`` such as a proxy's own health check, or an unspecified
    family): the connection's own address stands then.
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None = None


def looks_like_proxy(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` (a connection's first bytes) begins with a PROXY header's signature.

    Needs the whole v1 prefix (6 bytes) or v2 signature (12 bytes): shorter input is never
    called a header, so a client's first frame cannot be mistaken for one by a short read.
    """
    head = bytes(data[:12])
    return head.startswith(V1_PREFIX) or head == V2_SIGNATURE


def _fail(detail: str) -> ProtocolError:
    return ProtocolError("proxy_header", detail)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0:1] == b"0"):
        raise _fail("bad port")
    port = int(text)
    if port > 65535:
        raise _fail("bad port")
    return port


def _ip(text: bytes, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _fail("bad address") from None
    if addr.version != version:
        raise _fail("address of the wrong family")
    return str(addr)


def _parse_v1(line: bytes) -> ProxyInfo:
    """``line`` without its CRLF."""
    fields = line.split(b" ")
    if len(fields) < 2 or fields[0] != b"PROXY":
        raise _fail("malformed v1 header")
    proto = fields[1]
    if proto == b"UNKNOWN":
        return ProxyInfo(1, None)
    if proto not in (b"TCP4", b"TCP6") or len(fields) != 6:
        raise _fail("malformed v1 header")
    family = 4 if proto == b"TCP4" else 6
    source = (_ip(fields[2], family), _port(fields[4]))
    destination = (_ip(fields[3], family), _port(fields[5]))
    return ProxyInfo(1, source, destination)


def _parse_v2(header: bytes, payload: bytes) -> ProxyInfo:
    ver_cmd, fam = header[12], header[13]
    if ver_cmd >> 4 != 2:
        raise _fail(f"v2 version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command == _V2_LOCAL:
        return ProxyInfo(2, None)
    if command != _V2_PROXY:
        raise _fail(f"v2 command {command}")
    family, transport = fam >> 4, fam & 0x0F
    if family in (_AF_UNSPEC, _AF_UNIX):
        return ProxyInfo(2, None)
    if transport != _STREAM:
        raise _fail("v2 transport is not a stream")
    if family == _AF_INET:
        if len(payload) < 12:
            raise _fail("v2 INET addresses truncated")
        src = str(ipaddress.IPv4Address(payload[0:4]))
        dst = str(ipaddress.IPv4Address(payload[4:8]))
        ports = payload[8:12]
    elif family == _AF_INET6:
        if len(payload) < 36:
            raise _fail("v2 INET6 addresses truncated")
        src = str(ipaddress.IPv6Address(payload[0:16]))
        dst = str(ipaddress.IPv6Address(payload[16:32]))
        ports = payload[32:36]
    else:
        raise _fail(f"v2 address family {family}")
    sport = int.from_bytes(ports[0:2], "big")
    dport = int.from_bytes(ports[2:4], "big")
    return ProxyInfo(2, (src, sport), (dst, dport))  # TLVs after the addresses are ignored


class ProxyHeaderParser:
    """Reads one PROXY header (v1 or v2) from the start of a connection.

    `feed` until it returns a `ProxyInfo`; `leftover` then holds the bytes that followed the
    header (the client's own protocol). Input that cannot start a header, a header over its
    bound, or a malformed one raises `ProtocolError` (kind ``"proxy_header"``): the
    connection must be closed.
    """

    __slots__ = ("_buf", "leftover", "result")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.leftover = b""
        self.result: ProxyInfo | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> ProxyInfo | None:
        """Consume ``data``; the header once complete, else None (send more).

        Raises:
            ProtocolError: not a PROXY header, or a malformed or oversized one.
        """
        if self.result is not None:
            self.leftover += bytes(data)
            return self.result
        buf = self._buf
        buf += data
        if not buf:
            return None
        if buf[0] == V1_PREFIX[0]:
            if not V1_PREFIX.startswith(bytes(buf[: len(V1_PREFIX)])):
                raise _fail("no PROXY header")
            end = buf.find(b"\r\n", 0, MAX_V1)
            if end < 0:
                if len(buf) >= MAX_V1:
                    raise _fail("v1 header longer than 107 bytes")
                return None
            info = _parse_v1(bytes(buf[:end]))
            rest = end + 2
        elif buf[0] == V2_SIGNATURE[0]:
            if not V2_SIGNATURE.startswith(bytes(buf[: len(V2_SIGNATURE)])):
                raise _fail("no PROXY header")
            if len(buf) < _V2_HEADER:
                return None
            length = int.from_bytes(buf[14:16], "big")
            if length > MAX_V2_PAYLOAD:
                raise _fail(f"v2 header of {length} bytes (at most {MAX_V2_PAYLOAD})")
            rest = _V2_HEADER + length
            if len(buf) < rest:
                return None
            info = _parse_v2(bytes(buf[:_V2_HEADER]), bytes(buf[_V2_HEADER:rest]))
        else:
            raise _fail("no PROXY header")
        self.leftover = bytes(buf[rest:])
        self._buf = bytearray()
        self.result = info
        return info


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header for ``source`` -> ``destination`` (tests, tools)."""
    family = ipaddress.ip_address(source[0]).version
    proto = "TCP4" if family == 4 else "TCP6"
    return f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None = None,
    *,
    tlvs: bytes = b"",
) -> bytes:
    """A v2 header: PROXY for ``source`` -> ``destination``, or LOCAL when ``source`` is None."""
    if source is None:
        return V2_SIGNATURE + bytes((0x20, 0x00)) + len(tlvs).to_bytes(2, "big") + tlvs
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0] if destination else source[0])
    dport = destination[1] if destination else 0
    family = _AF_INET if src.version == 4 else _AF_INET6
    payload = (
        src.packed + dst.packed + source[1].to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs
    )
    return (
        V2_SIGNATURE
        + bytes((0x21, (family << 4) | _STREAM))
        + len(payload).to_bytes(2, "big")
        + payload
    )
