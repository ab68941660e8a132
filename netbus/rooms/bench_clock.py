"""Measure tick lateness of the room clock on a real event loop (asyncio and uvloop).

Run ``python -m netbus.rooms.bench_clock [--seconds 30] [--rooms 1 200]``. Each room is one
`Scheduler` ticking every 50 ms; with ``--work arena`` (default) its tick moves the 8 players
of the showcase arena (f32 positions; ``fixed``: int positions) and encodes a patch
(`netbus.rooms.bench_state`), so 200 rooms load the loop like 200 real rooms minus the
network. Rooms start staggered over one interval, as rooms created at different times are.
Lateness is ``time.monotonic()`` at the start of the callback minus the tick's due time; the
report gives p50/p99/max in ms, ticks skipped, and overruns.

Numbers, not asserts: docs/state-sync.md records them with the machine's load at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable

from netbus.rooms.bench_state import _Game
from netbus.rooms.clock import LogSampler, Repeating, TickInfo
from netbus.rooms.driver import loop_scheduler
from netbus.rooms.encoder import StateEncoder

__all__ = ["main", "measure"]

INTERVAL = 0.05


def _work(kind: str, seed: int) -> Callable[[TickInfo], None]:
    if kind == "none":
        return lambda info: None
    game = _Game(kind == "fixed", random.Random(seed))
    encoder: StateEncoder[int] = StateEncoder(game.arena)
    viewers = list(range(8))

    def tick(info: TickInfo) -> None:
        game.step(info.number + 1, None)
        encoder.patch(viewers)

    return tick


async def _run(rooms: int, seconds: float, work: str, shared: bool) -> dict[str, float]:
    lateness: list[float] = []
    timers: list[Repeating] = []
    sampler = LogSampler(time.monotonic)  # one per process, as a rooms service would share
    one = loop_scheduler(sampler=sampler)
    now = time.monotonic()
    for i in range(rooms):
        step = _work(work, i)

        def tick(info: TickInfo, step: Callable[[TickInfo], None] = step) -> None:
            lateness.append(info.lateness)
            step(info)

        # A room's own scheduler (one loop timer each), or a group on the shared one.
        room = one.group() if shared else loop_scheduler(sampler=sampler)
        timers.append(room.every(INTERVAL, tick, start=now + INTERVAL + i * INTERVAL / rooms))
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)  # the measurement window itself: nothing to await instead
    cpu = time.process_time() - cpu0
    for timer in timers:
        timer.cancel()
    ordered = sorted(lateness)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return {
        "ticks": len(ordered),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
        "skipped": sum(t.skipped for t in timers),
        "overruns": sum(t.overruns for t in timers),
        "cpu_pct": cpu / seconds * 100,
    }


def measure(
    loop_name: str, rooms: int, seconds: float, work: str, shared: bool = False
) -> dict[str, float]:
    """One configuration on a fresh event loop."""
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(rooms, seconds, work, shared))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--loops", nargs="+", default=["uvloop", "asyncio"])
    parser.add_argument("--work", choices=["arena", "fixed", "none"], default="arena")
    parser.add_argument(
        "--shared", action="store_true", help="one scheduler, a TimerGroup per room"
    )
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}, cpus: {os.cpu_count()}")
    print(f"{'loop':8} {'rooms':>5} {'ticks':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'skipped':>7} {'overruns':>8} {'cpu %':>6}")
    for loop_name in args.loops:
        for rooms in args.rooms:
            r = measure(loop_name, rooms, args.seconds, args.work, args.shared)
            print(f"{loop_name:8} {rooms:5d} {r['ticks']:7.0f} {r['p50_ms']:7.2f} "
                  f"{r['p99_ms']:7.2f} {r['max_ms']:7.2f} {r['skipped']:7.0f} "
                  f"{r['overruns']:8.0f} {r['cpu_pct']:6.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
