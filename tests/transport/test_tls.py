"""TLS and WSS end to end, with a certificate made at test time (PROTOCOL.md §2 over TLS)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from netbus.client import Client
from netbus.errors import ConfigError, ConnectionClosed
from netbus.roles import Stype
from netbus.roles.talkroom import TalkroomService
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.service.server import ServiceServer
from netbus.transport.listener import ListenerSpec, server_ssl_context
from tests.helpers import BUF, CODECS, JSON, client_ssl_context, sync, talkroom_server

T = Stype.TalkRoom


def tls_specs(cert: tuple[str, str]) -> list[ListenerSpec]:
    certfile, keyfile = cert
    return [
        ListenerSpec("tcp", is_encrypt=True, certfile=certfile, keyfile=keyfile),
        ListenerSpec("ws", is_encrypt=True, certfile=certfile, keyfile=keyfile),
        ListenerSpec("tcp"),
    ]


async def test_tls_and_wss_clients_chat_with_plain_tcp(tls_cert: tuple[str, str]) -> None:
    ctx = client_ssl_context(tls_cert[0])
    async with talkroom_server(tls_specs(tls_cert), ssl_context=ctx) as h:
        assert h.url(0).startswith("tls://") and h.url(1).startswith("wss://")
        tls = await h.connect(0, JSON)
        wss = await h.connect(1, BUF)
        plain = await Client.connect(h.url(2), proto_type=BUF, codecs=CODECS)
        h.clients.append(plain)
        for i, (client, name) in enumerate(((tls, "tls 🔒"), (wss, "wss 🔐"), (plain, "plain"))):
            assert await client.enter(name, i % 2) == 1
        text = "secret ✉️ ~ 秘密"
        assert (await tls.send_msg(text))["3"] == text
        assert (await wss.send_msg(text + "!"))["3"] == text + "!"
        for client, want in (
            (tls, [text + "!"]),
            (wss, [text]),
            (plain, [text, text + "!"]),
        ):
            await sync(client)
            got = [p for p in client.drain_pushes() if p.ctype == TalkroomCmd.UserMsg]
            assert [p.body["2"] for p in got] == want
            assert all(p.proto_type == client.proto_type for p in got)

        # The server sees the links as secure.
        assert sorted(link.secure for link in h.server.client_host.links) == [
            False,
            True,
            True,
        ]
        await wss.close()
        assert (await tls.next_push(T, TalkroomCmd.UserExit)).body["uname"] == "wss 🔐"


async def test_client_that_does_not_trust_the_cert_is_refused(tls_cert: tuple[str, str]) -> None:
    async with talkroom_server(tls_specs(tls_cert)) as h:
        for url in (h.url(0), h.url(1)):
            with pytest.raises(ConnectionClosed) as refused:
                await Client.connect(url, ssl=ssl.create_default_context())
            assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
        # The listeners survive failed handshakes.
        h.ssl = client_ssl_context(tls_cert[0])
        for index in (0, 1):
            client = await h.connect(index)
            assert await client.enter(f"after {index}", 0) == 1


def test_missing_or_wrong_cert_paths_are_config_errors(
    tls_cert: tuple[str, str], tmp_path: Path
) -> None:
    certfile, keyfile = tls_cert
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="no TLS certfile"):
        server_ssl_context(None, None)
    with pytest.raises(ConfigError, match=r"not found.*nope\.pem"):
        server_ssl_context(str(tmp_path / "nope.pem"), keyfile)
    with pytest.raises(ConfigError, match=r"not found.*nokey\.pem"):
        server_ssl_context(certfile, str(tmp_path / "nokey.pem"))
    with pytest.raises(ConfigError, match="cannot load"):
        server_ssl_context(str(garbage), keyfile)
    with pytest.raises(ConfigError, match="cannot load"):
        server_ssl_context(certfile, certfile)  # a cert where the key should be
    assert isinstance(server_ssl_context(certfile, keyfile), ssl.SSLContext)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_server_with_bad_cert_fails_to_start_and_leaks_nothing(
    kind: str, tmp_path: Path
) -> None:
    spec = ListenerSpec(kind, is_encrypt=True, certfile=str(tmp_path / "missing.pem"))
    server = ServiceServer([TalkroomService()], client_listeners=[spec])
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        await server.start()
    # Nothing is left listening (the gateway listener opened first is closed again).
    assert server._servers == []
    assert server.client_ports == []
    with pytest.raises(ConfigError):
        async with ServiceServer([TalkroomService()], client_listeners=[spec]) as never:
            raise AssertionError(f"started {never}")
