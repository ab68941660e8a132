"""docs/services.md and README "Writing a service" run as written.

The Python blocks of docs/services.md are one program: executed in order in one namespace,
then every ``try_*`` coroutine it defines is awaited (real servers on free ports, real
clients). The README's service is executed and then served the same way.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from netbus.client import Client
from netbus.errors import RequestFailed
from netbus.protocol import ProtoType, RequestStatus
from netbus.service import ServiceServer, client_codecs
from netbus.transport.listener import ListenerSpec

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


async def test_services_md_runs_as_written() -> None:
    blocks = python_blocks((ROOT / "docs" / "services.md").read_text())
    assert len(blocks) >= 8
    namespace: dict[str, Any] = {"__name__": "services_doc"}
    for block in blocks:
        exec(compile(block, "docs/services.md", "exec"), namespace)
    tries = [f for name, f in namespace.items() if name.startswith("try_")]
    assert len(tries) >= 3
    for attempt in tries:
        assert inspect.iscoroutinefunction(attempt)
        await attempt()


async def test_readme_service_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a service") :]
    block = python_blocks(section)[0]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), namespace)
    echo_cls = namespace["Echo"]
    assert inspect.iscoroutinefunction(namespace["main"])
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
