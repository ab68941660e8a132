"""netbus/roles/web/security.py: the page's CSP lets it connect to its gateway only."""

from __future__ import annotations

import pytest

from netbus.roles.web.security import connect_source, security_headers


@pytest.mark.parametrize(
    ("gateway_url", "host", "expected"),
    [
        (None, "play.example.com:8080", "ws://play.example.com:6081 wss://play.example.com:6081"),
        (None, "127.0.0.1", "ws://127.0.0.1:6081 wss://127.0.0.1:6081"),
        (None, "[::1]:8080", "ws://[::1]:6081 wss://[::1]:6081"),
        (None, "evil.example; script-src *", "'none'"),  # a Host header cannot inject policy
        (None, "a b", "'none'"),
        ("wss://gw.example.com/ws", "x", "wss://gw.example.com"),
        ("ws://10.0.0.2:6081/ws?x=1", "x", "ws://10.0.0.2:6081"),
        ("https://gw.example.com:8443/ws", "x", "wss://gw.example.com:8443"),
        ("http://user:pw@gw.example.com/ws", "x", "ws://gw.example.com"),
        ("/ws", "x", "'self'"),
        ("ftp://gw.example.com/", "x", "'none'"),
        ("ws://gw.example.com:99999/", "x", "'none'"),
        ('wss://play.example.com/ws?x="</script>', "x", "wss://play.example.com"),
    ],
)
def test_connect_source(gateway_url: str | None, host: str, expected: str) -> None:
    assert connect_source(gateway_url, host) == expected


def test_headers() -> None:
    headers = security_headers("wss://gw.example.com/ws", "web.example.com")
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src wss://gw.example.com; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
