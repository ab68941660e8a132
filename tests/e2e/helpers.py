"""Client-side helpers for the end-to-end tests (all I/O through `netbus.client.Client`)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from netbus.client import Client
from netbus.client.client import Push
from netbus.errors import RequestTimeout, ServiceUnavailable
from netbus.protocol import GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.roles import Stype
from netbus.roles.center.auth import valid_guest_key
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.helpers import CODECS

T = TypeVar("T")

JSON = ProtoType.JSON
BUF = ProtoType.BUF
KEY_ALPHABET = string.ascii_letters + string.digits + "_-"
REQUEST_TIMEOUT = 5.0


#: every guest key the tests used: none may ever show up in a role's output (§4.2)
ISSUED_KEYS: set[str] = set()


def new_key(length: int = 32) -> str:
    """A random guest key that the center accepts (a short random key can, rarely, fail the
    variety rule of docs/security.md: a client then simply draws another)."""
    key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))
    while length >= 16 and not valid_guest_key(key):  # shorter: a random name, not a key
        key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))
    ISSUED_KEYS.add(key)
    return key


def leaked_secrets(lines: list[str], *extra: str) -> set[str]:
    """Which issued guest keys (or ``extra`` secrets) appear in ``lines``."""
    text = "\n".join(lines)
    return {secret for secret in (*ISSUED_KEYS, *extra) if secret and secret in text}


def new_name(prefix: str) -> str:
    """A room name unique to this test run (names are what pushes identify users by)."""
    return f"{prefix}-{secrets.token_hex(3)}"


class Clients:
    """Opens clients and closes every one of them at the end of the test."""

    def __init__(self) -> None:
        self.opened: list[Client] = []

    async def open(self, url: str, proto: int = JSON) -> Client:
        client = await Client.connect(url, proto_type=proto, timeout=REQUEST_TIMEOUT, codecs=CODECS)
        self.opened.append(client)
        return client

    async def login(self, url: str, proto: int = JSON, key: str | None = None) -> Client:
        client = await self.open(url, proto)
        reply = await client.guest_login(key or new_key(), timeout=REQUEST_TIMEOUT)
        assert reply.get("status") == 1, reply
        return client

    async def member(
        self, url: str, uname: str, proto: int = JSON, *, usex: int = 0, key: str | None = None
    ) -> Client:
        """A logged-in client that has entered the room (pushes so far drained)."""
        client = await self.login(url, proto, key)
        assert await client.enter(uname, usex) == TalkroomStatus.OK
        await barrier(client)
        client.drain_pushes()
        return client

    async def close_all(self) -> None:
        for client in self.opened:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await client.close()
        self.opened.clear()


async def barrier(client: Client) -> None:
    """A talkroom round trip that changes nothing and pushes nothing (Enter with an empty
    uname gets INVALID_OPT). The talkroom handles packets in order and every hop is an
    ordered stream, so once the reply is here, every push the talkroom sent this client
    before it — and every effect of packets other clients had answered before — is here too.
    """
    body = {"uname": "", "usex": 0}
    status = await client.request(Stype.TalkRoom, TalkroomCmd.Enter, body)
    assert status == TalkroomStatus.INVALID_OPT, status


async def settled(*clients: Client) -> list[list[Push]]:
    """Barrier every client, then take all their queued pushes."""
    for client in clients:
        await barrier(client)
    return [client.drain_pushes() for client in clients]


async def room_members(url: str, clients: Clients) -> Counter[str]:
    """Enter with a fresh client; the members it is told about (then it leaves and closes)."""
    fresh = await clients.login(url)
    assert await fresh.enter(new_name("fresh"), 0) == TalkroomStatus.OK
    (pushes,) = await settled(fresh)
    assert all(p.ctype == TalkroomCmd.UserArrived for p in pushes), pushes
    names = Counter(p.body["uname"] for p in pushes)
    assert await fresh.exit() == TalkroomStatus.OK
    await fresh.close()
    return names


def talk(pushes: list[Push]) -> Counter[tuple[Any, ...]]:
    """Talkroom pushes as a multiset of comparable tuples (proto_type included)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for push in pushes:
        assert push.stype == Stype.TalkRoom, push
        body = push.body
        if push.ctype in (TalkroomCmd.UserArrived, TalkroomCmd.UserExit):
            kind = "arrived" if push.ctype == TalkroomCmd.UserArrived else "exit"
            out[(kind, body["uname"], body["usex"], push.proto_type)] += 1
        elif push.ctype == TalkroomCmd.UserMsg:
            out[("msg", body["0"], body["1"], body["2"], push.proto_type)] += 1
        else:
            raise AssertionError(f"unexpected talkroom push {push}")
    return out


async def next_gateway_notice(
    client: Client, notice: GatewayCmd, stype: int, *, timeout: float = 15.0
) -> Push:
    """The next stype-0 ``notice`` push about service ``stype`` (others of that kind skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            push = await client.next_push(Stype.Gateway, notice, timeout=timeout)
            if isinstance(push.body, dict) and push.body.get("stype") == stype:
                return push


async def retry_until_served(
    attempt: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    wake: Callable[[float], Awaitable[object]] | None = None,
    pace: float = 0.02,
) -> T:
    """Run ``attempt`` until it is not refused with SERVICE_UNAVAILABLE (or timed out).

    Each attempt waits for a real answer from the gateway: the reply or the refusal. Between
    refusals ``wake(remaining)`` waits for the event that makes another try worthwhile (a
    SERVICE_AVAILABLE push to a logged-in client); without one, the next try is paced by
    ``pace`` seconds (only used while a freshly started gateway is still dialling its
    services, which takes a few milliseconds).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return await attempt()
        except (ServiceUnavailable, RequestTimeout) as exc:
            last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if wake is not None:
            with contextlib.suppress(TimeoutError):
                await wake(remaining)
        else:
            await asyncio.sleep(min(pace, remaining))
    raise AssertionError(f"service still unavailable after {timeout}s: {last!r}")
