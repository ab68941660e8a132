"""netbus.rooms.clock: fixed-rate ticks and timers on a fake clock and a fake event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from netbus.rooms.clock import LogSampler, Scheduler, TickInfo


class Handle:
    def __init__(self, when: float, wake: Callable[[], object]) -> None:
        self.when = when
        self.wake = wake
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A clock and an ``arm`` for the Scheduler; time moves only when the test says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.handles: list[Handle] = []

    def clock(self) -> float:
        return self.now

    def arm(self, delay: float, wake: Callable[[], object]) -> Handle:
        handle = Handle(self.now + delay, wake)
        self.handles.append(handle)
        return handle

    def live(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def run_until(self, until: float, *, skew: float = 0.0) -> None:
        """Fire each wake-up at its time (plus ``skew``), as a punctual loop would."""
        while True:
            due = [h for h in self.live() if h.when + skew <= until]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            handle.cancelled = True
            self.now = max(self.now, handle.when + skew)
            handle.wake()
        self.now = max(self.now, until)


def scheduler(loop: FakeLoop, **options: object) -> Scheduler:
    return Scheduler(clock=loop.clock, arm=loop.arm, **options)  # type: ignore[arg-type]


def test_ticks_are_due_at_absolute_times_whatever_the_callbacks_cost() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    seen: list[tuple[TickInfo, float]] = []

    def tick(info: TickInfo) -> None:
        seen.append((info, loop.now))
        loop.now += 0.03  # the simulation step takes 30 ms of the 50

    sched.every(0.05, tick, start=100.05)
    loop.run_until(101.0)
    assert [info.number for info, _ in seen] == list(range(20))
    for info, started in seen:
        assert started == pytest.approx(100.05 + info.number * 0.05)
        assert info.skipped == 0 and info.lateness == pytest.approx(0.0, abs=1e-9)
        assert info.dt == pytest.approx(0.05)


def test_an_overrun_skips_missed_ticks_and_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    seen: list[TickInfo] = []

    def tick(info: TickInfo) -> None:
        seen.append(info)
        if info.number == 0:
            loop.now += 0.17  # 3.4 intervals: ticks 1 and 2 can no longer run on time

    timer = sched.every(0.05, tick, start=100.05)
    with caplog.at_level(logging.WARNING, logger="netbus.rooms"):
        loop.run_until(100.3)
    assert [(i.number, i.skipped) for i in seen] == [(0, 0), (3, 2), (4, 0), (5, 0)]
    assert seen[1].lateness == pytest.approx(0.02) and seen[1].dt == pytest.approx(0.15)
    assert (timer.overruns, timer.skipped, timer.ran) == (1, 2, 4)
    assert (sched.overruns, sched.skipped) == (1, 2)
    assert timer.max_lateness == pytest.approx(0.02)
    assert len(caplog.records) == 1 and "2 tick(s) skipped" in caplog.text


def test_overrun_logs_are_sampled(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeLoop()
    shared = LogSampler(loop.clock, every=10.0)
    sched = scheduler(loop, sampler=shared)
    other = scheduler(loop, sampler=shared)  # another room of the same process

    def slow(info: TickInfo) -> None:
        loop.now += 0.11  # every tick skips at least one

    sched.every(0.05, slow, start=100.05)
    other.every(0.05, slow, start=100.07)
    with caplog.at_level(logging.WARNING, logger="netbus.rooms"):
        loop.run_until(125.0)
    assert sched.overruns > 100 and other.overruns > 100
    assert len(caplog.records) == 3  # at 100, ~110 and ~120 s: never one per tick or room
    assert "overrun(s)" in caplog.records[1].getMessage()


def test_a_late_loop_skips_without_a_burst() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    seen: list[TickInfo] = []
    sched.every(0.05, seen.append, start=100.05)
    loop.run_until(100.1)
    loop.now = 101.0  # the event loop was blocked for 0.9 s
    sched.run_due()
    assert [i.number for i in seen] == [0, 1, 19]
    assert seen[-1].skipped == 17
    loop.run_until(101.1)
    assert [i.number for i in seen][3:] == [20, 21]


def test_early_wake_ups() -> None:
    loop = FakeLoop()
    sched = scheduler(loop, early=0.001)
    seen: list[TickInfo] = []
    sched.every(0.05, seen.append, start=100.05)
    loop.run_until(100.05, skew=-0.0005)  # 0.5 ms early: close enough, runs now
    assert len(seen) == 1 and seen[0].lateness == pytest.approx(-0.0005)
    loop.now = 100.098  # 2 ms early: too early, wait
    assert sched.run_due() == 0
    assert loop.live()[-1].when == pytest.approx(100.1)


def test_timers_run_in_due_order_with_ticks() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    order: list[str] = []
    sched.every(0.05, lambda info: order.append(f"tick{info.number}"), start=100.05)
    sched.call_later(0.07, lambda: order.append("later"))
    sched.call_at(100.05, lambda: order.append("at"))  # same time as tick 0: after it (FIFO)
    interval = sched.call_interval(0.04, lambda: order.append("every"))
    loop.run_until(100.1)
    assert order == ["every", "tick0", "at", "later", "every", "tick1"]
    interval.cancel()
    interval.cancel()
    assert len(sched) == 1


def test_cancel_from_a_callback_and_zero_delay_rescheduling() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    runs: list[int] = []

    def tick(info: TickInfo) -> None:
        runs.append(info.number)
        if info.number == 2:
            timer.cancel()

    timer = sched.every(0.05, tick, start=100.05)
    loop.run_until(101.0)
    assert runs == [0, 1, 2]

    spins: list[float] = []

    def again() -> None:
        spins.append(loop.now)
        if len(spins) < 3:
            sched.call_later(0, again)

    sched.call_later(0, again)
    assert sched.run_due() == 1  # a timer added while running waits for the next pass
    loop.run_until(loop.now)
    assert len(spins) == 3


def test_callback_errors_are_contained() -> None:
    loop = FakeLoop()
    errors: list[BaseException] = []
    sched = scheduler(loop, on_error=errors.append)
    runs: list[int] = []

    def tick(info: TickInfo) -> None:
        runs.append(info.number)
        raise RuntimeError("bug in the room")

    sched.every(0.05, tick, start=100.05)
    sched.call_later(0.06, lambda: 1 / 0)
    loop.run_until(100.16)
    assert runs == [0, 1, 2] and sched.errors == 4
    kinds = [type(e) for e in errors]
    assert kinds == [RuntimeError, ZeroDivisionError, RuntimeError, RuntimeError]


def test_default_error_log_is_sampled(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    sched.every(0.05, lambda info: 1 / 0, start=100.05)
    with caplog.at_level(logging.ERROR, logger="netbus.rooms"):
        loop.run_until(101.0)
    assert sched.errors == 20 and len(caplog.records) == 1


def test_dispose_cancels_everything() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    fired: list[str] = []
    sched.every(0.05, lambda info: fired.append("tick"))
    sched.call_later(1.0, lambda: fired.append("timer"))
    sched.call_later(2.0, print).cancel()
    sched.dispose()
    assert not loop.live() and len(sched) == 0 and sched.next_deadline is None
    loop.run_until(102.0)
    assert fired == []
    with pytest.raises(RuntimeError, match="disposed"):
        sched.call_later(1.0, print)


def test_dispose_from_inside_a_tick() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    runs: list[int] = []

    def tick(info: TickInfo) -> None:
        runs.append(info.number)
        sched.dispose()

    sched.every(0.05, tick, start=100.05)
    sched.call_at(100.05, lambda: runs.append(-1))
    loop.run_until(101.0)
    assert runs == [0] and not loop.live()


def test_many_cancelled_timers_are_compacted() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    timers = [sched.call_later(10.0 + i, print) for i in range(200)]
    for timer in timers[1:]:
        timer.cancel()
    assert len(sched) == 1
    timers[0].cancel()
    assert sched.next_deadline is None and len(sched._heap) == 0


def test_interval_must_be_positive() -> None:
    sched = scheduler(FakeLoop())
    with pytest.raises(ValueError, match="interval"):
        sched.every(0, print)


def test_groups_share_one_wake_up_and_dispose_alone() -> None:
    loop = FakeLoop()
    sched = scheduler(loop)
    room_a, room_b = sched.group(), sched.group()
    runs: list[str] = []
    room_a.every(0.05, lambda info: runs.append(f"a{info.number}"), start=100.05)
    room_b.every(0.05, lambda info: runs.append(f"b{info.number}"), start=100.0505)
    room_a.call_later(0.5, lambda: runs.append("a-timer"))
    once = room_b.call_later(0.01, lambda: runs.append("b-once"))
    assert len(loop.live()) == 1  # one wake-up armed for both rooms
    loop.run_until(100.1)
    # b's tick is within `early` of a's: one wake-up runs both.
    assert runs == ["b-once", "a0", "b0", "a1", "b1"]
    assert once not in room_b._timers and len(room_b) == 1
    room_a.dispose()
    room_a.dispose()
    assert len(room_a) == 0 and len(sched) == 1
    with pytest.raises(RuntimeError, match="group disposed"):
        room_a.call_at(101.0, print)
    loop.run_until(100.2)
    assert runs[5:] == ["b2"] and "a-timer" not in runs
    assert room_b.overruns == 0 and room_b.skipped == 0
    interval = room_b.call_interval(1.0, print)
    interval.cancel()
    assert len(room_b) == 1
