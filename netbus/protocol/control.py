"""The gateway control channel (stype 0) and gateway<->service notices (docs/protocol.md §6.3, §7).

These are the only commands the framework core defines; every application command (talkroom,
auth, your game) is declared by its service. `CONTROL_CODECS` is an immutable module constant:
every client and server combines it with the registries its services declare.
"""

from __future__ import annotations

from enum import IntEnum

from netbus.protocol.codec import I16, STR, U16, FieldsCodec
from netbus.protocol.header import PRELOGIN_BIT
from netbus.protocol.registry import CodecRegistry, Direction

__all__ = [
    "CONTROL_CODECS",
    "CONTROL_STYPE",
    "GATEWAY_ONLY_CTYPES",
    "USER_DISCONNECT",
    "GatewayCmd",
    "RequestStatus",
    "is_prelogin",
]

CONTROL_STYPE = 0  #: the gateway's own channel; never forwarded to a service
USER_DISCONNECT = 10000  #: gateway -> every service, utag = uid of the user who left (§6.3)
#: ctypes only the gateway may send to a service; a client packet carrying one is dropped
GATEWAY_ONLY_CTYPES = range(10000, 11000)


def is_prelogin(utag: int) -> bool:
    """True for a pre-login connection key, False for a uid (docs/protocol.md §8)."""
    return utag >= PRELOGIN_BIT


class GatewayCmd(IntEnum):
    """Control commands on stype 0 (docs/protocol.md §7)."""

    HEARTBEAT = 1  #: client -> gateway; the gateway answers with a HEARTBEAT (null body)
    SERVICE_UNAVAILABLE = 2  #: gateway -> client: {"stype", "ctype"} of the undeliverable packet
    SHUTDOWN = 3  #: gateway -> client: the gateway is going away; reconnect elsewhere
    RATE_LIMITED = 4  #: gateway -> client: packets were dropped by the rate limit
    LOGIN_REQUIRED = 5  #: gateway -> client: {"stype", "ctype"} refused before login
    SERVICE_AVAILABLE = 6  #: gateway -> client: {"stype", "ctype": 0}: the service is back
    SERVICE_BUSY = 7  #: reserved: trunk backpressure
    RESUME = 8  #: reserved: accounts/resume
    RESUME_LOST = 9  #: reserved: accounts/resume
    REQUEST_FAILED = 10  #: gateway/service -> client: {"stype", "ctype", "status"}


class RequestStatus(IntEnum):
    """Why a request was answered with REQUEST_FAILED (docs/protocol.md §7.1).

    Negative so that they can never be mistaken for a service's OK (1); a service's own
    statuses (talkroom INVALID_OPT = -100 ...) travel in the service's own replies instead.
    """

    UNKNOWN_COMMAND = -1  #: the service has no such ctype (or the stype is not served here)
    BAD_REQUEST = -2  #: the body could not be decoded or was refused as invalid
    SERVER_ERROR = -3  #: the handler raised; the service logged it
    SERVICE_BUSY = -4  #: backpressure: try again later
    NOT_ALLOWED = -5  #: the command is not allowed here or now (e.g. a gateway-only ctype)


def _control_codecs() -> CodecRegistry:
    empty = FieldsCodec()
    notice = FieldsCodec(("stype", U16), ("ctype", U16))
    to_client = {
        GatewayCmd.HEARTBEAT: empty,
        GatewayCmd.SERVICE_UNAVAILABLE: notice,
        GatewayCmd.SHUTDOWN: FieldsCodec(("reason", STR)),
        GatewayCmd.RATE_LIMITED: FieldsCodec(("dropped", U16)),
        GatewayCmd.LOGIN_REQUIRED: notice,
        GatewayCmd.SERVICE_AVAILABLE: notice,
        GatewayCmd.REQUEST_FAILED: FieldsCodec(("stype", U16), ("ctype", U16), ("status", I16)),
    }
    table = {(CONTROL_STYPE, int(c), Direction.TO_CLIENT): codec for c, codec in to_client.items()}
    table[(CONTROL_STYPE, GatewayCmd.HEARTBEAT, Direction.TO_SERVER)] = empty
    return CodecRegistry(table)


#: the control channel's BUF layouts (immutable; combine with ``|``)
CONTROL_CODECS = _control_codecs()
