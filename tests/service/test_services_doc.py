"""docs/services.md and README "Writing a service" run as written.

The Python blocks of docs/services.md are one program: executed in order in one namespace,
then every ``try_*`` coroutine it defines is awaited (real servers on free ports, real
clients, an in-process `TestCluster`). Its TOML blocks load as netbus configuration, and
each ``[services.<name>]`` in them builds the class the page defined with the table's
settings. Its ``netbus`` command lines are parsed by the real command (unknown options
fail), and §10's flow is the one a generated project's README gives (run for real by
test_serve_process.py). The README's service is executed and then served, and its TOML
loads and routes to it.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest

from netbus.cli import main
from netbus.client import Client
from netbus.config import load_settings
from netbus.errors import RequestFailed
from netbus.protocol import ProtoType, RequestStatus
from netbus.scaffold import new_project
from netbus.service import ServiceServer, client_codecs
from netbus.service.loader import build_services
from netbus.transport.listener import ListenerSpec

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "services.md").read_text()
README = (ROOT / "README.md").read_text()
README_SERVICE = README[README.index("## Writing a service") : README.index("## Writing a client")]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def python_blocks(text: str) -> list[str]:
    return blocks(text, "python")


def doc_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "services_doc"}
    for block in python_blocks(DOC):
        exec(compile(block, "docs/services.md", "exec"), namespace)
    return namespace


async def test_services_md_runs_as_written() -> None:
    assert len(python_blocks(DOC)) >= 10
    namespace = doc_namespace()
    tries = [f for name, f in namespace.items() if name.startswith("try_")]
    assert len(tries) >= 4
    for attempt in tries:
        assert inspect.iscoroutinefunction(attempt)
        await attempt()


def test_services_md_toml_is_configuration_that_builds_its_services(tmp_path: Path) -> None:
    namespace = doc_namespace()
    tomls = blocks(DOC, "toml")
    assert tomls
    for index, text in enumerate(tomls):
        path = tmp_path / f"block{index}.toml"
        path.write_text(text)
        settings = load_settings(path)
        for name, cfg in settings.services.items():
            cls = namespace[cfg.module.rpartition(":")[2]]  # the class the page defined
            (service,) = build_services(cls, settings=cfg.settings, origin=name)
            assert service.stype == cfg.stype
            assert settings.gateway.services[name].stype == cfg.stype
            for key, value in cfg.settings.items():
                assert getattr(service, key) == value


def netbus_commands(text: str) -> list[list[str]]:
    """Each ``netbus ...`` (or ``python -m netbus ...``) command of the bash blocks."""
    found = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words[:3] == ["python", "-m", "netbus"]:
                    words = ["netbus", *words[3:]]
                if words[:1] == ["netbus"]:
                    found.append(words[1:])
    return found


def parse(words: list[str]) -> None:
    """Parse ``netbus <words>`` as the command would, without running it.

    Raises:
        click.UsageError: an unknown command, option or argument.
    """
    command = main.get_command(click.Context(main), words[0])
    assert command is not None, f"no command netbus {words[0]}"
    command.make_context(words[0], words[1:])


@pytest.mark.parametrize("words", netbus_commands(DOC), ids=" ".join)
def test_services_md_commands_parse(words: list[str]) -> None:
    parse(words)


def test_services_md_new_project_flow_is_the_generated_readme(tmp_path: Path) -> None:
    (flow,) = [b for b in blocks(DOC, "bash") if "netbus new" in b]
    lines = [line.split("#")[0].strip() for line in flow.strip().splitlines()]
    assert lines[0] == "netbus new mygame && cd mygame"
    readme = (new_project("nbgame_docflow", tmp_path) / "README.md").read_text()
    (commands,) = blocks(readme, "bash")
    assert lines[1:] == [line.split("#")[0].strip() for line in commands.strip().splitlines()]


async def test_readme_service_runs_as_written(tmp_path: Path) -> None:
    block = python_blocks(README_SERVICE)[0]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), namespace)
    echo_cls = namespace["Echo"]
    (toml,) = blocks(README_SERVICE, "toml")
    (tmp_path / "netbus.toml").write_text(toml)
    settings = load_settings(tmp_path / "netbus.toml")
    assert settings.gateway.services["echo"].stype == echo_cls.stype
    assert settings.services["echo"].module.endswith(":Echo")
    server = ServiceServer([echo_cls()], client_listeners=[ListenerSpec("tcp")])
    async with server:
        url = f"tcp://127.0.0.1:{server.client_ports[0]}"
        client = await Client.connect(url, codecs=client_codecs(echo_cls))
        try:
            body = {"seq": 7, "text": "hi 👋"}
            assert await client.request(16, 1, body) == body
            assert await client.request(16, 1, body, proto_type=ProtoType.BUF) == body
            try:
                await client.request(16, 2, None)
            except RequestFailed as failed:
                assert failed.status == RequestStatus.UNKNOWN_COMMAND
            else:
                raise AssertionError("ctype 2 is not declared")
        finally:
            await client.close()


def test_readme_commands_parse() -> None:
    inline = re.findall(r"`(netbus (?:serve|new) [^`]*)`", README_SERVICE)
    assert inline
    for text in inline:
        parse(shlex.split(text)[1:])


def test_a_wrong_command_line_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse(["serve", "m:X", "--prot", "1"])
    with pytest.raises(AssertionError):
        parse(["srve", "m:X"])
