"""The talkroom through a real gateway: fan-out, relogin kicks, disconnects, forged packets."""

from __future__ import annotations

from collections import Counter

import pytest

from netbus.client import Client
from netbus.errors import LoginRequired
from netbus.protocol import USER_DISCONNECT, Direction
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.helpers import CODECS

from .cluster import Cluster
from .helpers import BUF, JSON, Clients, barrier, new_key, new_name, room_members, settled, talk


def arrived(uname: str, usex: int, proto: int) -> tuple[object, ...]:
    return ("arrived", uname, usex, proto)


def left(uname: str, usex: int, proto: int) -> tuple[object, ...]:
    return ("exit", uname, usex, proto)


def said(uname: str, usex: int, msg: str, proto: int) -> tuple[object, ...]:
    return ("msg", uname, usex, msg, proto)


async def test_chat_tcp_ws_json_buf(cluster: Cluster, clients: Clients) -> None:
    """Four clients (TCP/WS × JSON/BUF) enter one by one, then each says something."""
    setups = [("tcp", JSON, 0), ("ws", BUF, 1), ("tcp", BUF, 1), ("ws", JSON, 0)]
    members: list[tuple[Client, str, int, int]] = []
    for kind, proto, usex in setups:
        client = await clients.login(cluster.url(kind), proto)
        uname = new_name(f"{kind}{proto}")
        assert await client.enter(uname, usex) == TalkroomStatus.OK
        members.append((client, uname, usex, proto))

    messages = {}
    for client, uname, usex, _proto in members:
        msg = f"hi from {uname} ✓ 🎲"
        messages[uname] = msg
        assert await client.send_msg(msg) == {"0": 1, "1": uname, "2": usex, "3": msg}

    pushes = await settled(*(m[0] for m in members))
    for (_client, uname, _usex, proto), got in zip(members, pushes, strict=True):
        expected: Counter[tuple[object, ...]] = Counter()
        for _other, oname, osex, _oproto in members:
            if oname != uname:
                expected[arrived(oname, osex, proto)] += 1
                expected[said(oname, osex, messages[oname], proto)] += 1
        assert talk(got) == expected, f"{uname} got {got}"

    assert await room_members(cluster.tcp_url, clients) == Counter(m[1] for m in members)


async def test_relogin_kicks_older_connection(cluster: Cluster, clients: Clients) -> None:
    observer_name = new_name("obs")
    observer = await clients.member(cluster.ws_url, observer_name, BUF, usex=1)
    key = new_key()
    a = await clients.login(cluster.tcp_url, JSON, key)
    a_name = new_name("a")
    assert await a.enter(a_name, 0) == TalkroomStatus.OK
    await barrier(a)
    a.drain_pushes()

    b = await clients.open(cluster.ws_url)
    reply = await b.guest_login(key)
    assert reply["status"] == 1 and reply["uid"] == a.uid

    kick = await a.next_push()
    assert (kick.stype, kick.ctype, kick.body) == (Stype.Auth, AuthCmd.RELOGIN, None)
    await a.wait_closed()
    assert a.pushes.empty(), a.drain_pushes()

    # The newer connection works: the talkroom already forgot the kicked one (IN_ROOM
    # would mean it did not), and B sees the room as it is.
    b_name = new_name("b")
    assert await b.enter(b_name, 1) == TalkroomStatus.OK
    msg = "b is here"
    assert await b.send_msg(msg) == {"0": 1, "1": b_name, "2": 1, "3": msg}
    observer_pushes, b_pushes = await settled(observer, b)
    assert talk(observer_pushes) == Counter(
        [
            arrived(a_name, 0, BUF),
            left(a_name, 0, BUF),
            arrived(b_name, 1, BUF),
            said(b_name, 1, msg, BUF),
        ]
    )
    assert talk(b_pushes) == Counter([arrived(observer_name, 1, JSON)])

    assert await room_members(cluster.tcp_url, clients) == Counter([observer_name, b_name])


async def test_one_connection_logs_in_twice(cluster: Cluster, clients: Clients) -> None:
    observer_name = new_name("obs")
    observer = await clients.member(cluster.tcp_url, observer_name)
    key1, key2 = new_key(), new_key()
    c = await clients.login(cluster.tcp_url, JSON, key1)
    uid1 = c.uid
    first_name = new_name("c1")
    assert await c.enter(first_name, 0) == TalkroomStatus.OK

    # Same key again on the same connection: nothing changes, no kick, still in the room.
    reply = await c.guest_login(key1)
    assert reply["status"] == 1 and reply["uid"] == uid1
    assert await c.enter(first_name, 0) == TalkroomStatus.IN_ROOM

    # Another key: the connection becomes the other account; the first one left everywhere.
    reply = await c.guest_login(key2)
    assert reply["status"] == 1 and reply["uid"] != uid1
    assert await c.send_msg("not in the room") == {"0": TalkroomStatus.INVALID_OPT}
    second_name = new_name("c2")
    assert await c.enter(second_name, 1) == TalkroomStatus.OK
    assert await c.send_msg("again") == {"0": 1, "1": second_name, "2": 1, "3": "again"}

    # key1's account is free now: logging it in elsewhere kicks nobody.
    d = await clients.login(cluster.ws_url, JSON, key1)
    assert d.uid == uid1
    observer_pushes, c_pushes, _ = await settled(observer, c, d)
    assert not c.closed.is_set()
    assert talk(observer_pushes) == Counter(
        [
            arrived(first_name, 0, JSON),
            left(first_name, 0, JSON),
            arrived(second_name, 1, JSON),
            said(second_name, 1, "again", JSON),
        ]
    )
    # c entered twice and was told about the observer each time.
    assert talk(c_pushes) == Counter({arrived(observer_name, 0, JSON): 2})
    assert await room_members(cluster.tcp_url, clients) == Counter([observer_name, second_name])


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_close_sends_user_disconnect(cluster: Cluster, clients: Clients, kind: str) -> None:
    """A member that just closes its connection (no Exit) leaves the room for everyone."""
    observer = await clients.member(cluster.tcp_url, new_name("obs"))
    name = new_name("leaver")
    leaver = await clients.member(cluster.url(kind), name, BUF, usex=1)
    (before,) = await settled(observer)
    assert talk(before) == Counter([arrived(name, 1, JSON)])
    await leaver.close()
    push = await observer.next_push(Stype.TalkRoom)
    assert (push.ctype, push.body) == (TalkroomCmd.UserExit, {"uname": name, "usex": 1})
    (rest,) = await settled(observer)
    assert rest == []
    assert name not in await room_members(cluster.tcp_url, clients)


