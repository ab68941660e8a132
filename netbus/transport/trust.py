"""Who a listener believes: trusted proxies (PROXY protocol, X-Forwarded-For) and WS origins.

A peer's address is whatever TCP says, unless the peer is a configured trusted proxy: then
the PROXY protocol header (`netbus.protocol.proxy`) or, on a WebSocket upgrade, the
``X-Forwarded-For`` header names the client, and every limit and log line sees that client
(docs/security.md "Behind a proxy"). Nobody else may name an address.

Browsers attach ``Origin`` to a WebSocket upgrade and apply no CORS to it, so any web page
could otherwise open gateway connections from its visitors' browsers: `OriginPolicy` says
which page origins a WS listener accepts. Requests without ``Origin`` (non-browser clients)
pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "ProxyTrust", "TrustedNetworks", "forwarded_client", "normalize_origin"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedNetworks:
    """A set of addresses and networks (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``).

    Raises:
        ValueError: an entry is neither an IP address nor a network.
    """

    __slots__ = ("_networks",)

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, str) or not self._networks:
            return False
        addr = _address(ip)
        if addr is None:
            return False
        return any(addr in net for net in self._networks if net.version == addr.version)

    def __repr__(self) -> str:
        return f"TrustedNetworks({[str(n) for n in self._networks]})"


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """A listener's proxy rule.

    Attributes:
        trusted: the proxies' addresses.
        proxy_protocol: connections from ``trusted`` must open with a PROXY v1/v2 header
            (refused without one); a header from anyone else is a protocol error. When
            False, trusted proxies are believed only for ``X-Forwarded-For`` (WS).
    """

    trusted: TrustedNetworks
    proxy_protocol: bool = False


def forwarded_client(peer_ip: str, forwarded_for: Iterable[str], trusted: TrustedNetworks) -> str:
    """The client address behind a chain of proxies: the rightmost untrusted hop.

    ``forwarded_for`` are the ``X-Forwarded-For`` header values in order (each a comma list
    that proxies append to). Starting from the connection's peer, each trusted hop is
    replaced by the address it says it forwarded for, right to left; the first address that
    is not a trusted proxy is the client. An entry that is not an IP address ends the walk
    (the last address known good stands), so garbage never becomes an identity.
    """
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    client = peer_ip
    while client in trusted and hops:
        addr = _address(hops.pop())
        if addr is None:
            break
        client = str(addr)
    return client


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case without a default port, for comparison.

    ``"null"`` (opaque origins: sandboxed frames, ``file:``) stays ``"null"``. Raises
    ValueError for text that is not an origin.
    """
    text = origin.strip()
    if text.lower() == "null":
        return "null"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"not an origin: {origin!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"not an origin: {origin!r}") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """Which ``Origin`` values a WebSocket listener accepts (``"*"`` in the list: any).

    A request without an ``Origin`` header always passes: it does not come from a browser
    page, and non-browser clients can claim any origin anyway. The check stops other web
    sites from using their visitors' browsers against the gateway.
    """

    __slots__ = ("_allowed", "any")

    def __init__(self, allowed: Iterable[str]) -> None:
        entries = list(allowed)
        self.any = "*" in entries
        self._allowed = frozenset(normalize_origin(o) for o in entries if o != "*")

    def allows(self, origin: str | None) -> bool:
        if origin is None or self.any:
            return True
        try:
            return normalize_origin(origin) in self._allowed
        except ValueError:
            return False

    @property
    def allowed(self) -> frozenset[str]:
        return self._allowed

    def __repr__(self) -> str:
        return "OriginPolicy(*)" if self.any else f"OriginPolicy({sorted(self._allowed)})"
