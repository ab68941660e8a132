"""The asyncio side of the room clock: a `Scheduler` woken by the running event loop.

Kept apart so that `netbus.rooms.clock` stays sans-I/O. The scheduler reads ``time.monotonic``
(precise on every loop; uvloop's ``loop.time()`` is cached per loop iteration in whole
milliseconds) and asks the loop for one wake-up at a time with ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from netbus.rooms.clock import Scheduler

__all__ = ["loop_scheduler"]


def loop_scheduler(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    **options: Any,
) -> Scheduler:
    """A `Scheduler` on ``loop`` (default: the running loop); ``options`` go to Scheduler."""
    loop = loop or asyncio.get_running_loop()
    return Scheduler(clock=clock, arm=loop.call_later, **options)
