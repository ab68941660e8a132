"""Why a link closed: one enum for every layer, and the WebSocket close code each one sends.

Code compares and counts `CloseReason` members, never strings. The human text travels only in
logs and in the WebSocket close frame's reason field. Codes 4000-4999 are netbus's own
application codes (docs/protocol.md §2.2 lists them); a browser client reads ``event.code``
to tell a kick from a shutdown without parsing text.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["CloseReason"]


class CloseReason(Enum):
    """A close reason: ``text`` for logs and close frames, ``ws_code`` for WebSocket peers."""

    #: closed by our own side without a more specific reason (a client's close(), tests)
    NORMAL = ("closed", 1000)
    #: the peer closed the connection (EOF / close frame)
    PEER_CLOSED = ("peer closed", 1000)
    #: the transport failed (reset, broken pipe)
    LOST = ("connection lost", 1006)
    #: the server is shutting down; reconnect (possibly elsewhere)
    SHUTDOWN = ("server shutting down", 1001)
    #: clients that did not leave within the shutdown drain deadline
    SHUTDOWN_DEADLINE = ("shutdown deadline", 1001)
    #: bytes that break the wire contract (framing, header, WS framing)
    PROTOCOL_ERROR = ("protocol error", 1008)
    #: a WebSocket text message (the protocol is binary only)
    TEXT_MESSAGE = ("binary messages only", 1003)
    #: a frame or message larger than the listener allows
    TOO_BIG = ("message too big", 1009)
    #: a direct player sent a packet its service could not decode
    MALFORMED_PACKET = ("malformed packet", 1008)
    #: our own handler raised while opening the link (a bug, logged with its traceback)
    HANDLER_ERROR = ("internal error", 1011)
    #: the account logged in from another connection (RELOGIN was sent first)
    RELOGIN = ("account logged in elsewhere", 4000)
    #: nothing received for the listener's idle timeout
    IDLE_TIMEOUT = ("idle timeout", 4001)
    #: packets kept coming far over the rate limit
    RATE_LIMITED = ("rate limit exceeded", 4002)
    #: the peer stopped reading and its output queue passed its cap
    SLOW_CONSUMER = ("slow consumer: output queue over cap", 4003)
    #: the listener already holds max_connections
    LISTENER_FULL = ("listener full", 4004)
    #: the peer's address already holds max_per_ip connections
    TOO_MANY_PER_IP = ("too many connections from one address", 4005)
    #: the WebSocket upgrade (or a trusted proxy's PROXY header) did not arrive in time
    HANDSHAKE_TIMEOUT = ("handshake not completed in time", 4006)
    #: the WebSocket upgrade request was refused (not a valid upgrade)
    HANDSHAKE_FAILED = ("websocket handshake failed", 4007)
    #: a frame was left unfinished past its deadline
    FRAME_TIMEOUT = ("frame not completed in time", 4008)
    #: a service link failed cluster authentication
    AUTH_FAILED = ("link authentication failed", 4009)
    #: a service link was silent for three heartbeats (half-open)
    HEARTBEAT_TIMEOUT = ("heartbeat timeout: peer silent", 4010)
    #: the upgrade came from a page origin the listener does not allow (answered HTTP 403,
    #: so no WebSocket ever sees this code)
    FORBIDDEN_ORIGIN = ("origin not allowed", 4011)
    #: the process's budget for unfinished input was exceeded and this connection had held
    #: its unfinished frame the longest
    INPUT_BUDGET = ("unfinished input over the process budget", 4012)
    #: WebSocket pings/pongs kept coming far over their own budget
    CONTROL_FLOOD = ("too many control frames", 4013)
    #: a gateway stopped its link to a service on purpose
    UPSTREAM_STOPPED = ("upstream stopped", 1000)
    #: a connect attempt was cancelled or timed out
    CONNECT_CANCELLED = ("connect cancelled", 1000)

    def __init__(self, text: str, ws_code: int) -> None:
        self.text = text
        self.ws_code = ws_code

    def __str__(self) -> str:
        return self.text
