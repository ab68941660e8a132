"""Shared test helpers: free ports, a throwaway TLS certificate, raw packets, server harnesses.

Nothing here fakes the network: servers listen on real loopback ports, clients are real
sockets. The hostile side of a test builds its bytes by hand (`cmd_buf`, `frame`) so that it
can send what `netbus.client.Client` never would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netbus.client import Client
from netbus.protocol.header import ProtoType, pack_header
from netbus.roles import Stype
from netbus.roles.center.auth import AuthService
from netbus.roles.talkroom import TalkroomService
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.service import ServiceServer, client_codecs
from netbus.service.host import ServiceHost
from netbus.transport.link import Link
from netbus.transport.listener import ListenerSpec

__all__ = [
    "BUF",
    "CODECS",
    "JSON",
    "LinkTap",
    "TalkroomHarness",
    "buf_str",
    "client_ssl_context",
    "cmd_buf",
    "expect_reset_or_eof",
    "frame",
    "free_port",
    "json_body",
    "make_self_signed_cert",
    "metric",
    "sync",
    "talkroom_server",
]

JSON = ProtoType.JSON
BUF = ProtoType.BUF
T = Stype.TalkRoom
#: the control channel plus the built-in services' layouts, from their own declarations
CODECS = client_codecs(TalkroomService, AuthService)


# ------------------------------------------------------------------------------- sockets
def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for configs that need a number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------------- TLS
def make_self_signed_cert(directory: Path, *, name: str = "localhost") -> tuple[str, str]:
    """Write a fresh self-signed cert (SAN: localhost, 127.0.0.1) and its key as PEM files.

    Returns:
        ``(certfile, keyfile)`` paths. Trust ``certfile`` as a CA on the client side.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


def client_ssl_context(certfile: str) -> ssl.SSLContext:
    """A client context that trusts exactly ``certfile`` (and checks the host name)."""
    return ssl.create_default_context(cafile=certfile)


# ------------------------------------------------------------------------- raw packets
def buf_str(text: str | bytes) -> bytes:
    """A protocol string (u16 byte count + bytes); bytes are sent as given (bad UTF-8)."""
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<H", len(data)) + data


def json_body(text: str | bytes, *, count: int | None = None) -> bytes:
    """A JSON body from raw JSON text; ``count`` overrides the byte count (to lie)."""
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<H", len(data) if count is None else count) + data


def cmd_buf(stype: int, ctype: int, proto_type: int, body: bytes = b"", utag: int = 0) -> bytes:
    return pack_header(stype, ctype, utag, proto_type) + body


def frame(cmd: bytes) -> bytes:
    """TCP framing without any checks (the length may be made to lie by the caller)."""
    return struct.pack("<H", len(cmd) + 2) + cmd


async def expect_reset_or_eof(reader: asyncio.StreamReader, *, timeout: float = 5.0) -> bytes:
    """Read until the server ends the connection (EOF or reset); return what came before."""
    got = bytearray()
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk


# ------------------------------------------------------------------------ observation
class LinkTap:
    """Records every link a `ServiceHost` opens, by peer address, to inspect it server-side.

    The host's own ``link_opened`` still runs first; this only remembers the link.
    """

    def __init__(self, host: ServiceHost) -> None:
        self.links: dict[Any, Link] = {}
        self._changed = asyncio.Event()
        inner = host.link_opened

        def link_opened(link: Link) -> None:
            inner(link)
            self.links[link.peer] = link
            self._changed.set()

        host.link_opened = link_opened  # type: ignore[method-assign]

    async def link_for(self, sockname: Any, *, timeout: float = 5.0) -> Link:
        """The server-side link of the client socket bound at ``sockname``."""
        key = tuple(sockname[:2])
        async with asyncio.timeout(timeout):
            while key not in self.links:
                self._changed.clear()
                await self._changed.wait()
        return self.links[key]


def metric(server: ServiceServer, name: str, **labels: str) -> float:
    """Current value of a Prometheus sample in the server's own registry (0 if unset)."""
    value = server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ------------------------------------------------------------------------ talkroom rig
@dataclass
class TalkroomHarness:
    server: ServiceServer
    service: TalkroomService
    tap: LinkTap
    specs: Sequence[ListenerSpec]
    stack: AsyncExitStack
    ssl: ssl.SSLContext | None = None
    clients: list[Client] = field(default_factory=list)

    def url(self, index: int) -> str:
        spec = self.specs[index]
        port = self.server.client_ports[index]
        if spec.kind == "tcp":
            return f"{'tls' if spec.is_encrypt else 'tcp'}://127.0.0.1:{port}"
        return f"{'wss' if spec.is_encrypt else 'ws'}://127.0.0.1:{port}/ws"

    def port(self, kind: str) -> int:
        for spec, port in zip(self.specs, self.server.client_ports, strict=True):
            if spec.kind == kind:
                return port
        raise LookupError(kind)

    async def connect(self, index: int, proto_type: int = JSON) -> Client:
        client = await Client.connect(
            self.url(index), proto_type=proto_type, ssl=self.ssl, codecs=CODECS
        )
        self.clients.append(client)
        return client


@asynccontextmanager
async def talkroom_server(
    specs: Iterable[ListenerSpec] = (ListenerSpec("tcp"), ListenerSpec("ws")),
    *,
    max_msg_len: int = 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[TalkroomHarness]:
    """A standalone talkroom (players connect straight to it) on free loopback ports."""
    specs = list(specs)
    service = TalkroomService(max_msg_len=max_msg_len)
    server = ServiceServer([service], client_listeners=specs, name="talkroom-test")
    async with AsyncExitStack() as stack:
        await server.start()
        tap = LinkTap(server.client_host)
        harness = TalkroomHarness(server, service, tap, specs, stack, ssl_context)
        try:
            yield harness
        finally:
            for client in harness.clients:
                with contextlib.suppress(Exception):
                    await client.close()
            await server.close(drain_timeout=2.0)


async def sync(client: Client) -> None:
    """A round trip with no side effects: an invalid Enter, answered INVALID_OPT.

    Every push caused by requests that completed before this call is already queued on the
    client when it returns (one ordered stream per connection), so the test can then assert
    the exact set of pushes without sleeping.
    """
    status = await client.request(T, TalkroomCmd.Enter, {"uname": "", "usex": 0})
    assert status == -100, status
