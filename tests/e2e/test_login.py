"""Guest login through a real gateway and center (PROTOCOL.md §4.2), over TCP and WS."""

from __future__ import annotations

from typing import Any

import pytest

from netbus.protocol import GatewayCmd, RequestStatus
from netbus.protocol.codec import Writer
from netbus.protocol.header import ProtoType, pack_header
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd, AuthStatus

from .cluster import Cluster
from .helpers import Clients, new_key

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
