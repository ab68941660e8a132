"""netbus.rooms.driver: the scheduler on a real event loop (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import itertools

from netbus.rooms.clock import TickInfo
from netbus.rooms.driver import loop_scheduler


async def test_ticks_and_timers_on_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    sched = loop_scheduler()
    ticks: list[TickInfo] = []
    done: asyncio.Future[None] = loop.create_future()
    fired: list[str] = []

    def tick(info: TickInfo) -> None:
        ticks.append(info)
        if len(ticks) == 5 and not done.done():
            done.set_result(None)

    sched.every(0.01, tick)
    sched.call_later(0.015, lambda: fired.append("timer"))
    await asyncio.wait_for(done, 10)
    sched.dispose()
    numbers = [info.number for info in ticks]
    # Each tick is the next one, or skips ahead (a busy machine) and says by how much.
    for before, after in itertools.pairwise(ticks):
        assert after.number == before.number + 1 + after.skipped
    assert numbers[0] == ticks[0].skipped and fired == ["timer"]


async def test_dispose_stops_the_wake_ups() -> None:
    loop = asyncio.get_running_loop()
    sched = loop_scheduler(loop)
    runs: list[int] = []
    sched.every(0.005, lambda info: runs.append(info.number))
    stopped: asyncio.Future[None] = loop.create_future()
    sched.call_later(0.02, lambda: (sched.dispose(), stopped.set_result(None)))
    await asyncio.wait_for(stopped, 10)
    count = len(runs)
    # One more loop turn with a zero-delay callback: nothing is armed any more.
    turned: asyncio.Future[None] = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned
    assert len(runs) == count and sched._armed is None
