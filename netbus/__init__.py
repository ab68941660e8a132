"""netbus: an asyncio game-server framework (gateway, services, guest login, talkroom)."""

from netbus.client import Client, Push
from netbus.errors import (
    BadRequest,
    ConfigError,
    ConnectionClosed,
    LocalProtocolError,
    LoginRequired,
    NetbusError,
    NotAllowed,
    ProtocolError,
    RequestFailed,
    RequestRefused,
    RequestTimeout,
    ServiceUnavailable,
)
from netbus.protocol import CodecRegistry, ProtoType, RequestStatus
from netbus.service import Service, ServiceServer, User, client_codecs, command
from netbus.session import Session, SessionTable

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Client",
    "CodecRegistry",
    "ConfigError",
    "ConnectionClosed",
    "LocalProtocolError",
    "LoginRequired",
    "NetbusError",
    "NotAllowed",
    "ProtoType",
    "ProtocolError",
    "Push",
    "RequestFailed",
    "RequestRefused",
    "RequestStatus",
    "RequestTimeout",
    "Service",
    "ServiceServer",
    "ServiceUnavailable",
    "Session",
    "SessionTable",
    "User",
    "__version__",
    "client_codecs",
    "command",
]
