"""``netbus bench``: listed without importing the load tool, loaded from its entry point."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from netbus.cli import main
from netbus.cli_plugins import Plugin, PluginCommand


def test_help_lists_bench_without_loading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: PluginCommand) -> click.Command:
        raise AssertionError("netbus --help loaded a plugin")

    monkeypatch.setattr(PluginCommand, "load", refuse)
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "bench     Load tests and benchmarks" in result.output


def test_bench_is_loaded_from_its_entry_point() -> None:
    result = CliRunner().invoke(main, ["bench", "relay", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main bench relay [OPTIONS]" in result.output
    assert "--rounds" in result.output


def test_bench_usage_errors_name_the_subcommand() -> None:
    result = CliRunner().invoke(main, ["bench", "relay", "--rounds", "x"])
    assert result.exit_code == 2
    assert "Usage: main bench relay" in result.output
    assert "'x' is not a valid integer" in result.output


def test_a_missing_distribution_says_how_to_install_it() -> None:
    group = click.Group("netbus")
    group.add_command(PluginCommand(Plugin("nosuch", "netbus-nosuch", "Help.", "with pip")))
    result = CliRunner().invoke(group, ["nosuch", "--flag"])
    assert result.exit_code == 1
    assert "provided by the netbus-nosuch distribution, which is not installed" in result.output
    assert "install it with pip" in result.output
