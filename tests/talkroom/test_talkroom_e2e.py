"""The talkroom over real sockets (PROTOCOL.md §4.1), standalone mode: players connect directly.

Every test mixes TCP and WebSocket clients and JSON and BUF encodings in one room. After the
pushes a step should cause, `sync` makes a side-effect-free round trip on each client and the
test asserts the *exact* list of pushes that arrived: nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netbus.client import Client
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd
from tests.helpers import BUF, JSON, sync, talkroom_server

T = Stype.TalkRoom
Enter, Exit, SendMsg = TalkroomCmd.Enter, TalkroomCmd.Exit, TalkroomCmd.SendMsg
UserArrived, UserExit, UserMsg = TalkroomCmd.UserArrived, TalkroomCmd.UserExit, TalkroomCmd.UserMsg

TEXTS = [
    "héllo wörld — ÀÉÎÕÜ ß",
    "中文測試，遊客123456",
    "emoji 🎮🚀👍🏽 and a flag 🇹🇼",
    "",
    'quote"backslash\\ <b>&amp;</b>',
]


def user(name: str, sex: int) -> dict[str, Any]:
    return {"uname": name, "usex": sex}


async def expect(client: Client, pushes: list[tuple[int, Any]]) -> None:
    """After a round trip, ``client`` holds exactly ``pushes``, each in its own proto_type."""
    await sync(client)
    got = client.drain_pushes()
    assert [(p.ctype, p.body) for p in got] == pushes
    assert all(p.stype == T for p in got)
    assert all(p.proto_type == client.proto_type for p in got), got


async def expect_none(*clients: Client) -> None:
    for client in clients:
        await expect(client, [])


async def test_enter_chat_exit_disconnect_mixed_room() -> None:
    async with talkroom_server() as h:
        a = await h.connect(0, JSON)  # tcp
        b = await h.connect(0, BUF)  # tcp
        c = await h.connect(1, JSON)  # ws
        d = await h.connect(1, BUF)  # ws
        members = [(a, "alice", 0), (b, "鮑勃", 1), (c, "carol 🎲", 0), (d, "d" * 32, 1)]

        # Enter: reply OK; UserArrived(newcomer) to each member; one UserArrived per
        # existing member (in arrival order) to the newcomer.
        for i, (client, name, sex) in enumerate(members):
            assert await client.enter(name, sex) == 1
            await expect(client, [(UserArrived, user(n, s)) for _, n, s in members[:i]])
            for other, _, _ in members[:i]:
                await expect(other, [(UserArrived, user(name, sex))])
        assert len(h.service.room) == 4

        # SendMsg: the sender gets the echo reply, every other member exactly one UserMsg.
        for i, text in enumerate(TEXTS):
            sender, name, sex = members[i % 4]
            reply = await sender.send_msg(text)
            assert reply == {"0": 1, "1": name, "2": sex, "3": text}
            for other, _, _ in members:
                if other is not sender:
                    await expect(other, [(UserMsg, {"0": name, "1": sex, "2": text})])
            await expect(sender, [])

        # Exit: UserExit to the others, then the reply; afterwards SendMsg is refused.
        assert await b.exit() == 1
        for other in (a, c, d):
            await expect(other, [(UserExit, user("鮑勃", 1))])
        assert await b.send_msg("still here?") == {"0": -100}
        assert await b.exit() == -102
        await expect_none(a, b, c, d)

        # Re-entering works and announces again.
        assert await b.enter("bob2", 0) == 1
        await expect(b, [(UserArrived, user(n, s)) for _, n, s in (members[0], *members[2:])])
        for other in (a, c, d):
            await expect(other, [(UserArrived, user("bob2", 0))])

        # Disconnect: the remaining members get UserExit, once.
        await d.close()
        for other in (a, b, c):
            push = await other.next_push(T, UserExit)
            assert push.body == user("d" * 32, 1)
            assert push.proto_type == other.proto_type
        await expect_none(a, b, c)
        assert len(h.service.room) == 3

        # A disconnect without Exit over TCP too (the other kind of link).
        await a.close()
        for other in (b, c):
            assert (await other.next_push(T, UserExit)).body == user("alice", 0)
        await expect_none(b, c)
        assert sorted(m.uname for m in h.service.room.members.values()) == [
            "bob2",
            "carol 🎲",
        ]


async def test_push_follows_the_recipients_last_proto_type() -> None:
    """A push uses the proto_type that the receiving user last used with the talkroom."""
    async with talkroom_server() as h:
        a = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        assert await a.enter("a", 0) == 1
        assert await b.enter("b", 1) == 1
        await expect(a, [(UserArrived, user("b", 1))])
        await expect(b, [(UserArrived, user("a", 0))])

        # a switches to BUF for one request: its reply is BUF, and so are later pushes.
        reply = await a.request(T, SendMsg, "switch", proto_type=BUF)
        assert reply == {"0": 1, "1": "a", "2": 0, "3": "switch"}
        await expect(b, [(UserMsg, {"0": "a", "1": 0, "2": "switch"})])
        assert await b.send_msg("to buf a") == {"0": 1, "1": "b", "2": 1, "3": "to buf a"}
        push = await a.next_push(T, UserMsg)
        assert push.proto_type == BUF
        assert push.body == {"0": "b", "1": 1, "2": "to buf a"}

        # b switches to JSON; a goes back to JSON.
        await b.request(T, SendMsg, "json now", proto_type=JSON)
        push = await a.next_push(T, UserMsg)
        assert (push.proto_type, push.body) == (BUF, {"0": "b", "1": 1, "2": "json now"})
        await a.send_msg("json again")
        push = await b.next_push(T, UserMsg)
        assert (push.proto_type, push.body) == (JSON, {"0": "a", "1": 0, "2": "json again"})
        await a.request(T, SendMsg, "buf", proto_type=BUF)
        push = await b.next_push(T, UserMsg)
        assert (push.proto_type, push.body) == (JSON, {"0": "a", "1": 0, "2": "buf"})


INVALID_ENTER_JSON: list[Any] = [
    {"uname": "", "usex": 0},
    {"uname": "x" * 33, "usex": 0},
    {"uname": "é" * 33, "usex": 1},
    {"uname": "x", "usex": 2},
    {"uname": "x", "usex": -1},
    {"uname": "x", "usex": True},
    {"uname": "x", "usex": False},
    {"uname": "x", "usex": "0"},
    {"uname": "x", "usex": 0.0},
    {"uname": "x", "usex": None},
    {"uname": 5, "usex": 0},
    {"uname": None, "usex": 0},
    {"uname": ["x"], "usex": 0},
    {"uname": "x"},
    {"usex": 0},
    {},
    "alice",
    None,
    0,
    ["alice", 0],
]


async def test_invalid_enter_changes_nothing() -> None:
    async with talkroom_server() as h:
        watcher = await h.connect(1, BUF)
        assert await watcher.enter("watcher", 1) == 1
        j = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        for body in INVALID_ENTER_JSON:
            assert await j.request(T, Enter, body) == -100, body
        for body in (user("", 0), user("x" * 33, 0), user("x", 2), user("x", -1)):
            assert await b.request(T, Enter, body) == -100, body
        # Invalid bodies from someone already in the room: INVALID_OPT, still a member.
        for body in ({"uname": "", "usex": 0}, {"uname": "w", "usex": 7}):
            assert await watcher.request(T, Enter, body) == -100
        assert len(h.service.room) == 1
        await expect_none(watcher, j, b)

        # The boundaries are accepted: 32 characters (even 4-byte ones), usex 0 and 1.
        assert await j.enter("🎮" * 32, 0) == 1
        assert await b.enter("x" * 32, 1) == 1
        await expect(watcher, [(UserArrived, user("🎮" * 32, 0)), (UserArrived, user("x" * 32, 1))])


async def test_in_room_not_in_room_and_not_in_room_sendmsg() -> None:
    async with talkroom_server() as h:
        a = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        # Not in the room: Exit is NOT_IN_ROOM, SendMsg is {"0": -100} (BUF: i16 alone).
        assert await a.exit() == -102
        assert await b.exit() == -102
        assert await a.send_msg("hi") == {"0": -100}
        assert await b.send_msg("hi") == {"0": -100}

        assert await a.enter("a", 0) == 1
        assert await b.enter("b", 1) == 1
        # Entering twice: IN_ROOM, even under another name; nobody is told anything.
        assert await a.enter("a", 0) == -101
        assert await b.enter("other", 0) == -101
        await expect(a, [(UserArrived, user("b", 1))])
        await expect(b, [(UserArrived, user("a", 0))])
        assert [m.uname for m in h.service.room.members.values()] == ["a", "b"]


async def test_invalid_sendmsg_and_exit_bodies() -> None:
    async with talkroom_server(max_msg_len=16) as h:
        a = await h.connect(0, JSON)
        b = await h.connect(1, BUF)
        assert await a.enter("a", 0) == 1
        assert await b.enter("b", 1) == 1
        await expect(a, [(UserArrived, user("b", 1))])
        await expect(b, [(UserArrived, user("a", 0))])

        for body in (5, None, True, ["x"], {"0": "x"}, "x" * 17, "é" * 17):
            assert await a.request(T, SendMsg, body) == {"0": -100}, body
        assert await b.send_msg("y" * 17) == {"0": -100}
        # Exactly max_msg_len characters (not bytes) is fine.
        assert await a.send_msg("🎮" * 16) == {"0": 1, "1": "a", "2": 0, "3": "🎮" * 16}
        await expect(b, [(UserMsg, {"0": "a", "1": 0, "2": "🎮" * 16})])

        # Exit takes null only; anything else is INVALID_OPT and the member stays.
        for body in ({}, 0, "bye", []):
            assert await a.request(T, Exit, body) == -100, body
        assert len(h.service.room) == 2
        await expect_none(a, b)


@pytest.mark.parametrize("kinds", [("tcp", "tcp"), ("ws", "ws"), ("tcp", "ws")])
async def test_many_clients_each_push_exactly_once(kinds: tuple[str, str]) -> None:
    """Eight members; every message reaches each of the other seven exactly once."""
    async with talkroom_server() as h:
        clients = []
        for i in range(8):
            index = 0 if kinds[i % 2] == "tcp" else 1
            clients.append(await h.connect(index, (JSON, BUF)[i // 2 % 2]))
        for i, client in enumerate(clients):
            assert await client.enter(f"u{i}", i % 2) == 1
        for client in clients:
            await sync(client)
            client.drain_pushes()
        # Everyone speaks twice, interleaved, without waiting for the replies in between.
        replies = await asyncio.gather(
            *(
                client.send_msg(f"m{round_}-{i} 🎲")
                for round_ in range(2)
                for i, client in enumerate(clients)
            )
        )
        assert [r["0"] for r in replies] == [1] * 16
        for i, client in enumerate(clients):
            await sync(client)
            got = sorted(p.body["2"] for p in client.drain_pushes() if p.ctype == UserMsg)
            want = sorted(f"m{r}-{j} 🎲" for r in range(2) for j in range(8) if j != i)
            assert got == want
