"""Peer addresses and the per-IP limit keys (prefix aggregation)."""

from __future__ import annotations

import pytest

from netbus.transport.addr import UNKNOWN_IP, ip_key, is_loopback, peer_ip


def test_peer_ip() -> None:
    assert peer_ip(("203.0.113.7", 5555)) == "203.0.113.7"
    assert peer_ip(("::1", 5555, 0, 0)) == "::1"
    assert peer_ip(None) == UNKNOWN_IP
    assert peer_ip(()) == UNKNOWN_IP
    assert peer_ip("/tmp/sock") == UNKNOWN_IP


@pytest.mark.parametrize(
    ("ip", "v4", "v6", "key"),
    [
        ("203.0.113.7", 32, 64, "203.0.113.7"),
        ("203.0.113.7", 24, 64, "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6"),
        ("::ffff:203.0.113.7", 24, 64, "203.0.113.0/24"),
        ("not an ip", 24, 64, "not an ip"),
    ],
)
def test_ip_key(ip: str, v4: int, v6: int, key: str) -> None:
    assert ip_key(ip, v4_prefix=v4, v6_prefix=v6) == key


def test_rotating_addresses_in_one_block_share_a_key() -> None:
    keys = {ip_key(f"2001:db8:0:7::{n:x}") for n in range(1, 500)}
    assert keys == {"2001:db8:0:7::/64"}


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("?", False),
    ],
)
def test_is_loopback(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback
