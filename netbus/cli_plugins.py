"""``netbus`` subcommands that other distributions provide, loaded only when they are run.

A distribution adds a click command to ``netbus`` under the ``netbus.commands`` entry-point
group (netbus-bench, in ``bench/`` of the repository: ``bench = "netbus_bench.cli:bench"``).
`PLUGINS` names the ones netbus knows of, so ``netbus --help`` lists them without importing
anything; running one loads its entry point, or says how to install it when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

__all__ = ["ENTRY_POINT_GROUP", "PLUGINS", "Plugin", "PluginCommand", "plugin_commands"]

ENTRY_POINT_GROUP = "netbus.commands"


@dataclass(frozen=True, slots=True)
class Plugin:
    """A subcommand another distribution provides."""

    name: str  #: the subcommand, and its entry point's name
    distribution: str
    help: str  #: shown by ``netbus --help`` before the command is loaded
    install: str  #: how to get the distribution, for the error when it is missing


PLUGINS = (
    Plugin(
        "bench",
        "netbus-bench",
        "Load tests and benchmarks (docs/benchmarks.md).",
        "from a netbus checkout: pip install -e '.[bench]'  (or: pip install -e ./bench)",
    ),
)


class PluginCommand(click.Command):
    """Stands in for a plugin's command: every argument is handed to it once it is loaded."""

    def __init__(self, plugin: Plugin) -> None:
        super().__init__(
            plugin.name,
            help=plugin.help,
            short_help=plugin.help,
            add_help_option=False,  # ``--help`` is the loaded command's
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )
        self.plugin = plugin

    def load(self) -> click.Command:
        """The plugin's command, from its entry point.

        Raises:
            click.ClickException: its distribution is not installed (with how to install it).
        """
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP, name=self.plugin.name):
            command = entry.load()
            if isinstance(command, click.Command):
                return command
        p = self.plugin
        raise click.ClickException(
            f"netbus {p.name} is provided by the {p.distribution} distribution, which is not "
            f"installed; install it {p.install}"
        )

    def invoke(self, ctx: click.Context) -> Any:
        command = self.load()
        with command.make_context(self.plugin.name, list(ctx.args), parent=ctx.parent) as sub:
            return command.invoke(sub)


def plugin_commands() -> list[click.Command]:
    """One stand-in command per known plugin, for the ``netbus`` group."""
    return [PluginCommand(p) for p in PLUGINS]
