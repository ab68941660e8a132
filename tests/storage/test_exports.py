"""Every storage module declares ``__all__``, and the package re-exports the public API."""

from __future__ import annotations

import importlib

import pytest

import netbus.storage

MODULES = [
    "netbus.storage",
    "netbus.storage.accounts",
    "netbus.storage.auth",
    "netbus.storage.credentials",
    "netbus.storage.engine",
    "netbus.storage.errors",
    "netbus.storage.guest_batch",
    "netbus.storage.lockout",
    "netbus.storage.lockout_redis",
    "netbus.storage.lockout_sql",
    "netbus.storage.migrate",
    "netbus.storage.passwords",
    "netbus.storage.rawdb",
    "netbus.storage.schema",
    "netbus.storage.tokens",
    "netbus.storage.tokens_redis",
    "netbus.storage.tokens_sql",
    "netbus.storage.usernames",
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
        "AuthStore",
        "AuthOptions",
        "AuthRefused",
        "Refusal",
        "Login",
        "open_auth_store",
        "GuestLoginBatcher",
        "TokenStore",
        "AttemptLimiter",
    } <= set(netbus.storage.__all__)


def test_importing_storage_does_not_import_redis() -> None:
    import subprocess
    import sys

    code = "import sys, netbus.storage; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_storage_error_is_a_netbus_error() -> None:
    from netbus.errors import NetbusError

    assert issubclass(netbus.storage.StorageError, NetbusError)
