"""Running a role: pick the event loop (uvloop where available) and stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Literal

__all__ = ["LoopName", "loop_factory", "run", "wait_for_signal"]

LoopName = Literal["auto", "uvloop", "asyncio"]


def loop_factory(name: LoopName = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``asyncio.Runner``; None means the stdlib default loop."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


async def wait_for_signal(*signals: signal.Signals) -> signal.Signals:
    """Return when one of ``signals`` (default SIGINT, SIGTERM) arrives."""
    loop = asyncio.get_running_loop()
    fired: asyncio.Future[signal.Signals] = loop.create_future()
    sigs = signals or (signal.SIGINT, signal.SIGTERM)

    def fire(sig: signal.Signals) -> None:
        if not fired.done():
            fired.set_result(sig)

    for sig in sigs:
        loop.add_signal_handler(sig, fire, sig)
    try:
        return await fired
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


def run(main: Callable[[], Coroutine[Any, Any, None]], *, loop: LoopName = "auto") -> None:
    """Run ``main()`` to completion on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())
