"""netbus.rooms' public names (every module sets __all__; the package re-exports the API)."""

from __future__ import annotations

import importlib

import pytest

import netbus.rooms

MODULES = [
    "wire",
    "primitives",
    "layout",
    "schema",
    "segments",
    "tracking",
    "containers",
    "encoder",
    "remote",
    "decoder",
    "clock",
    "driver",
    "bench_state",
    "bench_clock",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_all(name: str) -> None:
    module = importlib.import_module(f"netbus.rooms.{name}")
    assert len(module.__all__) == len(set(module.__all__))
    for attr in module.__all__:
        assert hasattr(module, attr), attr


def test_package_all() -> None:
    exported = netbus.rooms.__all__
    assert len(exported) == len(set(exported))
    assert all(hasattr(netbus.rooms, name) for name in exported)


def test_the_sync_core_imports_no_asyncio() -> None:
    """State sync and the scheduler are sans-I/O: only driver.py touches the event loop."""
    import ast
    from pathlib import Path

    core = ["wire", "primitives", "layout", "tracking", "containers", "schema", "encoder"]
    core += ["segments", "remote", "decoder", "clock"]
    for name in core:
        path = Path(netbus.rooms.__file__).with_name(f"{name}.py")
        tree = ast.parse(path.read_text("utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert not imported & {"asyncio", "socket", "time", "uvloop"}, name
