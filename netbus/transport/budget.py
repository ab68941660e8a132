"""`InputBudget`: how many bytes of unfinished input a whole process may hold.

Every connection may hold one unfinished frame (a TCP frame whose length is known, a WS frame
or fragmented message, an HTTP upgrade request). One such frame is small, but 2,000
connections each holding an unfinished 64 KB frame are 128 MB, and an attacker needs to send
little to make that happen. The frame deadline (`Guard`) bounds how long one is held; this
budget bounds how much is held at once across every listener that shares it.

Policy when an update takes the total over ``limit``: the connections that have held
unfinished input the *longest* are closed first (``CloseReason.INPUT_BUDGET``), until the
total is back under ``low_water * limit``. Why oldest first rather than largest first:
a stalling attacker's frames are all about as large as the largest legitimate message, so
size does not tell them apart, but age does — a real client finishes its frame within a
round trip or two, while a staller holds it until something cuts it. A connection that
completes a frame goes to the young end again. (Refusing new input instead would let the
stallers that got in first starve everybody else until their deadline.) Freeing in one
sweep down to the low-water mark makes the cost of finding victims amortised O(1) per byte.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from netbus.transport.reasons import CloseReason

if TYPE_CHECKING:
    from netbus.transport.link import Link

__all__ = ["InputBudget"]

log = logging.getLogger("netbus.transport")

_LOG_INTERVAL = 10.0  #: seconds between two warnings about cuts (the count is in each)


class InputBudget:
    """Bytes of unfinished input held by the links that share this budget.

    Args:
        limit: the most bytes held at once; 0 turns the budget off (only counting).
        low_water: after a breach, links are cut until the total is below this fraction.
    """

    __slots__ = (
        "_holders",
        "_logged_at",
        "_logged_cut",
        "cut",
        "limit",
        "low_water",
        "peak",
        "total",
    )

    def __init__(self, limit: int, *, low_water: float = 0.75) -> None:
        if limit < 0 or not 0.0 < low_water <= 1.0:
            raise ValueError("limit must be >= 0 and low_water in (0, 1]")
        self.limit = limit
        self.low_water = low_water
        self.total = 0  #: bytes held now
        self.peak = 0  #: the most ever held at once (after cuts)
        self.cut = 0  #: links closed to stay within the budget
        #: links holding input, oldest first (dicts keep insertion order)
        self._holders: dict[Link, None] = {}
        self._logged_at = float("-inf")
        self._logged_cut = 0

    @property
    def holders(self) -> int:
        return len(self._holders)

    def update(self, link: Link, held: int, *, progressed: bool = False) -> None:
        """``link`` now holds ``held`` bytes of unfinished input.

        Args:
            progressed: the link completed a frame since its last update, so whatever it
                holds now is a new frame: it moves to the young end.
        """
        old = link.partial_in
        link.partial_in = held
        self.total += held - old
        holders = self._holders
        if held:
            if not old:
                holders[link] = None
            elif progressed:
                del holders[link]
                holders[link] = None
        elif old:
            holders.pop(link, None)
        if self.limit and self.total > self.limit:
            self._shed()
        elif self.total > self.peak:
            self.peak = self.total

    def release(self, link: Link) -> None:
        """``link`` is closing: whatever it held no longer counts."""
        if link.partial_in:
            self.update(link, 0)

    def _shed(self) -> None:
        target = int(self.limit * self.low_water)
        victims = []
        freed = 0
        for link in self._holders:
            victims.append(link)
            freed += link.partial_in
            if self.total - freed <= target:
                break
        for link in victims:
            self.cut += 1
            self.release(link)
            link.close(CloseReason.INPUT_BUDGET, abort=True)
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL:  # sampled: an attack must not flood logs
            log.warning(
                "unfinished input over its budget of %d bytes: %d connections cut (oldest "
                "holders first), %d since the last warning",
                self.limit,
                len(victims),
                self.cut - self._logged_cut,
            )
            self._logged_at, self._logged_cut = now, self.cut
