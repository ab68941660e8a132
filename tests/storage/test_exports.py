"""Every storage module declares ``__all__``, and the package re-exports the public API."""

from __future__ import annotations

import importlib

import pytest

import netbus.storage

MODULES = [
    "netbus.storage",
    "netbus.storage.accounts",
    "netbus.storage.engine",
    "netbus.storage.errors",
    "netbus.storage.migrate",
    "netbus.storage.schema",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    assert sorted(set(module.__all__)) == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_public_api() -> None:
    assert {
        "Account",
        "AccountNotFound",
        "AccountStore",
        "StorageError",
        "create_engine",
        "hash_guest_key",
        "redact_url",
        "upgrade",
        "upgrade_sync",
        "uinfo",
        "metadata",
    } <= set(netbus.storage.__all__)


def test_storage_error_is_a_netbus_error() -> None:
    from netbus.errors import NetbusError

    assert issubclass(netbus.storage.StorageError, NetbusError)
