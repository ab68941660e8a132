"""`Service`: the unit a game developer writes. One per stype, registered with a manager."""

from __future__ import annotations

from collections.abc import Awaitable

from netbus.service.context import Request
from netbus.session import Session

__all__ = ["HandlerResult", "Service"]

HandlerResult = Awaitable[None] | None


class Service:
    """Base class for services.

    Override the handlers you need. A handler may be a plain function (runs inline, the
    fast path) or ``async`` (the manager runs it as a tracked task). Exceptions are logged and
    counted by the manager; they never reach the link.

    Attributes:
        stype: the service number it serves.
        name: for logs and metrics.
        is_transfer: the manager hands over the raw ``cmd_buf`` without decoding the body
            (the gateway's forwarding services).
    """

    stype: int = -1
    name: str = "service"
    is_transfer: bool = False

    def on_player_recv_cmd(self, req: Request) -> HandlerResult:
        """A command from a player (through a gateway or a direct client connection)."""
        return None

    def on_service_recv_cmd(self, req: Request) -> HandlerResult:
        """A command that came back from a service link (used by gateways)."""
        return None

    def on_player_disconnect(self, session: Session, utag: int) -> HandlerResult:
        """The user ``utag`` on ``session`` is gone (USER_DISCONNECT or a closed client)."""
        return None

    def on_link_lost(self, session: Session) -> HandlerResult:
        """A gateway link closed: every user that came through ``session`` is gone."""
        return None
