"""The whole netbus exception tree.

::

    NetbusError
    ├── ProtocolError            a peer broke the wire contract (PROTOCOL.md §2, §3)
    ├── LocalProtocolError       our own code misused an API (also an AssertionError)
    ├── ConfigError              the configuration is invalid (also a ValueError)
    ├── StartError               a server could not start (port taken, supervisor gone)
    ├── ServiceUnavailable       a request could not reach its service
    │   └── LoginRequired        ... because the connection has not logged in yet
    ├── RequestFailed            the service answered REQUEST_FAILED (unknown command, bad body…)
    ├── RequestRefused           raised by a handler: answer this request with a framework status
    │   ├── BadRequest           ... BAD_REQUEST: the body is invalid
    │   └── NotAllowed           ... NOT_ALLOWED: not allowed here or now
    ├── ConnectionClosed         the client's connection closed or could not be opened
    │                            (also a ConnectionError)
    ├── RegistryUnavailable      the login registry (Redis) failed or did not answer in time
    └── RequestTimeout           no reply arrived in time (also a TimeoutError)

`ProtocolError` is the *one* type that malformed network input ever raises out of
`netbus.protocol`: framing, header, JSON and BUF decoding all use it. Its `kind` is a short,
stable label (``"frame_length"``, ``"bad_json"`` …) used for metrics and logs, so a
rejected packet can be counted by cause without parsing the message text.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConfigError",
    "ConnectionClosed",
    "LocalProtocolError",
    "LoginRequired",
    "NetbusError",
    "NotAllowed",
    "ProtocolError",
    "RegistryUnavailable",
    "RequestFailed",
    "RequestRefused",
    "RequestTimeout",
    "ServiceUnavailable",
    "StartError",
]


class NetbusError(Exception):
    """Root of every exception netbus raises on purpose."""


class ProtocolError(NetbusError):
    """The peer sent bytes that break the wire contract.

    The caller's only correct reaction is to drop the packet (inside a service) or the
    connection (at a listener); the instance says why in ``kind`` and ``str(exc)``.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class LocalProtocolError(NetbusError, AssertionError):
    """Our own code asked for something the protocol forbids (a bug, not bad input)."""


class ConfigError(NetbusError, ValueError):
    """The configuration file or environment holds an invalid value."""


class StartError(NetbusError):
    """A server could not start: a port is taken, a TLS file is unreadable, or the
    ``netbus up`` that started it is already gone. The message says which and why."""


class ServiceUnavailable(NetbusError):
    """The gateway reported that the service for ``stype`` cannot be reached."""

    def __init__(self, stype: int, ctype: int) -> None:
        self.stype = stype
        self.ctype = ctype
        super().__init__(f"service {stype} unavailable (ctype {ctype})")


class LoginRequired(ServiceUnavailable):
    """The gateway refused a packet sent before login (only Auth commands pass)."""

    def __init__(self, stype: int, ctype: int) -> None:
        NetbusError.__init__(self, f"log in before using service {stype} (ctype {ctype})")
        self.stype = stype
        self.ctype = ctype


class RequestFailed(NetbusError):
    """The service (or gateway) answered a request with REQUEST_FAILED (docs/protocol.md §7).

    ``status`` is a `netbus.protocol.control.RequestStatus` value: -1 unknown command, -2 bad
    request, -3 server error, -4 service busy, -5 not allowed.
    """

    def __init__(self, stype: int, ctype: int, status: int) -> None:
        self.stype = stype
        self.ctype = ctype
        self.status = status
        super().__init__(f"request ({stype}, {ctype}) failed with status {status}")


class RequestRefused(NetbusError):
    """Raised inside a command handler to answer with a framework status instead of a reply.

    The dispatcher answers REQUEST_FAILED with ``status`` (or the command's declared in-kind
    ``error_reply``) and counts it; the message is logged (sampled), never sent.
    """

    status = -2

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message or type(self).__name__)


class BadRequest(RequestRefused):
    """The request's body is invalid (REQUEST_FAILED status -2, BAD_REQUEST)."""

    status = -2


class NotAllowed(RequestRefused):
    """The request is not allowed here or now (REQUEST_FAILED status -5, NOT_ALLOWED)."""

    status = -5


class ConnectionClosed(NetbusError, ConnectionError):
    """The client's connection closed (or could not be opened); ``reason`` says why.

    Pending requests fail with it when the connection ends, and `Client.connect` raises it
    for every way a connection attempt can fail (refused, reset, TLS, WebSocket handshake,
    timeout), with the original exception as ``__cause__``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RegistryUnavailable(NetbusError):
    """The login registry (Redis) failed or did not answer within its deadline.

    The gateway answers the login it was binding with SYSTEM_ERROR; users already logged
    in are not affected (routing is local to each gateway).
    """


class RequestTimeout(NetbusError, TimeoutError):
    """A request got no reply within its deadline."""
