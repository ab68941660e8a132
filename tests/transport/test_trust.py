"""Trusted proxies, X-Forwarded-For (rightmost untrusted hop) and WebSocket origins."""

from __future__ import annotations

import pytest

from netbus.config import WebConfig
from netbus.transport.specs import default_origins
from netbus.transport.trust import (
    OriginPolicy,
    TrustedNetworks,
    forwarded_client,
    normalize_origin,
)

PROXIES = TrustedNetworks(["127.0.0.1", "10.0.0.0/8", "::1"])


def test_trusted_networks() -> None:
    assert "127.0.0.1" in PROXIES and "10.1.2.3" in PROXIES and "::1" in PROXIES
    assert "::ffff:10.1.2.3" in PROXIES  # IPv4-mapped counts as IPv4
    assert "127.0.0.2" not in PROXIES and "11.0.0.1" not in PROXIES
    assert "not-an-ip" not in PROXIES and 5 not in PROXIES
    assert not TrustedNetworks([]) and "127.0.0.1" not in TrustedNetworks([])
    with pytest.raises(ValueError):
        TrustedNetworks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        # The client can write anything left of what the proxy appended: rightmost untrusted.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["6.6.6.6", "203.0.113.7, 10.0.0.5"], "203.0.113.7"),  # via 2 proxies
        ("127.0.0.1", ["10.0.0.9, 10.0.0.5"], "10.0.0.9"),  # every hop trusted: the leftmost
        ("198.51.100.1", ["203.0.113.7"], "198.51.100.1"),  # an untrusted peer is itself
        ("127.0.0.1", ["junk, 203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7, junk"], "127.0.0.1"),  # garbage ends the walk
        ("127.0.0.1", ["[2001:db8::7]"], "2001:db8::7"),
        ("127.0.0.1", [], "127.0.0.1"),
    ],
)
def test_forwarded_client(peer: str, headers: list[str], client: str) -> None:
    assert forwarded_client(peer, headers, PROXIES) == client


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("HTTPS://Game.Example.COM", "https://game.example.com"),
        ("https://game.example.com:443", "https://game.example.com"),
        ("http://game.example.com:80/", "http://game.example.com"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", "null"),
    ],
)
def test_normalize_origin(origin: str, normal: str) -> None:
    assert normalize_origin(origin) == normal


@pytest.mark.parametrize("bad", ["game.example.com", "http://", "http://x/path", "http://x:99999"])
def test_not_an_origin(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(bad)


def test_origin_policy() -> None:
    policy = OriginPolicy(["https://game.example.com", "http://localhost:8080"])
    assert policy.allows(None)  # no Origin header: not a browser page
    assert policy.allows("https://GAME.example.com:443")
    assert policy.allows("http://localhost:8080")
    assert not policy.allows("https://evil.example")
    assert not policy.allows("http://localhost:8081")
    assert not policy.allows("null")
    assert not policy.allows("%%%")
    assert OriginPolicy(["*"]).allows("https://anything.example")
    assert not OriginPolicy([]).allows("https://game.example.com")


def test_default_origins_are_the_web_roles() -> None:
    loopback = default_origins(WebConfig(host="127.0.0.1", port=8080))
    assert loopback == ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]
    assert default_origins(WebConfig(host="game.example.com", port=80)) == [
        "http://game.example.com"
    ]
    wildcard = default_origins(WebConfig(host="0.0.0.0", port=8080))
    assert "http://127.0.0.1:8080" in wildcard and len(wildcard) >= 3
