"""The SDK's public names: every module sets __all__, and the package re-exports the API."""

from __future__ import annotations

import importlib

import pytest

import netbus
import netbus.service

MODULES = [
    "answers",
    "base",
    "codecs",
    "commands",
    "declare",
    "dispatch",
    "host",
    "loader",
    "sampling",
    "server",
    "user",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_all(name: str) -> None:
    module = importlib.import_module(f"netbus.service.{name}")
    assert len(module.__all__) == len(set(module.__all__))
    assert all(hasattr(module, attr) for attr in module.__all__)


def test_package_exports_the_sdk() -> None:
    for name in ("Service", "ServiceServer", "User", "command", "client_codecs", "declaration"):
        assert name in netbus.service.__all__
    for name in netbus.service.__all__:
        assert hasattr(netbus.service, name)
    for name in ("Service", "ServiceServer", "User", "command", "client_codecs", "RequestFailed"):
        assert getattr(netbus, name) is getattr(netbus.service, name, getattr(netbus, name))
    assert not hasattr(netbus.protocol, "CODECS")  # no process-wide registry any more
