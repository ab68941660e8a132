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
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

# `pytest` (not `python -m pytest`) does not put the work tree on sys.path, and the scratch
# venv does not install netbus: make `import netbus` resolve to this checkout either way.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _loop_factories() -> dict[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
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


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for localhost/127.0.0.1: ``(certfile, keyfile)``."""
    from helpers import make_self_signed_cert

    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))