async def test_forged_utag_and_control_packets(cluster: Cluster, clients: Clients) -> None:
    victim_name, mallory_name = new_name("victim"), new_name("mallory")
    victim = await clients.member(cluster.tcp_url, victim_name)
    mallory = await clients.member(cluster.ws_url, mallory_name, usex=1)

    # SendMsg with the victim's uid as utag: the gateway overwrites it with mallory's.
    forged = CODECS.encode(
        Stype.TalkRoom,
        TalkroomCmd.SendMsg,
        "forged",
        utag=victim.uid,
        direction=Direction.TO_SERVER,
    )
    mallory.send_raw(forged)
    reply = await mallory.next_push(Stype.TalkRoom, TalkroomCmd.SendMsg)
    assert reply.body == {"0": 1, "1": mallory_name, "2": 1, "3": "forged"}

    # USER_DISCONNECT (and anything else in the gateway-only range) from a client is dropped,
    # whatever utag and stype it names.
    for stype, ctype, utag in [
        (Stype.TalkRoom, USER_DISCONNECT, victim.uid),
        (Stype.TalkRoom, USER_DISCONNECT, 0),
        (Stype.Auth, USER_DISCONNECT, victim.uid),
        (Stype.TalkRoom, 10999, victim.uid),
    ]:
        packet = CODECS.encode(stype, ctype, None, utag=utag, direction=Direction.TO_SERVER)
        mallory.send_raw(packet)

    victim_pushes, mallory_pushes = await settled(victim, mallory)
    assert talk(victim_pushes) == Counter(
        [arrived(mallory_name, 1, JSON), said(mallory_name, 1, "forged", JSON)]
    )
    assert mallory_pushes == []
    assert not mallory.closed.is_set()
    assert await victim.enter(victim_name, 0) == TalkroomStatus.IN_ROOM
    assert await room_members(cluster.tcp_url, clients) == Counter([victim_name, mallory_name])


@pytest.mark.parametrize("proto", [JSON, BUF])
async def test_talkroom_before_login(cluster: Cluster, clients: Clients, proto: int) -> None:
    client = await clients.open(cluster.tcp_url, proto)
    with pytest.raises(LoginRequired) as info:
        await client.enter(new_name("anon"), 0)
    assert (info.value.stype, info.value.ctype) == (Stype.TalkRoom, TalkroomCmd.Enter)
    with pytest.raises(LoginRequired):
        await client.send_msg("hello?")
    notices = client.drain_pushes()
    assert [(p.stype, p.ctype, p.proto_type) for p in notices] == [(0, 5, proto)] * 2
    # Logging in lifts it, on the same connection.
    await client.guest_login(new_key())
    assert await client.enter(new_name("now"), 0) == TalkroomStatus.OK


#: what a hostile player sent to every other member's terminal (issue 10 item 8)
ESCAPES = [
    "\x1b]0;window title\x07",  # OSC 0: window title
    "\x1b[2J\x1b[H",  # clear the screen
    "\x1b]52;c;aGVsbG8=\x07",  # OSC 52: write the clipboard
    "nul\x00byte",
    "fake\r<admin> line",
    "del\x7f",
    "c1 csi\x9b2J",
    "nel\x85",
]


@pytest.mark.parametrize("proto", [JSON, BUF])
async def test_control_characters_refused(cluster: Cluster, clients: Clients, proto: int) -> None:
    """Names and messages with C0/C1 control characters (and DEL) get INVALID_OPT and reach
    nobody; a witness in the room sees nothing, and the sender can still chat normally."""
    witness = await clients.member(cluster.ws_url, new_name("wit"), JSON)
    sender = await clients.login(cluster.tcp_url, proto)
    for text in ESCAPES:
        assert await sender.enter(text, 0) == TalkroomStatus.INVALID_OPT, repr(text)
    name = new_name("tty")
    assert await sender.enter(name, 0) == TalkroomStatus.OK
    await barrier(sender)
    sender.drain_pushes()
    for text in ESCAPES:
        assert await sender.send_msg(text) == {"0": TalkroomStatus.INVALID_OPT}, repr(text)
    assert await sender.send_msg("plain ✓") == {"0": 1, "1": name, "2": 0, "3": "plain ✓"}
    witness_pushes, sender_pushes = await settled(witness, sender)
    assert talk(witness_pushes) == Counter(
        [("arrived", name, 0, JSON), ("msg", name, 0, "plain ✓", JSON)]
    )
    assert sender_pushes == []
