"""netbus/serve.py: what ``netbus serve`` runs (a target, or a ``[services.<name>]`` table),
and the command's errors. Running a role process end to end is tests/service/
test_serve_process.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from netbus.cli import main
from netbus.config import Settings, load_settings
from netbus.errors import ConfigError
from netbus.serve import serve_target, service_server
from tests.service import targets

T = "tests.service.targets"


def table(tmp_path: Path, body: str, name: str = "echo") -> Settings:
    path = tmp_path / "netbus.toml"
    path.write_text(f"[services.{name}]\n{body}")
    return load_settings(path)


def test_a_target_runs_on_free_ports_under_its_services_names() -> None:
    spec = serve_target(Settings(), target=f"{T}:BOTH")
    assert spec.role == "echo+chat"
    assert (spec.host, spec.port, spec.admin_address) == ("127.0.0.1", 0, ("127.0.0.1", 0))
    spec = serve_target(
        Settings(), target=f"{T}:ECHO", name="e", host="0.0.0.0", port=7000, admin_port=7001
    )
    assert (spec.role, spec.host, spec.port, spec.admin_address) == (
        "e",
        "0.0.0.0",
        7000,
        ("127.0.0.1", 7001),
    )


def test_a_table_gives_module_settings_ports_and_instance(tmp_path: Path) -> None:
    settings = table(
        tmp_path,
        f'module = "{T}:Echo"\nstype = 16\nport = 6090\ninstances = 2\nadmin_port = 9090\n'
        '[services.echo.settings]\nprefix = "cfg"\n',
    )
    spec = serve_target(settings, service="echo", instance=2)
    (echo,) = spec.services
    assert isinstance(echo, targets.Echo) and echo.prefix == "cfg"
    assert (spec.role, spec.port, spec.admin_address) == ("echo.2", 6091, ("127.0.0.1", 9091))
    assert serve_target(settings, service="echo", port=0).port == 0  # flags override
    with pytest.raises(ConfigError, match="has 2 instance"):
        serve_target(settings, service="echo", instance=3)
    with pytest.raises(ConfigError, match=r"no \[services.chat\] in the configuration"):
        serve_target(settings, service="chat")


def test_the_table_stype_fills_in_or_must_agree(tmp_path: Path) -> None:
    settings = table(tmp_path, f'module = "{T}:Unset"\nstype = 40\nport = 6090\n', "unset")
    (unset,) = serve_target(settings, service="unset").services
    assert unset.stype == 40
    settings = table(tmp_path, f'module = "{T}:Echo"\nstype = 40\nport = 6090\n')
    with pytest.raises(ConfigError, match=r"stype is 40 but tests\.service\.targets:Echo dec"):
        serve_target(settings, service="echo")
    settings = table(tmp_path, f'module = "{T}:make_two"\nstype = 16\nport = 6090\n')
    with pytest.raises(ConfigError, match="gave 2 services"):
        serve_target(settings, service="echo")


def test_target_and_service_are_one_or_the_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give a target"):
        serve_target(Settings())
    settings = table(tmp_path, f'module = "{T}:Echo"\nstype = 16\nport = 6090\n')
    with pytest.raises(ConfigError, match="give a target"):
        serve_target(settings, target=f"{T}:Echo", service="echo")


async def test_service_server_serves_the_target() -> None:
    spec = serve_target(Settings(), target=f"{T}:make_two")
    server = service_server(spec, Settings())
    assert server.name == "echo+chat" and server.metrics.role == "echo+chat"
    async with server:
        assert server.port > 0
        assert server.health_facts()["services"] == ["echo", "chat"]


def test_service_server_refuses_two_services_of_one_stype() -> None:
    spec = serve_target(Settings(), target=f"{T}:BOTH")
    spec.services.append(targets.Echo())
    with pytest.raises(ConfigError, match="stype 16 is already served"):
        service_server(spec, Settings())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a target (package.module:attr) or --service NAME"),
        (["nope_pkg:X"], "no module named 'nope_pkg'"),
        ([f"{T}:NotAService"], "not a Service subclass"),
        (["--service", "echo"], "no [services.echo] in the configuration (it has: none)"),
    ],
)
def test_netbus_serve_fails_clearly(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no netbus.toml here
    monkeypatch.setattr(sys, "path", [*sys.path])  # `netbus serve` adds the cwd to it
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 1
    assert message in result.output


def test_netbus_up_refuses_a_missing_service_package_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path])
    (tmp_path / "netbus.toml").write_text(
        '[services.echo]\nmodule = "nosuch_pkg.echo:Echo"\nstype = 16\nport = 6090\n'
    )
    result = CliRunner().invoke(main, ["up"])  # ./netbus.toml is read without --config
    assert result.exit_code == 1
    assert "services.echo: no module named 'nosuch_pkg'" in result.output
    assert "cluster ready" not in result.output
