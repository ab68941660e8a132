"""`Owner` values and the package's public names."""

from __future__ import annotations

import importlib

import pytest

import netbus.registry
from netbus.registry import Owner


@pytest.mark.parametrize(
    ("text", "owner"),
    [
        ("gw1:ab12.7", Owner("gw1", "ab12.7")),
        (b"gw-2.x:c", Owner("gw-2.x", "c")),
        ("gw1:a:b", Owner("gw1", "a:b")),
        ("gw1:", None),
        (":c", None),
        ("nocolon", None),
        (None, None),
    ],
)
def test_owner_parse(text: str | bytes | None, owner: Owner | None) -> None:
    assert Owner.parse(text) == owner


def test_owner_str_round_trips() -> None:
    owner = Owner("gw1", "ab12.7")
    assert str(owner) == "gw1:ab12.7"
    assert Owner.parse(str(owner)) == owner


@pytest.mark.parametrize("name", ["base", "local", "redis", "profiles"])
def test_module_all(name: str) -> None:
    module = importlib.import_module(f"netbus.registry.{name}")
    assert len(module.__all__) == len(set(module.__all__))
    for attr in module.__all__:
        assert hasattr(module, attr)


def test_package_exports_resolve() -> None:
    for name in netbus.registry.__all__:
        assert getattr(netbus.registry, name) is not None
    with pytest.raises(AttributeError):
        netbus.registry.nope  # noqa: B018
