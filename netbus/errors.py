"""The whole netbus exception tree.

::

    NetbusError
    ├── ProtocolError            a peer broke the wire contract (PROTOCOL.md §2, §3)
    ├── LocalProtocolError       our own code misused an API (also an AssertionError)
    ├── ConfigError              the configuration is invalid (also a ValueError)
    ├── ServiceUnavailable       a request could not reach its service
    │   └── LoginRequired        ... because the connection has not logged in yet
    ├── RegistryUnavailable      the login registry (Redis) failed or did not answer in time
    └── RequestTimeout           no reply arrived in time (also a TimeoutError)

`ProtocolError` is the *one* type that malformed network input ever raises out of
`netbus.protocol`: framing, header, JSON and BUF decoding all use it. Its `kind` is a short,
stable label (``"frame_length"``, ``"bad_json"`` …) used for metrics and logs, so a
rejected packet can be counted by cause without parsing the message text.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LocalProtocolError",
    "LoginRequired",
    "NetbusError",
    "ProtocolError",
    "RegistryUnavailable",
    "RequestTimeout",
    "ServiceUnavailable",
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


class RegistryUnavailable(NetbusError):
    """The login registry (Redis) failed or did not answer within its deadline.

    The gateway answers the login it was binding with SYSTEM_ERROR; users already logged
    in are not affected (routing is local to each gateway).
    """


class RequestTimeout(NetbusError, TimeoutError):
    """A request got no reply within its deadline."""
