"""``[services.<name>]``: checked keys, free-form settings, and the gateway routes derived
from the same table (netbus/config.py; docs/config.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netbus.admin import admin_addresses, admin_targets, build_admin
from netbus.config import ServiceRoute, load_settings
from netbus.errors import ConfigError
from netbus.layout import service_slots

ECHO = """
[services.echo]
module = "mygame.echo:Echo"
stype = 16
port = 6090
admin_port = 9090

[services.echo.settings]
greeting = "hi"
limits = {rooms = 3, names = ["a", "b"]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netbus.toml"
    path.write_text(text)
    return path


def test_a_service_table_gives_the_gateway_its_route(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ECHO))
    echo = settings.services["echo"]
    assert echo.settings == {"greeting": "hi", "limits": {"rooms": 3, "names": ["a", "b"]}}
    routes = settings.gateway.services
    assert routes["echo"] == ServiceRoute(stype=16, addresses=["127.0.0.1:6090"])
    assert set(routes) == {"talkroom", "auth", "echo"}  # the built-in routes stay


def test_instances_policy_public_and_wildcard_hosts(tmp_path: Path) -> None:
    text = ECHO.replace(
        "port = 6090", 'port = 6090\ninstances = 3\npolicy = "primary"\npublic = true\nhost = "::"'
    )
    settings = load_settings(write(tmp_path, text))
    route = settings.gateway.services["echo"]
    assert route.addresses == ["[::1]:6090", "[::1]:6091", "[::1]:6092"]
    assert route.policy == "primary" and route.public
    slots = service_slots(settings)
    assert [(s.role, s.instance, s.port, s.admin_port) for s in slots] == [
        ("echo.1", 1, 6090, 9090),
        ("echo.2", 2, 6091, 9091),
        ("echo.3", 3, 6092, 9092),
    ]


def test_an_explicit_gateway_route_overrides_the_derived_one(tmp_path: Path) -> None:
    text = ECHO + '\n[gateway.services.echo]\nstype = 16\naddresses = ["10.0.0.9:7000"]\n'
    settings = load_settings(write(tmp_path, text))
    assert settings.gateway.services == {
        "echo": ServiceRoute(stype=16, addresses=["10.0.0.9:7000"])
    }  # explicit routes replace the defaults, as before


def test_environment_overrides_reach_inside_a_service_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETBUS_SERVICES__ECHO__PORT", "7100")
    monkeypatch.setenv("NETBUS_SERVICES__ECHO__SETTINGS__GREETING", "yo")
    settings = load_settings(write(tmp_path, ECHO))
    assert settings.services["echo"].port == 7100
    assert settings.services["echo"].settings["greeting"] == "yo"
    assert settings.gateway.services["echo"].addresses == ["127.0.0.1:7100"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ECHO.replace("port = 6090", "prot = 6090"), "services.echo.prot: Extra inputs"),
        (ECHO.replace('"mygame.echo:Echo"', '"mygame.echo"'), "not an import path"),
        (ECHO.replace("stype = 16", "stype = 1"), "share stype 1"),
        (ECHO.replace("services.echo", "services.talkroom"), "taken by a built-in"),
        (ECHO.replace("services.echo", "services.Echo"), "service name 'Echo'"),
        (ECHO.replace("port = 6090", "port = 65535\ninstances = 2"), "do not fit"),
        (
            ECHO + '\n[gateway.services.echo]\nstype = 17\naddresses = ["h:1"]\n',
            "services.echo.stype is 16 but gateway.services.echo.stype is 17",
        ),
    ],
)
def test_mistakes_outside_settings_are_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_settings(write(tmp_path, text))
    assert message in str(caught.value)


def test_a_service_has_an_admin_address(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ECHO))
    assert admin_addresses(settings)["echo"] == ("127.0.0.1", 9090)
    assert admin_targets(settings)["echo"] == "http://127.0.0.1:9090"
    app = build_admin("echo", _Reporter(), settings)  # found by role name
    assert (app.host, app.requested_port) == ("127.0.0.1", 9090)


class _Reporter:
    def __init__(self) -> None:
        from netbus.metrics import Metrics

        self.metrics = Metrics("echo")

    def health_facts(self) -> dict[str, object]:
        return {}
