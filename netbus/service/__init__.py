"""Services: the `Service` base class, the `ServiceManager` dispatcher and `ServiceHost`."""

from netbus.service.base import HandlerResult, Service
from netbus.service.context import Request, UserRef
from netbus.service.host import ServiceHost
from netbus.service.manager import ServiceManager

__all__ = ["HandlerResult", "Request", "Service", "ServiceHost", "ServiceManager", "UserRef"]
