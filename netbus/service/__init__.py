"""The service SDK: declare commands with ``@command`` on a `Service`, run it in a
`ServiceServer`, talk to `User`\\ s (docs/services.md)."""

from netbus.errors import BadRequest, NotAllowed, RequestRefused
from netbus.protocol.control import RequestStatus
from netbus.service.base import HookResult, Service
from netbus.service.codecs import client_codecs, declaration
from netbus.service.commands import NO_ERROR_REPLY, CommandSpec, command
from netbus.service.server import ServiceServer
from netbus.service.user import User

__all__ = [
    "NO_ERROR_REPLY",
    "BadRequest",
    "CommandSpec",
    "HookResult",
    "NotAllowed",
    "RequestRefused",
    "RequestStatus",
    "Service",
    "ServiceServer",
    "User",
    "client_codecs",
    "command",
    "declaration",
]
