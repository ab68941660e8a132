"""Service-link authentication: a mutual HMAC-SHA256 challenge-response on the cluster secret.

A gateway<->service link proves, before any frame is read on either side, that both ends
hold the cluster secret (docs/protocol.md §2.3). The service (the listener) speaks first:

.. code-block:: text

    service -> gateway   HELLO  "NBLA" | version u8 | nonce_s (32)                  37 bytes
    gateway -> service   PROOF  "NBLA" | version u8 | nonce_g (32) | mac_g (32)     69 bytes
    service -> gateway   PROOF  "NBLA" | version u8 | mac_s (32)                    37 bytes

    mac_g = HMAC-SHA256(secret, "netbus-link gateway" | version | nonce_s | nonce_g)
    mac_s = HMAC-SHA256(secret, "netbus-link service" | version | nonce_s | nonce_g)

Why this shape: both sides contribute a fresh 32-byte nonce, so a recorded proof is useless
on any later link (replay); the two MACs carry different labels, so one side's proof can never
be reflected back as the other's; the service answers with its own proof only after checking
the gateway's, so an unauthenticated peer learns nothing but a random nonce; MACs are compared
in constant time. What it does not do: encrypt or integrity-protect the frames that follow
(an on-path attacker can still read and alter them) -- put links that cross an untrusted
network inside TLS or a VPN (docs/security.md).

Sans-I/O like the rest of `netbus.protocol`: feed bytes with `receive_data`, send what
`data_to_send` returns; after `DONE`, `leftover` holds bytes that belong to the framing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import Enum

from netbus.errors import ProtocolError

__all__ = [
    "HELLO_SIZE",
    "MAGIC",
    "MIN_SECRET",
    "PROOF_SIZE",
    "VERSION",
    "AuthState",
    "GatewayHandshake",
    "ServiceHandshake",
    "gateway_mac",
    "service_mac",
]

MAGIC = b"NBLA"
VERSION = 1  #: the handshake version this module speaks
NONCE_SIZE = 32
MAC_SIZE = 32
HELLO_SIZE = len(MAGIC) + 1 + NONCE_SIZE  #: 37
PROOF_SIZE = len(MAGIC) + 1 + NONCE_SIZE + MAC_SIZE  #: 69, the gateway's proof
SERVICE_PROOF_SIZE = len(MAGIC) + 1 + MAC_SIZE  #: 37
MIN_SECRET = 16  #: shortest cluster secret accepted, in bytes

_GATEWAY_LABEL = b"netbus-link gateway"
_SERVICE_LABEL = b"netbus-link service"


class AuthState(Enum):
    """Where a handshake stands."""

    #: waiting for the peer's next message
    WAITING = "waiting"
    #: both sides proved the secret; `leftover` belongs to the framing
    DONE = "done"
    #: the peer failed (bad magic, version, MAC); the link must be closed unread
    FAILED = "failed"


def gateway_mac(secret: bytes, nonce_s: bytes, nonce_g: bytes, version: int = VERSION) -> bytes:
    """The gateway's proof over both nonces."""
    msg = _GATEWAY_LABEL + bytes((version,)) + nonce_s + nonce_g
    return hmac.new(secret, msg, hashlib.sha256).digest()


def service_mac(secret: bytes, nonce_s: bytes, nonce_g: bytes, version: int = VERSION) -> bytes:
    """The service's proof over both nonces (a different label: no reflection)."""
    msg = _SERVICE_LABEL + bytes((version,)) + nonce_s + nonce_g
    return hmac.new(secret, msg, hashlib.sha256).digest()


def _check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET:
        raise ValueError(f"the cluster secret must be at least {MIN_SECRET} bytes")
    return bytes(secret)


