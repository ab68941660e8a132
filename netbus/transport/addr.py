"""Client addresses: the IP of a peer, and the key per-IP limits count it under.

Per-IP limits aggregate addresses by network prefix (``ip_key``), so that rotating addresses
inside one block (an IPv6 /64 is one subscriber) does not escape them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["UNKNOWN_IP", "ip_key", "is_loopback", "peer_ip"]

UNKNOWN_IP = "?"  #: the address of a peer whose transport reports none


def peer_ip(peer: Any) -> str:
    """The IP text of a transport's ``peername`` (a (host, port, ...) tuple), else ``"?"``."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return UNKNOWN_IP


def ip_key(ip: str, *, v4_prefix: int = 32, v6_prefix: int = 64) -> str:
    """The network ``ip`` belongs to, as the key of a per-IP limit.

    ``ip_key("203.0.113.7", v4_prefix=24)`` is ``"203.0.113.0/24"``. IPv4-mapped IPv6
    addresses count as IPv4. Text that is not an IP address is returned unchanged.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        if v4_prefix >= 32:
            return str(addr)
        return str(ipaddress.IPv4Network((addr, v4_prefix), strict=False))
    if v6_prefix >= 128:
        return str(addr)
    return str(ipaddress.IPv6Network((addr, v6_prefix), strict=False))


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
