"""A fixed-rate simulation clock and room timers on one injected clock (sans-I/O).

`Scheduler` keeps every timer of one room in a heap and asks its host for one wake-up at a
time (``arm(delay, wake)``: ``loop.call_later`` in production, a fake in tests). Time comes
from an injected ``clock()``; nothing here imports asyncio or time.

Fixed-rate timers (`Scheduler.every`) do not drift: tick n is due at ``start + n * interval``,
computed from n, never "interval after the previous one", so lateness does not accumulate.

When a tick is late by a whole interval or more (the previous tick ran long, or the event loop
was busy), the ticks missed are **skipped, not replayed**: the timer runs once, for the latest
tick that is due, and reports how many it skipped (`TickInfo.skipped`, ``dt``). Replaying them
back to back would turn one stall into a burst of ticks that all land in the same instant
(players see nothing of them but the CPU spike, which causes the next stall). Nakama's match
loop behaves the same (Go tickers drop ticks for slow receivers). Each such event counts as an
overrun and is logged, sampled: the first at once, then at most one summary per
``log_every`` seconds.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

__all__ = [
    "Arm",
    "Cancellable",
    "LogSampler",
    "Repeating",
    "Scheduler",
    "TickInfo",
    "Timer",
    "TimerGroup",
]

log = logging.getLogger("netbus.rooms")


class Cancellable(Protocol):
    """What ``arm`` returns (an asyncio TimerHandle fits)."""

    def cancel(self) -> object: ...


class Arm(Protocol):
    """Ask the host to call ``wake`` after ``delay`` seconds (``loop.call_later`` fits)."""

    def __call__(self, delay: float, wake: Callable[[], object], /) -> Cancellable: ...


class LogSampler:
    """Sampled logging of overruns and callback errors: the first at once, then at most one
    summary line per ``every`` seconds. Share one between the schedulers of all rooms of a
    process, or a bad second (a GC pause, a stalled loop) logs one line per room."""

    def __init__(self, clock: Callable[[], float], *, every: float = 10.0) -> None:
        self.clock = clock
        self.every = every
        self._overruns = 0
        self._skipped = 0
        self._worst = 0.0
        self._errors = 0
        self._overrun_at = -math.inf
        self._error_at = -math.inf

    def overrun(self, skipped: int, lateness: float) -> None:
        self._overruns += 1
        self._skipped += skipped
        self._worst = max(self._worst, lateness)
        now = self.clock()
        if now - self._overrun_at >= self.every:
            log.warning(
                "room tick overrun: %d overrun(s), %d tick(s) skipped, worst %.1f ms late",
                self._overruns,
                self._skipped,
                self._worst * 1e3,
            )
            self._overrun_at = now
            self._overruns = self._skipped = 0
            self._worst = 0.0

    def error(self, exc: BaseException) -> None:
        self._errors += 1
        now = self.clock()
        if now - self._error_at >= self.every:
            log.error("room timer callback raised (%d time(s))", self._errors, exc_info=exc)
            self._error_at = now
            self._errors = 0


class TickInfo(NamedTuple):
    """What a fixed-rate callback learns about the tick it runs."""

    number: int  #: schedule index: this tick was due at start + number * interval
    skipped: int  #: ticks missed just before this one (0 when on time)
    lateness: float  #: seconds between the due time and now (slightly < 0 within ``early``)
    dt: float  #: seconds of schedule since the previous tick ran: (skipped + 1) * interval


class Timer:
    """A one-shot timer; `cancel` is idempotent and safe from inside any callback."""

    __slots__ = ("_owner", "callback", "cancelled", "due", "group")

    def __init__(self, owner: Scheduler, due: float, callback: Callable[[], object]) -> None:
        self._owner = owner
        self.due = due
        self.callback = callback
        self.cancelled = False
        self.group: TimerGroup | None = None

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._owner._cancelled += 1
            if self.group is not None:
                self.group._timers.discard(self)

    def _fire(self, now: float) -> None:
        self.cancelled = True  # done: a later cancel() is a no-op
        if self.group is not None:
            self.group._timers.discard(self)
        self.callback()


_TimerT = TypeVar("_TimerT", bound=Timer)


class Repeating(Timer):
    """A fixed-rate timer with its overrun statistics."""

    __slots__ = (
        "interval",
        "max_lateness",
        "next_tick",
        "on_tick",
        "overruns",
        "ran",
        "skipped",
        "start",
    )

    def __init__(
        self, owner: Scheduler, start: float, interval: float, on_tick: Callable[[TickInfo], object]
    ) -> None:
        super().__init__(owner, start, self._run)
        self.start = start
        self.interval = interval
        self.on_tick = on_tick
        self.next_tick = 0  #: number of the next tick due
        self.ran = 0  #: ticks run
        self.skipped = 0  #: ticks skipped in total
        self.overruns = 0  #: times one or more ticks were skipped
        self.max_lateness = 0.0

    def _run(self) -> None:  # pragma: no cover - _fire is overridden
        raise AssertionError

    def _fire(self, now: float) -> None:
        n = self.next_tick
        start, interval = self.start, self.interval
        # The latest tick due by now; never an earlier one than scheduled (float rounding).
        k = max(n, math.floor((now - start) / interval))
        if start + (k + 1) * interval <= now:
            k += 1
        skipped = k - n
        lateness = now - (start + k * interval)
        self.next_tick = k + 1
        self.due = start + (k + 1) * interval
        self.ran += 1
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        owner = self._owner
        if skipped:
            self.skipped += skipped
            self.overruns += 1
            owner.overruns += 1
            owner.skipped += skipped
            owner.sampler.overrun(skipped, lateness)
        owner._push(self)  # before the callback, which may cancel it
        self.on_tick(TickInfo(k, skipped, lateness, (skipped + 1) * interval))


class Scheduler:
    """Timers and fixed-rate ticks of one room, on an injected clock.

    Args:
        clock: seconds, monotonic (``time.monotonic``; a fake in tests).
        arm: schedules the one wake-up the scheduler needs at a time (``loop.call_later``).
        early: a timer due within this many seconds runs now rather than re-arming (event
            loop timers are only as precise as their clock: uvloop's is 1 ms).
        on_error: called with any exception a callback raises; the default logs it through
            ``sampler``. A failing callback never stops the others or its own timer.
        sampler: where overruns and errors are logged (default: one of its own).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        arm: Arm,
        early: float = 0.001,
        on_error: Callable[[BaseException], object] | None = None,
        sampler: LogSampler | None = None,
    ) -> None:
        self.clock = clock
        self._arm = arm
        self.early = early
        self.sampler = sampler or LogSampler(clock)
        self.on_error = on_error or self.sampler.error
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._cancelled = 0
        self._armed: Cancellable | None = None
        self._armed_for = math.inf
        self._running = False
        self.disposed = False
        self.overruns = 0  #: overrun events, all repeating timers
        self.skipped = 0  #: ticks skipped, all repeating timers
        self.errors = 0  #: exceptions raised by callbacks

    # ------------------------------------------------------------------------------ API

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` once, ``delay`` seconds from now."""
        return self._add(Timer(self, self.clock() + max(0.0, delay), callback), None)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` once at clock time ``when``."""
        return self._add(Timer(self, when, callback), None)

    def every(
        self,
        interval: float,
        on_tick: Callable[[TickInfo], object],
        *,
        start: float | None = None,
    ) -> Repeating:
        """Run ``on_tick(info)`` at ``start + n * interval`` for n = 0, 1, 2 ... (see module).

        ``start`` defaults to one interval from now.
        """
        return self._add(self._repeating(interval, on_tick, start), None)

    def call_interval(self, interval: float, callback: Callable[[], object]) -> Repeating:
        """A repeating room timer (same schedule as `every`, callback without arguments)."""
        return self.every(interval, lambda _info: callback())

    def group(self) -> TimerGroup:
        """A set of timers (one room's) that can be disposed of without touching the others."""
        return TimerGroup(self)

    def dispose(self) -> None:
        """Cancel every timer and the wake-up (room disposed); later scheduling raises."""
        self.disposed = True
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()
        self._cancelled = 0
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        self._armed_for = math.inf

    @property
    def next_deadline(self) -> float | None:
        """When the earliest live timer is due (None: nothing scheduled)."""
        self._drop_cancelled_top()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    # ------------------------------------------------------------------------ internals

    def _repeating(
        self, interval: float, on_tick: Callable[[TickInfo], object], start: float | None
    ) -> Repeating:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        first = self.clock() + interval if start is None else start
        return Repeating(self, first, interval, on_tick)

    def _add(self, timer: _TimerT, group: TimerGroup | None) -> _TimerT:
        if group is not None:
            if group.disposed:
                raise RuntimeError("timer group disposed (the room is gone)")
            timer.group = group
            group._timers.add(timer)
        self._push(timer)
        return timer

    def _push(self, timer: Timer) -> None:
        if self.disposed:
            raise RuntimeError("scheduler disposed (the room is gone)")
        timer.cancelled = False
        self._seq += 1
        heapq.heappush(self._heap, (timer.due, self._seq, timer))
        if not self._running and timer.due < self._armed_for:
            self._rearm()

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        if self._cancelled > 64 and self._cancelled * 2 > len(heap):
            self._heap = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _rearm(self) -> None:
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        deadline = self.next_deadline
        self._armed_for = math.inf if deadline is None else deadline
        if deadline is not None:
            self._armed = self._arm(max(0.0, deadline - self.clock()), self._wake)

    def _wake(self) -> None:
        self._armed = None
        self._armed_for = math.inf
        if not self.disposed:
            self.run_due()

    def run_due(self) -> int:
        """Run every timer due now (within ``early``), oldest first; return how many ran.

        Timers scheduled while this runs wait for the next pass, even if already due, so a
        callback that re-schedules itself with no delay cannot starve the loop.
        """
        now = self.clock()
        limit = self._seq
        ran = 0
        heap = self._heap
        self._running = True
        try:
            while heap:
                due, seq, timer = heap[0]
                if due > now + self.early or seq > limit:
                    break
                heapq.heappop(heap)
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
                ran += 1
                try:
                    timer._fire(now)
                except Exception as exc:
                    self.errors += 1
                    self.on_error(exc)
                heap = self._heap  # compaction may have replaced it
        finally:
            self._running = False
        if not self.disposed:
            self._rearm()
        return ran


class TimerGroup:
    """One room's timers on a `Scheduler` shared by every room of a process.

    Same API as the scheduler; `dispose` cancels this group's timers only. Sharing one
    scheduler means one event-loop wake-up serves every room due within ``early`` of it,
    instead of one wake-up (and one loop timer) per room.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.disposed = False
        self._timers: set[Timer] = set()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        s = self.scheduler
        return s._add(Timer(s, s.clock() + max(0.0, delay), callback), self)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        return self.scheduler._add(Timer(self.scheduler, when, callback), self)

    def every(
        self,
        interval: float,
        on_tick: Callable[[TickInfo], object],
        *,
        start: float | None = None,
    ) -> Repeating:
        s = self.scheduler
        return s._add(s._repeating(interval, on_tick, start), self)

    def call_interval(self, interval: float, callback: Callable[[], object]) -> Repeating:
        return self.every(interval, lambda _info: callback())

    def dispose(self) -> None:
        """Cancel every timer of the group (idempotent); later scheduling raises."""
        self.disposed = True
        for timer in list(self._timers):
            timer.cancel()

    def __len__(self) -> int:
        return len(self._timers)

    @property
    def overruns(self) -> int:
        return sum(t.overruns for t in self._timers if isinstance(t, Repeating))

    @property
    def skipped(self) -> int:
        return sum(t.skipped for t in self._timers if isinstance(t, Repeating))