def _nonce(nonce: bytes | None) -> bytes:
    if nonce is None:
        return os.urandom(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce is {NONCE_SIZE} bytes")
    return bytes(nonce)


class _Handshake:
    __slots__ = ("_buf", "_need", "_out", "error", "leftover", "nonce", "secret", "state")

    def __init__(self, secret: bytes, nonce: bytes | None) -> None:
        self.secret = _check_secret(secret)
        self.nonce = _nonce(nonce)
        self.state = AuthState.WAITING
        self.error: ProtocolError | None = None  #: why it failed (kind "link_auth")
        self.leftover = b""  #: bytes received after the handshake: the first frames
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._need = 0

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty)."""
        out, self._out = b"".join(self._out), []
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> AuthState:
        """Consume ``data``; the state afterwards. Never buffers more than one message."""
        if self.state is not AuthState.WAITING:
            if self.state is AuthState.DONE:
                self.leftover += bytes(data)
            return self.state
        self._buf += data
        while self.state is AuthState.WAITING and len(self._buf) >= self._need:
            message = bytes(self._buf[: self._need])
            rest = self._buf[self._need :]
            self._buf = bytearray()
            state = self._message(message)
            if state is AuthState.DONE:
                self.leftover = bytes(rest)
            elif state is AuthState.WAITING:
                self._buf = rest
        if (
            self.state is AuthState.WAITING
            and self._buf
            and not MAGIC.startswith(bytes(self._buf[: len(MAGIC)]))
        ):
            self._fail("not a netbus link handshake")  # fail fast on a stray client
        return self.state

    def _message(self, message: bytes) -> AuthState:
        """Handle one whole message; the state after it."""
        raise NotImplementedError

    def _header(self, message: bytes) -> bool:
        if message[: len(MAGIC)] != MAGIC:
            self._fail("not a netbus link handshake")
            return False
        if message[len(MAGIC)] != VERSION:
            self._fail(f"handshake version {message[len(MAGIC)]}, expected {VERSION}")
            return False
        return True

    def _fail(self, detail: str) -> AuthState:
        self.state = AuthState.FAILED
        self.error = ProtocolError("link_auth", detail)
        self._buf = bytearray()
        self._out = []
        return self.state

    def __repr__(self) -> str:  # never shows the secret
        return f"<{type(self).__name__} {self.state.name}>"


class ServiceHandshake(_Handshake):
    """The service (listening) side: sends HELLO at once, checks the gateway's PROOF.

    Args:
        secret: the cluster secret (at least `MIN_SECRET` bytes).
        nonce: this side's nonce; default fresh random bytes (tests pass fixed ones).
    """

    __slots__ = ()

    def __init__(self, secret: bytes, *, nonce: bytes | None = None) -> None:
        super().__init__(secret, nonce)
        self._out.append(MAGIC + bytes((VERSION,)) + self.nonce)
        self._need = PROOF_SIZE

    def _message(self, message: bytes) -> AuthState:
        if not self._header(message):
            return self.state
        at = len(MAGIC) + 1
        nonce_g, mac = message[at : at + NONCE_SIZE], message[at + NONCE_SIZE :]
        if nonce_g == self.nonce:
            return self._fail("the gateway echoed our nonce")  # a reflection attempt
        if not hmac.compare_digest(mac, gateway_mac(self.secret, self.nonce, nonce_g)):
            return self._fail("wrong gateway proof (different cluster secret?)")
        proof = service_mac(self.secret, self.nonce, nonce_g)
        self._out.append(MAGIC + bytes((VERSION,)) + proof)
        self.state = AuthState.DONE
        return self.state


class GatewayHandshake(_Handshake):
    """The gateway (dialling) side: answers the service's HELLO, checks its PROOF.

    Args:
        secret: the cluster secret (at least `MIN_SECRET` bytes).
        nonce: this side's nonce; default fresh random bytes (tests pass fixed ones).
    """

    __slots__ = ("_nonce_s",)

    def __init__(self, secret: bytes, *, nonce: bytes | None = None) -> None:
        super().__init__(secret, nonce)
        self._need = HELLO_SIZE
        self._nonce_s = b""

    def _message(self, message: bytes) -> AuthState:
        if not self._header(message):
            return self.state
        at = len(MAGIC) + 1
        if not self._nonce_s:
            nonce_s = message[at:]
            if nonce_s == self.nonce:
                return self._fail("the service echoed our nonce")
            self._nonce_s = nonce_s
            mac = gateway_mac(self.secret, nonce_s, self.nonce)
            self._out.append(MAGIC + bytes((VERSION,)) + self.nonce + mac)
            self._need = SERVICE_PROOF_SIZE
            return self.state
        expected = service_mac(self.secret, self._nonce_s, self.nonce)
        if not hmac.compare_digest(message[at:], expected):
            return self._fail("wrong service proof (different cluster secret?)")
        self.state = AuthState.DONE
        return self.state
