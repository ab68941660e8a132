"""A real in-process cluster with admin HTTP apps and a web role, all on free loopback ports.

Center (SQLite file + pepper file in tmp_path), talkroom, gateway (TCP + WS listeners) and
the web role are built the way their ``netbus <role>`` commands build them, from
``load_settings()`` with every port set to 0. Each role also serves its admin app, as
``netbus <role>`` does. Nothing is mocked: tests speak HTTP and the game protocol over sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netbus.admin import AdminServer, build_admin
from netbus.config import ListenerConfig, ServiceRoute, Settings, load_settings
from netbus.gateway import Gateway, build_gateway
from netbus.roles.center.app import CenterServer
from netbus.roles.talkroom.app import build_talkroom
from netbus.roles.web.app import WebServer
from netbus.service.server import ServiceServer

__all__ = ["Cluster", "sample"]


def _with(settings: Settings, section: str, **update: Any) -> Settings:
    part = getattr(settings, section).model_copy(update=update)
    return settings.model_copy(update={section: part})


def base_settings(tmp_path: Path) -> Settings:
    """Defaults with port 0 everywhere and the center's files under ``tmp_path``."""
    s = load_settings()
    s = _with(
        s,
        "center",
        port=0,
        admin_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/netbus.db",
        pepper=None,
        pepper_file=str(tmp_path / "pepper"),
    )
    s = _with(s, "talkroom", port=0, admin_port=0)
    s = _with(
        s,
        "gateway",
        admin_port=0,
        listeners=[ListenerConfig(kind="tcp", port=0), ListenerConfig(kind="ws", port=0)],
    )
    return _with(s, "web", port=0, admin_port=0)


@dataclass
class Cluster:
    settings: Settings
    center: CenterServer
    talkroom: ServiceServer
    gateway: Gateway
    web: WebServer
    admins: dict[str, AdminServer]
    http: aiohttp.ClientSession
    stopped: set[str] = field(default_factory=set)

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.gateway.ports[0]}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway.ports[1]}/ws"

    def admin_url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.admins[role].port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    @property
    def web_admin_url(self) -> str:
        return f"http://127.0.0.1:{self.web.admin_port}"

    async def get(self, url: str) -> tuple[int, str, bytes]:
        """(status, content type header, body) of a GET."""
        async with self.http.get(url) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    async def get_json(self, url: str) -> tuple[int, Any]:
        async with self.http.get(url) as resp:
            return resp.status, await resp.json()

    async def metrics(self, role: str) -> str:
        status, _, body = await self.get(self.admin_url(role) + "/metrics")
        assert status == 200
        return body.decode()

    async def stop(self, role: str) -> None:
        """Stop one service role and its admin app (a crashed or stopped process)."""
        self.stopped.add(role)
        await self.admins[role].close()
        server = {"center": self.center, "talkroom": self.talkroom, "gateway": self.gateway}[role]
        await server.close()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` in a Prometheus text page (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = base_settings(tmp_path)
    center = CenterServer(settings)
    await center.start()
    talkroom = build_talkroom(settings)
    await talkroom.start()
    settings = _with(
        settings,
        "gateway",
        services={
            "talkroom": ServiceRoute(stype=1, addresses=[f"127.0.0.1:{talkroom.port}"]),
            "auth": ServiceRoute(stype=2, addresses=[f"127.0.0.1:{center.port}"]),
        },
    )
    gateway = build_gateway(settings)
    await gateway.start()
    await gateway.wait_services_up()
    admins = {
        "center": build_admin("center", center, settings),
        "talkroom": build_admin("talkroom", talkroom, settings),
        "gateway": build_admin("gateway", gateway, settings),
    }
    for admin in admins.values():
        await admin.start()
    targets = {name: f"http://127.0.0.1:{admin.port}" for name, admin in admins.items()}
    settings = _with(settings, "web", health_targets=targets)
    web = WebServer(settings)
    await web.start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    c = Cluster(settings, center, talkroom, gateway, web, admins, http)
    try:
        yield c
    finally:
        await http.close()
        await web.close()
        for admin in admins.values():
            await admin.close()
        for name, server in (("gateway", gateway), ("talkroom", talkroom), ("center", center)):
            if name not in c.stopped:
                await server.close()
