"""The security headers of every response on the web role's public port (docs/security.md).

The page holds a credential (the guest key in ``localStorage``) and talks to exactly one
gateway, so its policy is strict: scripts, styles and images only from its own origin (the
page has no inline script or style), WebSocket connections only to the configured gateway,
never framed by another site (clickjacking), no MIME sniffing, no referrer.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["DEFAULT_GATEWAY_PORT", "connect_source", "security_headers"]

#: the port the page falls back to when ``web.gateway_url`` is unset (static/app.js)
DEFAULT_GATEWAY_PORT = 6081

#: a Host header's host part we are willing to echo into a header: a DNS name, IPv4, or a
#: bracketed IPv6 literal (anything else would be header or policy injection)
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_WS_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def _host_of(host_header: str) -> str | None:
    """The host part of a ``Host`` header (``name:port``, ``[v6]:port``), if well formed."""
    host = host_header.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[: end + 1] if end > 0 else ""
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host if _HOST.fullmatch(host) else None


def connect_source(gateway_url: str | None, host_header: str) -> str:
    """The CSP ``connect-src`` value: where the page's WebSocket may go, and nowhere else.

    Mirrors how ``static/app.js`` picks its gateway: ``web.gateway_url`` when set (an
    absolute ``ws(s)://`` or ``http(s)://`` URL gives its origin; a relative one is this
    page's own origin), else this host at port 6081 (``ws`` or ``wss``, as the page's scheme).
    """
    if gateway_url:
        parts = urlsplit(gateway_url.strip())
        if not parts.scheme:
            return "'self'"
        scheme = _WS_SCHEMES.get(parts.scheme.lower())
        hostname = _host_of(parts.netloc.rsplit("@", 1)[-1])
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            hostname = None
        if scheme is None or hostname is None:
            return "'none'"  # the page refuses such a URL too
        return f"{scheme}://{hostname}{port}"
    hostname = _host_of(host_header)
    if hostname is None:
        return "'none'"
    default = DEFAULT_GATEWAY_PORT
    return f"ws://{hostname}:{default} wss://{hostname}:{default}"


def security_headers(gateway_url: str | None, host_header: str) -> dict[str, str]:
    """Headers for one response of the public web port."""
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect_source(gateway_url, host_header)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
