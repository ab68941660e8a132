"""Witnesses: ordinary logged-in users who keep chatting while a test attacks the cluster.

Issue 10 asks of every attack that concerns other users that it leaves them alone: a few
members of the talkroom each send a message every 100 ms; every message must reach every
other witness, and the delivery latency (send to push, one clock: this process) must stay
under 250 ms at the 99th percentile. `Witnesses.check` asserts exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType

from netbus.client import Client
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.e2e.helpers import Clients, barrier, new_name

P99_LIMIT = 0.250  #: seconds


@dataclass
class WitnessReport:
    sent: int = 0
    expected: int = 0  #: deliveries owed: every message to every other witness
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)  #: seconds, send -> push
    errors: list[str] = field(default_factory=list)

    @property
    def p99(self) -> float:
        if not self.latencies:
            return float("inf")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def __str__(self) -> str:
        med = sorted(self.latencies)[len(self.latencies) // 2] if self.latencies else -1
        return (
            f"witnesses: {self.sent} sent, {self.delivered}/{self.expected} delivered, "
            f"median {med * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, errors {self.errors[:3]}"
        )


class Witnesses:
    """``async with Witnesses(clients, url) as w: <attack>``, then ``w.check()``.

    Args:
        count: members chatting (each receives the others' messages).
        interval: seconds between two messages of one member.
    """

    def __init__(
        self, clients: Clients, url: str, *, count: int = 3, interval: float = 0.1
    ) -> None:
        self.clients = clients
        self.url = url
        self.count = count
        self.interval = interval
        self.tag = f"wit-{secrets.token_hex(3)}:"
        self.members: list[Client] = []
        self.report = WitnessReport()
        self._sent_at: dict[str, float] = {}
        self._received: dict[int, set[str]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Witnesses:
        for _ in range(self.count):
            self.members.append(await self.clients.member(self.url, new_name("wit")))
        for i, member in enumerate(self.members):
            self._received[i] = set()
            self._tasks.append(asyncio.create_task(self._listen(i, member)))
        self._senders = [asyncio.create_task(self._talk(i, m)) for i, m in enumerate(self.members)]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        await asyncio.gather(*self._senders, return_exceptions=True)
        # Every message sent was answered; a barrier per member then guarantees its pushes
        # are queued here (the talkroom answers in order, every hop is an ordered stream).
        with contextlib.suppress(Exception):
            for member in self.members:
                await barrier(member)
        for _ in range(10_000):  # let the listeners take what is queued (no I/O involved)
            if all(member.pushes.empty() for member in self.members):
                break
            await asyncio.sleep(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for member in self.members:
            with contextlib.suppress(Exception):
                await member.exit()

    async def _talk(self, i: int, member: Client) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        next_at = loop.time()
        while not self._stop.is_set():
            text = f"{self.tag}{i}:{seq}"
            seq += 1
            self._sent_at[text] = time.monotonic()
            try:
                reply = await member.send_msg(text, timeout=5.0)
            except Exception as exc:  # counted: the check fails on any
                self.report.errors.append(f"{i}: {type(exc).__name__}: {exc}")
                return
            if reply.get("0") != TalkroomStatus.OK:
                self.report.errors.append(f"{i}: reply {reply}")
            self.report.sent += 1
            self.report.expected += self.count - 1
            next_at += self.interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_at - loop.time())):
                    await self._stop.wait()

    async def _listen(self, i: int, member: Client) -> None:
        while True:
            push = await member.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg, timeout=3600)
            text = push.body.get("2") if isinstance(push.body, dict) else None
            if not isinstance(text, str) or not text.startswith(self.tag):
                continue
            now = time.monotonic()
            if text in self._received[i]:
                self.report.errors.append(f"{i}: duplicate {text}")
                continue
            self._received[i].add(text)
            self.report.delivered += 1
            self.report.latencies.append(now - self._sent_at[text])

    def check(self, *, p99: float = P99_LIMIT) -> WitnessReport:
        """Every message arrived at every other witness, p99 latency under ``p99``."""
        report = self.report
        assert not report.errors, report
        assert report.sent >= self.count, report  # they did chat during the attack
        assert report.delivered == report.expected, report
        assert report.p99 < p99, report
        return report
