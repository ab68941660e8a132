"""What a link reads before its first frame: a PROXY header, a link handshake, or a check.

A link runs its steps in order over the first bytes of the connection; each step consumes
what it needs and hands the rest on. Steps that *gate* the link (a trusted proxy's header,
link authentication) keep the link's owner from seeing it until they are done: nothing is
delivered, nothing may be sent, and a failure closes the connection before a single frame is
read. The steps are plain objects over the sans-I/O parsers of `netbus.protocol`; the link
writes what they want sent and applies what they learned (the client's address).
"""

from __future__ import annotations

from netbus.errors import ProtocolError
from netbus.protocol.linkauth import AuthState, GatewayHandshake, ServiceHandshake
from netbus.protocol.proxy import ProxyHeaderParser, looks_like_proxy
from netbus.transport.reasons import CloseReason

__all__ = ["AUTH_TIMEOUT", "AuthStep", "ProxyStep", "SniffStep", "Step"]

AUTH_TIMEOUT = 5.0  #: seconds a service link has to finish its handshake
PROXY_TIMEOUT = 10.0  #: seconds a trusted proxy has to send its header


class Step:
    """One preamble step. ``gates``: the link opens only after it (and the steps before)."""

    gates = False
    timeout = 0.0  #: seconds the step may take (gating steps), enforced by the link
    failure = CloseReason.PROTOCOL_ERROR  #: why the link closes if the step fails
    source: tuple[str, int] | None = None  #: the client's address, if the step learned it

    def start(self) -> bytes:
        """Bytes to send when the step begins."""
        return b""

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Consume ``data``: the bytes after the step once it is done, else None.

        Raises:
            ProtocolError: the peer failed the step; close the link.
        """
        raise NotImplementedError

    def output(self) -> bytes:
        """Bytes the step wants sent after `feed`."""
        return b""


class ProxyStep(Step):
    """A trusted proxy's PROXY v1/v2 header (required: none is a protocol error)."""

    gates = True
    timeout = PROXY_TIMEOUT

    def __init__(self) -> None:
        self._parser = ProxyHeaderParser()

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | None:
        info = self._parser.feed(data)
        if info is None:
            return None
        self.source = info.source
        return self._parser.leftover


class SniffStep(Step):
    """An untrusted peer on a listener that expects PROXY headers must not send one."""

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | None:
        if looks_like_proxy(data):
            raise ProtocolError("proxy_untrusted", "PROXY header from a peer not trusted")
        return bytes(data)


class AuthStep(Step):
    """Service-link authentication (`netbus.protocol.linkauth`), either side."""

    gates = True
    timeout = AUTH_TIMEOUT
    failure = CloseReason.AUTH_FAILED

    def __init__(self, handshake: GatewayHandshake | ServiceHandshake) -> None:
        self._handshake = handshake

    def start(self) -> bytes:
        return self._handshake.data_to_send()

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | None:
        state = self._handshake.receive_data(data)
        if state is AuthState.FAILED:
            raise self._handshake.error or ProtocolError("link_auth")
        if state is AuthState.DONE:
            return self._handshake.leftover
        return None

    def output(self) -> bytes:
        return self._handshake.data_to_send()
