"""`SampledLog`: count every event, log only the first few per reason and window.

Per-packet problems (a malformed body, a failing handler) are counted exactly in metrics but
must not flood the log: a hostile client can cause thousands a second (issue: ~20 MB/s of
log lines at one IP's allowance). Each reason gets ``per_window`` lines per ``window``
seconds; the rest of that window is summed into one summary line, written when the window
ends (`flush_expired`, which the server calls periodically) or at shutdown (`flush`).
Pure: the clock is injected, nothing is scheduled here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["SampledLog"]


class _Window:
    __slots__ = ("logged", "start", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0


class SampledLog:
    """Rate-limited logging by reason.

    Args:
        logger: where the lines go.
        per_window: lines logged per reason per window before suppressing.
        window: seconds.
        clock: monotonic seconds (inject a fake one in tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_window: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.per_window = per_window
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def log(
        self,
        reason: str,
        level: int,
        msg: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``msg % args`` unless ``reason`` used up its window; True if it was logged."""
        now = self.clock()
        window = self._windows.get(reason)
        if window is None or now - window.start >= self.window:
            if window is not None:
                self._summarise(reason, window)
            window = self._windows[reason] = _Window(now)
        if window.logged >= self.per_window:
            window.suppressed += 1
            return False
        window.logged += 1
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def flush_expired(self) -> None:
        """Write the summary of every window that has ended."""
        now = self.clock()
        for reason, window in list(self._windows.items()):
            if now - window.start >= self.window:
                self._summarise(reason, window)
                del self._windows[reason]

    def flush(self) -> None:
        """Write every pending summary now (shutdown)."""
        for reason, window in self._windows.items():
            self._summarise(reason, window)
        self._windows.clear()

    def _summarise(self, reason: str, window: _Window) -> None:
        if window.suppressed:
            self.logger.warning(
                "%d more %s events in %.0f s were not logged (counted in metrics)",
                window.suppressed,
                reason,
                self.window,
            )
            window.suppressed = 0
