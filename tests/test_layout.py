"""netbus/layout.py: which gateway `netbus chat` picks, the chat command `netbus up` prints,
the health targets of a cluster with several gateways, and the processes `netbus up` starts."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from netbus.config import ListenerConfig, load_settings
from netbus.errors import ConfigError
from netbus.layout import (
    chat_command,
    cluster_health_targets,
    gateway_client_url,
    gateway_layout,
    launch_plan,
)


def _listeners(*items: ListenerConfig) -> dict[str, object]:
    return {"gateway": {"listeners": [item.model_dump() for item in items]}}


def test_chat_url_from_config() -> None:
    assert gateway_client_url(load_settings()) == "tcp://127.0.0.1:6080"
    ws_first = _listeners(
        ListenerConfig(kind="ws", host="0.0.0.0", port=7001),
        ListenerConfig(kind="tcp", host="0.0.0.0", port=7000),
    )
    assert gateway_client_url(load_settings(**ws_first)) == "tcp://127.0.0.1:7000"
    ws_only = _listeners(ListenerConfig(kind="ws", host="::", port=7001, is_encrypt=True))
    assert gateway_client_url(load_settings(**ws_only)) == "wss://[::1]:7001/ws"
    tls = _listeners(ListenerConfig(kind="tcp", host="play.example", port=7000, is_encrypt=True))
    assert gateway_client_url(load_settings(**tls)) == "tls://play.example:7000"
    with pytest.raises(ConfigError, match="--url"):
        gateway_client_url(load_settings(**_listeners(ListenerConfig(port=0))))


def test_up_banner_chat_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(Path("netbus/__main__.py").resolve())])
    config = tmp_path / "my cluster.toml"
    config.write_text('[[gateway.listeners]]\nkind = "tcp"\nport = 7100\n')
    settings = load_settings(config)
    words = shlex.split(chat_command(settings, list(settings.gateway.listeners), str(config)))
    assert words == [sys.executable, "-m", "netbus", "chat", "--config", str(config)]
    # gw2 of `--gateways 2` is not what the config alone leads to: --url says where it is
    gw2 = gateway_layout(settings, 2)[1]
    words = shlex.split(chat_command(settings, gw2.listeners, str(config)))
    assert words[-2:] == ["--url", "tcp://127.0.0.1:7102"]
    assert shlex.split(chat_command(load_settings(), [ListenerConfig()], None))[-1] == "chat"


def test_health_targets_list_every_gateway() -> None:
    settings = load_settings()
    targets = cluster_health_targets(settings, gateway_layout(settings, 3))
    assert targets == {
        "center": "http://127.0.0.1:9086",
        "talkroom": "http://127.0.0.1:9084",
        "gw1": "http://127.0.0.1:9080",
        "gw2": "http://127.0.0.1:9082",
        "gw3": "http://127.0.0.1:9088",
    }


SERVICES = {
    "services": {
        "echo": {"module": "m:Echo", "stype": 16, "port": 7090, "admin_port": 7190},
        "chat": {"module": "m:Chat", "stype": 17, "port": 7095, "instances": 2},
    }
}
UP = ["python", "-m", "netbus"]
OPTIONS = ["--config", "c.toml", "--loop", "auto"]
ROLES = ["center", "talkroom", "gateway", "web"]


def test_up_starts_services_before_the_gateway_and_keeps_the_builtin_argv() -> None:
    settings = load_settings(**SERVICES)
    plan = launch_plan(
        settings,
        gateway_layout(settings, 1),
        roles=ROLES,
        command=UP,
        options=OPTIONS,
        env={"A": "1"},
        web_env={"W": "1"},
    )
    serve = [*UP, "serve", "--service"]
    assert [(launch.name, launch.argv) for launch in plan] == [
        ("center", [*UP, "center", *OPTIONS]),
        ("talkroom", [*UP, "talkroom", *OPTIONS]),
        ("echo", [*serve, "echo", "--instance", "1", *OPTIONS]),
        ("chat.1", [*serve, "chat", "--instance", "1", *OPTIONS]),
        ("chat.2", [*serve, "chat", "--instance", "2", *OPTIONS]),
        ("gateway", [*UP, "gateway", *OPTIONS]),
        ("web", [*UP, "web", *OPTIONS]),
    ]
    assert [launch.env for launch in plan] == [{"A": "1"}] * 6 + [{"W": "1"}]


def test_several_gateways_skip_the_ports_of_services() -> None:
    settings = load_settings(
        **SERVICES, gateway={"listeners": [{"port": 7086}, {"port": 7087}], "admin_port": 7180}
    )
    slots = gateway_layout(settings, 3)
    # 7090/7091 (echo), 7095/7096 (chat), admin 7190 (echo) are skipped
    assert [[lst.port for lst in slot.listeners] for slot in slots] == [
        [7086, 7087],
        [7088, 7089],
        [7092, 7093],
    ]
    plan = launch_plan(
        settings, slots, roles=ROLES, command=UP, options=[], env={}, web_env={}
    )
    gateways = [launch for launch in plan if launch.argv[-1] == "gateway"]
    assert [g.name for g in gateways] == ["gw1", "gw2", "gw3"]
    assert gateways[1].env["NETBUS_GATEWAY__ID"] == "gw2"
