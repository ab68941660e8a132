"""Suite-wide pytest setup: every async test runs on the stdlib loop and on uvloop.

pytest-asyncio 1.5 parametrises each async test over the loop factories that the
``pytest_asyncio_loop_factories`` hook returns, so a test id ends in ``[asyncio]`` or
``[uvloop]``. ``NETBUS_TEST_LOOPS=asyncio`` (or ``uvloop``) narrows a local run to one loop.
uvloop is what the roles run on by default (`netbus.runtime.loop_factory`), so a test that
passes only on the stdlib loop proves little about production.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

# `pytest` (not `python -m pytest`) does not put the work tree on sys.path, and the scratch
# venv does not install netbus: make `import netbus` resolve to this checkout either way.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Roles built in-process from default settings share one cluster secret through the
# environment instead of creating .netbus/cluster_secret in the work tree. Role processes
# (tests/e2e/cluster.py) do not inherit NETBUS_* variables: they use a file in their workdir.
os.environ.setdefault("NETBUS_CLUSTER__SECRET", "tests-cluster-secret-" + os.urandom(8).hex())

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_running: list[asyncio.AbstractEventLoop] = []  #: the loop of the current test (last made)


def _tracked(factory: LoopFactory) -> LoopFactory:
    def make() -> asyncio.AbstractEventLoop:
        loop = factory()
        _running[:] = [loop]
        return loop

    make.__qualname__ = make.__name__ = f"tracked_{factory.__module__}_{factory.__name__}"
    return make


def _loop_factories() -> dict[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"asyncio": _tracked(asyncio.new_event_loop)}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        pass
    else:
        factories["uvloop"] = _tracked(uvloop.new_event_loop)
    wanted = os.environ.get("NETBUS_TEST_LOOPS", "").strip()
    if wanted:
        names = {name.strip() for name in wanted.split(",") if name.strip()}
        unknown = names - factories.keys()
        if unknown:
            raise pytest.UsageError(
                f"NETBUS_TEST_LOOPS names unknown loops {sorted(unknown)}; "
                f"available: {sorted(factories)}"
            )
        factories = {name: f for name, f in factories.items() if name in names}
    return factories


_FACTORIES = _loop_factories()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """Run every async test once per event loop implementation (stdlib, uvloop)."""
    return _FACTORIES


# --------------------------------------------------------------- timeouts that work on uvloop
def _on_uvloop(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    uv = _FACTORIES.get("uvloop")
    return uv is not None and callspec is not None and callspec.params.get(_FACTORY_PARAM) is uv


_FACTORY_PARAM = "_asyncio_loop_factory"  #: pytest-asyncio's indirect parameter


def _cancel_everything(loop: asyncio.AbstractEventLoop, nodeid: str, seconds: float) -> None:
    tasks = asyncio.all_tasks(loop)
    sys.stderr.write(
        f"\nTimeout after {seconds}s on uvloop: cancelling {len(tasks)} tasks of {nodeid}\n"
    )
    for task in tasks:
        task.cancel()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's ``signal`` method cannot stop a hung test on uvloop.

    uvloop runs Python signal handlers from a loop callback and logs what they raise
    ("Exception in callback Loop._read_from_self") instead of letting it unwind the test, so
    a test awaiting forever stays stuck and CI hangs. For uvloop tests a timer thread wakes
    the loop and cancels all its tasks instead (the test fails with CancelledError); if the
    loop still has not come back 15 s later, pytest-timeout's ``thread`` method dumps every
    stack and exits.
    """
    if settings.method != "signal" or not _on_uvloop(item):
        return None
    import pytest_timeout

    def expire() -> None:
        loop = _running[0] if _running else None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_cancel_everything, loop, item.nodeid, settings.timeout)

    first = threading.Timer(settings.timeout, expire)
    last = threading.Timer(settings.timeout + 15, pytest_timeout.timeout_timer, (item, settings))
    for timer in (first, last):
        timer.daemon = True
        timer.start()

    def cancel() -> None:
        for timer in (first, last):
            timer.cancel()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]
    return True


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for localhost/127.0.0.1: ``(certfile, keyfile)``."""
    from tests.helpers import make_self_signed_cert

    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))
