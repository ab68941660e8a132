"""PROXY protocol v1/v2 headers: the specification's examples, bounds, and fuzzing."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.errors import ProtocolError
from netbus.protocol.proxy import (
    MAX_V1,
    MAX_V2_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeaderParser,
    ProxyInfo,
    encode_v1,
    encode_v2,
    looks_like_proxy,
)


def parse(data: bytes) -> tuple[ProxyInfo | None, bytes]:
    parser = ProxyHeaderParser()
    info = parser.feed(data)
    return info, parser.leftover


# ---------------------------------------------------------------------------------- v1
def test_v1_tcp4_from_the_specification() -> None:
    info, rest = parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n")
    assert info == ProxyInfo(1, ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert rest == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_and_unknown() -> None:
    info, _ = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n")
    assert info == ProxyInfo(1, ("2001:db8::1", 1), ("2001:db8::2", 65535))
    info, rest = parse(b"PROXY UNKNOWN ffff::1 whatever\r\n\x0c\x00")
    assert info == ProxyInfo(1, None) and rest == b"\x0c\x00"


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",  # a field missing
        b"PROXY TCP4 192.168.0.1 2001:db8::1 1 2\r\n",  # mixed families
        b"PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n",  # IPv4 under TCP6
        b"PROXY TCP4 192.168.0.300 192.168.0.11 1 2\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 2\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 01 2\r\n",  # leading zero
        b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 2\r\n",
        b"PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
        b"PROXY  TCP4 192.168.0.1 192.168.0.11 1 2\r\n",  # two spaces
        b"PROXY TCP4 \xc0\xa8\x00\x01 192.168.0.11 1 2\r\n",
        b"PROXX TCP4",
        b"\x0c\x00\x01\x00",  # a netbus frame: a trusted proxy forwarded no header
        b"GET /ws HTTP/1.1\r\n",
    ],
)
def test_v1_malformed(header: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(header)
    assert info.value.kind == "proxy_header"


def test_v1_is_bounded() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN " + b"x" * (MAX_V1 - 16)) is None  # 105 bytes, no CRLF
    with pytest.raises(ProtocolError):
        parser.feed(b"xx")  # 107 bytes and still no CRLF


# ---------------------------------------------------------------------------------- v2
def test_v2_inet_with_tlvs() -> None:
    tlv = bytes((0x04,)) + (3).to_bytes(2, "big") + b"abc"  # PP2_TYPE_NOOP
    data = encode_v2(("203.0.113.7", 50000), ("10.0.0.1", 6080), tlvs=tlv)
    # Built by hand from the specification, independently of encode_v2:
    assert data == (
        V2_SIGNATURE
        + bytes((0x21, 0x11, 0x00, 12 + 6))
        + bytes((203, 0, 113, 7, 10, 0, 0, 1))
        + (50000).to_bytes(2, "big")
        + (6080).to_bytes(2, "big")
        + tlv
    )
    info, rest = parse(data + b"\x0c\x00")
    assert info == ProxyInfo(2, ("203.0.113.7", 50000), ("10.0.0.1", 6080))
    assert rest == b"\x0c\x00"


def test_v2_inet6_local_unspec_unix() -> None:
    info, _ = parse(encode_v2(("2001:db8::7", 1234), ("2001:db8::1", 6081)))
    assert info == ProxyInfo(2, ("2001:db8::7", 1234), ("2001:db8::1", 6081))
    assert parse(encode_v2(None))[0] == ProxyInfo(2, None)  # LOCAL: a health check
    unspec = V2_SIGNATURE + bytes((0x21, 0x00, 0, 0))
    assert parse(unspec)[0] == ProxyInfo(2, None)
    unix = V2_SIGNATURE + bytes((0x21, 0x31)) + (216).to_bytes(2, "big") + bytes(216)
    assert parse(unix)[0] == ProxyInfo(2, None)


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + bytes((0x11, 0x11, 0, 12)) + bytes(12),  # version 1 in a v2 header
        V2_SIGNATURE + bytes((0x22, 0x11, 0, 12)) + bytes(12),  # command 2
        V2_SIGNATURE + bytes((0x21, 0x12, 0, 12)) + bytes(12),  # DGRAM
        V2_SIGNATURE + bytes((0x21, 0x11, 0, 11)) + bytes(11),  # INET addresses truncated
        V2_SIGNATURE + bytes((0x21, 0x21, 0, 12)) + bytes(12),  # INET6 truncated
        V2_SIGNATURE + bytes((0x21, 0x41, 0, 0)),  # family 4
        V2_SIGNATURE[:5] + b"X",
    ],
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(data)


def test_v2_is_bounded_before_buffering() -> None:
    parser = ProxyHeaderParser()
    head = V2_SIGNATURE + bytes((0x21, 0x11)) + (MAX_V2_PAYLOAD + 1).to_bytes(2, "big")
    with pytest.raises(ProtocolError):
        parser.feed(head)  # refused from the length alone


def test_looks_like_proxy_needs_a_whole_signature() -> None:
    assert looks_like_proxy(b"PROXY TCP4 ...")
    assert looks_like_proxy(V2_SIGNATURE + b"\x21")
    assert not looks_like_proxy(b"PROX")
    assert not looks_like_proxy(V2_SIGNATURE[:11])
    assert not looks_like_proxy(b"\x0c\x00\x00\x00\x01\x00")


# ------------------------------------------------------------------------------- fuzzing
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyInfo]:
    address = draw(st.one_of(ipv4, ipv6))
    family = ipaddress.ip_address(address).version
    other = draw(ipv4 if family == 4 else ipv6)
    src, dst = (address, draw(ports)), (other, draw(ports))
    if draw(st.booleans()):
        return encode_v1(src, dst), ProxyInfo(1, src, dst)
    tlvs = draw(st.binary(max_size=64))
    return encode_v2(src, dst, tlvs=tlvs), ProxyInfo(2, src, dst)


@given(headers(), st.binary(max_size=64), st.data())
def test_any_split_gives_the_same_header_and_leftover(
    case: tuple[bytes, ProxyInfo], tail: bytes, data: st.DataObject
) -> None:
    header, expected = case
    stream = header + tail
    parser = ProxyHeaderParser()
    at, info = 0, None
    while at < len(stream):
        step = data.draw(st.integers(1, len(stream) - at))
        got = parser.feed(stream[at : at + step])
        at += step
        if got is not None and info is None:
            info = got
            assert at >= len(header)
    assert info == expected
    assert parser.leftover == tail


@given(st.binary(max_size=300), st.data())
def test_garbage_only_ever_raises_protocol_error(blob: bytes, data: st.DataObject) -> None:
    parser = ProxyHeaderParser()
    at = 0
    try:
        while at < len(blob):
            step = data.draw(st.integers(1, len(blob) - at))
            parser.feed(blob[at : at + step])
            at += step
    except ProtocolError as exc:
        assert exc.kind == "proxy_header"
    assert len(parser._buf) <= max(MAX_V1, 16 + MAX_V2_PAYLOAD)


@given(st.sampled_from([b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE]), st.binary(max_size=200))
def test_mutated_headers_never_raise_anything_else(prefix: bytes, blob: bytes) -> None:
    try:
        parse(prefix + blob)
    except ProtocolError as exc:
        assert exc.kind == "proxy_header"
