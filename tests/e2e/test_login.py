"""Guest login through a real gateway and center (PROTOCOL.md §4.2), over TCP and WS."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from netbus.client.guest import new_guest_key
from netbus.protocol import GatewayCmd, RequestStatus
from netbus.protocol.codec import Writer
from netbus.protocol.header import ProtoType, pack_header
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus
from netbus.storage.accounts import hash_guest_key

from .cluster import Cluster
from .conftest import ready_check, stop_and_check
from .helpers import ISSUED_KEYS, Clients, leaked_secrets, new_key

REPLY_KEYS = {"status", "uid", "unick", "usex", "uface", "uvip", "guest_key"}


def check_ok(reply: dict[str, Any], key: str) -> int:
    assert set(reply) == REPLY_KEYS, reply
    assert reply["status"] == AuthStatus.OK
    assert type(reply["uid"]) is int and reply["uid"] > 0
    assert type(reply["unick"]) is str and reply["unick"]
    for field in ("usex", "uface", "uvip"):
        assert type(reply[field]) is int, reply
    assert reply["guest_key"] == key
    return reply["uid"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_guest_login(cluster: Cluster, clients: Clients, kind: str) -> None:
    url = cluster.url(kind)
    key, other = new_key(), new_key(64)
    first = await clients.open(url)
    uid = check_ok(await first.guest_login(key), key)
    assert first.uid == uid
    await first.close()

    # The same key is the same account, from a new connection and over the other transport.
    again = await clients.open(cluster.url("ws" if kind == "tcp" else "tcp"))
    reply = await again.guest_login(key)
    assert check_ok(reply, key) == uid

    different = await clients.open(url)
    other_uid = check_ok(await different.guest_login(other), other)
    assert other_uid != uid

    shortest = new_key(16)
    assert check_ok(await (await clients.open(url)).guest_login(shortest), shortest) not in (
        uid,
        other_uid,
    )


MALFORMED_KEYS = [
    pytest.param("a" * 15, id="15-chars"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("", id="empty"),
    pytest.param("abcdefghijklmnop!", id="bad-char"),
    pytest.param("abcdefgh ijklmnopq", id="space"),
    pytest.param("abcdefghijklmnopé", id="non-ascii"),
    pytest.param(1234567890123456, id="int"),
    pytest.param(None, id="null"),
    pytest.param(["abcdefghijklmnopqrst"], id="list"),
    pytest.param({"key": "abcdefghijklmnopqrst"}, id="object"),
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_malformed_key_is_invalid_params(
    cluster: Cluster, clients: Clients, key: object
) -> None:
    for kind in ("tcp", "ws"):
        client = await clients.open(cluster.url(kind))
        reply = await client.request(Stype.Auth, AuthCmd.GUEST_LOGIN, key)
        assert reply == {"status": AuthStatus.INVALID_PARAMS}
        assert client.uid == 0
        # The refusal costs nothing: the same connection logs in with a good key.
        good = new_key()
        check_ok(await client.guest_login(good), good)


#: keys that are well formed but guessable: refused by the variety rule (issue 10 item 20)
GUESSABLE_KEYS = [
    "a" * 16,
    "a" * 64,
    "ab" * 8,
    "0000000000000000",
    "abcdefg" * 3,  # 7 distinct characters
    "1234567" * 9,  # 63 characters, still 7 distinct
    "a" * 24 + "bcdefgh1",  # 8 distinct, but one character is 3/4 of the key
]


async def test_guessable_key_is_invalid_params(cluster: Cluster, clients: Clients) -> None:
    client = await clients.open(cluster.tcp_url)
    for key in GUESSABLE_KEYS:
        reply = await client.request(Stype.Auth, AuthCmd.GUEST_LOGIN, key)
        assert reply == {"status": AuthStatus.INVALID_PARAMS}, key
        assert client.uid == 0
    # What the shipped clients make passes: the golden example, a `new_guest_key` key (the
    # browser page makes the same kind), 32 hex digits, and a key with exactly 8 distinct
    # characters where none fills more than half.
    for key in (
        "0123456789abcdefABCDEF_-ghijklmn",
        new_guest_key(),
        secrets.token_hex(16),
        "a" * 8 + "bcdefgh1",
    ):
        ISSUED_KEYS.add(key)
        check_ok(await (await clients.open(cluster.tcp_url)).guest_login(key), key)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_buf_guest_login_is_refused(cluster: Cluster, clients: Clients, kind: str) -> None:
    """GUEST_LOGIN has no BUF layout (JSON only, §3.3), so a BUF body is malformed.

    What happens: the gateway forwards it like any Auth packet (it does not read request
    bodies); the center's decoder rejects it (logged and counted as ``no_buf_layout``) and
    answers it: auth's in-kind INVALID_PARAMS cannot be written in BUF, so the answer is
    REQUEST_FAILED (stype 0, ctype 10, BAD_REQUEST) in BUF (docs/protocol.md §7.1). No
    account is made, and neither the client's connection nor the gateway-center link is
    closed (§6). A JSON login sent next on the same connection then works.
    """
    client = await clients.open(cluster.url(kind))
    key = new_key()
    body = Writer()
    body.str(key)
    client.send_raw(
        pack_header(Stype.Auth, AuthCmd.GUEST_LOGIN, 0, ProtoType.BUF) + body.getvalue()
    )
    refusal = await client.next_push(0, GatewayCmd.REQUEST_FAILED)  # no request was pending
    assert refusal.proto_type == ProtoType.BUF
    assert refusal.body == {
        "stype": Stype.Auth,
        "ctype": AuthCmd.GUEST_LOGIN,
        "status": RequestStatus.BAD_REQUEST,
    }
    reply = await client.guest_login(key)
    uid = check_ok(reply, key)
    assert client.pushes.empty(), client.drain_pushes()
    assert not client.closed.is_set()
    # The center still serves everyone, and the key still names the same account.
    other = await clients.open(cluster.tcp_url)
    assert check_ok(await other.guest_login(key), key) == uid


@pytest.mark.process
@pytest.mark.one_client_loop
async def test_debug_logs_hold_no_key_or_digest(
    tmp_path: Path, clients: Clients, database_url: str | None
) -> None:
    """Issue 10 item 17: with every role at DEBUG, logins (new, returning, refused, kicked)
    leave neither a guest key nor its stored digest (HMAC-SHA256 hex) in any output."""
    cluster = Cluster(tmp_path / "debug", database_url=database_url)
    config = cluster.config_text()
    assert 'level = "INFO"' in config
    cluster.config_path.write_text(config.replace('level = "INFO"', 'level = "DEBUG"'))
    keys = [new_key(), new_key(), new_key(64)]
    try:
        await asyncio.to_thread(cluster.start)
        await ready_check(cluster)
        for key in keys:
            check_ok(await (await clients.open(cluster.tcp_url)).guest_login(key), key)
        again = await clients.open(cluster.ws_url)  # the same account again: a kick
        check_ok(await again.guest_login(keys[0]), keys[0])
        refused = await clients.open(cluster.tcp_url)
        assert (await refused.guest_login("a" * 32))["status"] == AuthStatus.INVALID_PARAMS
    finally:
        await clients.close_all()
        await asyncio.to_thread(stop_and_check, cluster)
    pepper = cluster.pepper_file.read_text().strip()
    digests = [hash_guest_key(pepper.encode(), key) for key in keys]
    output = [line for proc in cluster.history for line in proc.output()]
    assert any(" DEBUG " in line for line in output), "the roles did not log at DEBUG"
    leaked = leaked_secrets(output, *keys, *digests, pepper)
    assert not leaked, f"secrets in the DEBUG output: {sorted(leaked)}"
