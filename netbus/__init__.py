"""netbus: an asyncio game-server framework (gateway, services, guest login, talkroom)."""

from netbus.client import Client, Push
from netbus.errors import (
    ConfigError,
    LocalProtocolError,
    LoginRequired,
    NetbusError,
    ProtocolError,
    RequestTimeout,
    ServiceUnavailable,
)
from netbus.protocol import ProtoType, Stype
from netbus.service import Request, Service, ServiceManager, UserRef
from netbus.session import Session, SessionTable

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "LocalProtocolError",
    "LoginRequired",
    "NetbusError",
    "ProtoType",
    "ProtocolError",
    "Push",
    "Request",
    "RequestTimeout",
    "Service",
    "ServiceManager",
    "ServiceUnavailable",
    "Session",
    "SessionTable",
    "Stype",
    "UserRef",
    "__version__",
]
