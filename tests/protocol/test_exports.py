"""netbus.protocol's public names (STYLE 2.13: every module sets __all__)."""

from __future__ import annotations

import importlib

import pytest

import netbus.protocol

MODULES = ["header", "framing", "codec", "registry", "control"]


@pytest.mark.parametrize("name", MODULES)
def test_module_all(name: str) -> None:
    module = importlib.import_module(f"netbus.protocol.{name}")
    assert len(module.__all__) == len(set(module.__all__))
    for attr in module.__all__:
        assert getattr(netbus.protocol, attr) is getattr(module, attr)


def test_package_all() -> None:
    exported = netbus.protocol.__all__
    assert len(exported) == len(set(exported))
    assert all(hasattr(netbus.protocol, name) for name in exported)
