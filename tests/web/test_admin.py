"""netbus/admin.py: each role's /metrics and /healthz over real HTTP, and metrics under traffic."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from netbus.admin import AdminServer, admin_addresses, admin_targets, build_admin
from netbus.client import Client
from netbus.config import load_settings
from netbus.metrics import Metrics
from netbus.protocol.header import ProtoType
from netbus.roles.talkroom import TalkroomService
from netbus.service.server import ServiceServer
from netbus.testing import FakeClock

from .conftest import Cluster, sample

ROLES = ("gateway", "center", "talkroom")


async def test_metrics_endpoint_of_every_role(cluster: Cluster) -> None:
    for role in ROLES:
        status, ctype, body = await cluster.get(cluster.admin_url(role) + "/metrics")
        assert status == 200, role
        assert ctype == CONTENT_TYPE_LATEST
        text = body.decode()
        for family in (
            "netbus_connections",
            "netbus_packets",
            "netbus_bytes",
            "netbus_protocol_errors",
            "netbus_logins",
            "netbus_service_link_up",
            "netbus_service_link_reconnects",
            "netbus_handler_seconds",
        ):
            assert re.search(rf"^# TYPE {family}(_total)? ", text, re.M), (role, family)


async def test_gateway_healthz(cluster: Cluster) -> None:
    status, doc = await cluster.get_json(cluster.admin_url("gateway") + "/healthz")
    assert status == 200
    assert doc["role"] == "gateway"
    assert doc["status"] == "ok"
    assert doc["uptime"] >= 0
    assert doc["id"] == "gw1"
    assert doc["ports"] == cluster.gateway.ports
    assert doc["services"] == {
        "talkroom": {f"talkroom@127.0.0.1:{cluster.talkroom.port}": "up"},
        "auth": {f"auth@127.0.0.1:{cluster.center.port}": "up"},
    }
    assert doc["connections"] == 0
    assert doc["logged_in"] == 0
    text = await cluster.metrics("gateway")
    link = f"talkroom@127.0.0.1:{cluster.talkroom.port}"
    assert sample(text, "netbus_service_link_up", service=link) == 1


@pytest.mark.parametrize("role", ["center", "talkroom"])
async def test_service_healthz(cluster: Cluster, role: str) -> None:
    status, doc = await cluster.get_json(cluster.admin_url(role) + "/healthz")
    assert status == 200
    assert doc["role"] == role
    assert doc["status"] == "ok"
    assert doc["gateway_links"] == 1
    assert doc["sessions"] == 0
    assert doc["pending_handlers"] == 0
    assert doc["services"] == ["auth" if role == "center" else "talkroom"]


async def test_metrics_and_health_follow_traffic(cluster: Cluster) -> None:
    before = {role: await cluster.metrics(role) for role in ROLES}
    client = await Client.connect(cluster.tcp_url)
    try:
        reply = await client.guest_login(secrets.token_urlsafe(24))
        assert reply["status"] == 1
        assert await client.enter("ada", 1) == 1
        await client.send_msg("hello metrics")
        _, doc = await cluster.get_json(cluster.admin_url("gateway") + "/healthz")
        assert doc["connections"] == 1
        assert doc["logged_in"] == 1
        session = cluster.gateway.sessions.by_uid(client.uid)
        assert session is not None
    finally:
        await client.close()
    await session.link.wait_closed()  # the gateway has seen the close and counted it
    after = {role: await cluster.metrics(role) for role in ROLES}

    def delta(role: str, name: str, **labels: str) -> float:
        return sample(after[role], name, **labels) - sample(before[role], name, **labels)

    gw_login_in = {"direction": "in", "stype": "2", "ctype": "1"}
    assert delta("gateway", "netbus_logins_total", result="ok") == 1
    assert delta("gateway", "netbus_packets_total", **gw_login_in) == 1
    assert delta("gateway", "netbus_packets_total", direction="out", stype="2", ctype="1") == 1
    assert delta("gateway", "netbus_packets_total", direction="in", stype="1", ctype="5") == 1
    assert delta("gateway", "netbus_bytes_total", **gw_login_in) > 10
    assert delta("gateway", "netbus_connections_accepted_total", kind="tcp") == 1
    assert sample(after["gateway"], "netbus_connections", kind="tcp") == 0
    # the services count what reaches them and time their handlers, async ones included
    assert delta("center", "netbus_packets_total", direction="in", stype="2", ctype="1") == 1
    assert delta("center", "netbus_handler_seconds_count", stype="2") == 1
    assert delta("talkroom", "netbus_packets_total", direction="in", stype="1", ctype="5") == 1
    assert delta("talkroom", "netbus_handler_seconds_count", stype="1") >= 2  # Enter, SendMsg


async def test_protocol_errors_counted_by_kind(cluster: Cluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.gateway.ports[0])
    writer.write(b"\x05\x00garbage")  # a u16 length below the 10-byte header
    await writer.drain()
    await reader.read()  # the gateway drops the connection
    writer.close()
    text = await cluster.metrics("gateway")
    errors = [
        s
        for s in _samples(text, "netbus_protocol_errors_total")
        if s.value >= 1 and s.labels.get("kind")
    ]
    assert errors, text


async def test_ws_client_counted(cluster: Cluster) -> None:
    client = await Client.connect(cluster.ws_url, proto_type=ProtoType.JSON)
    try:
        await client.heartbeat()
        text = await cluster.metrics("gateway")
        assert sample(text, "netbus_connections", kind="ws") == 1
        assert sample(text, "netbus_packets_total", direction="in", stype="0", ctype="1") == 1
    finally:
        await client.close()


async def test_link_down_shows_in_gateway_health_and_metrics(cluster: Cluster) -> None:
    await cluster.stop("talkroom")
    link = f"talkroom@127.0.0.1:{cluster.talkroom.port}"
    async with asyncio.timeout(5):
        while True:
            _, doc = await cluster.get_json(cluster.admin_url("gateway") + "/healthz")
            if doc["services"]["talkroom"][link] == "down":
                break
            await asyncio.sleep(0.02)
    assert doc["status"] == "ok"  # the gateway itself is alive
    assert doc["services"]["auth"] == {f"auth@127.0.0.1:{cluster.center.port}": "up"}
    text = await cluster.metrics("gateway")
    assert sample(text, "netbus_service_link_up", service=link) == 0


async def test_admin_port_in_use_raises() -> None:
    async with AdminServer("x", Metrics("x")) as first:
        second = AdminServer("y", Metrics("y"), port=first.port)
        with pytest.raises(OSError):
            await second.start()
        await second.close()


def test_uptime_reads_the_injected_clock() -> None:
    clock = FakeClock(100.0)
    admin = AdminServer("x", Metrics("x"), clock=clock)
    clock.advance(12.25)
    assert admin.health()[1]["uptime"] == 12.25


async def test_failing_facts_answer_500() -> None:
    def facts() -> dict[str, object]:
        raise RuntimeError("boom")

    admin = AdminServer("x", Metrics("x"), facts=facts)
    status, doc = admin.health()
    assert status == 500
    assert doc["status"] == "error"


def test_admin_targets_from_config() -> None:
    settings = load_settings()
    assert admin_targets(settings) == {
        "gateway": "http://127.0.0.1:9080",
        "center": "http://127.0.0.1:9086",
        "talkroom": "http://127.0.0.1:9084",
    }
    wildcard = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"admin_host": "0.0.0.0"})}
    )
    assert admin_targets(wildcard)["gateway"] == "http://127.0.0.1:9080"
    explicit = load_settings(web={"health_targets": {"gw2": "http://10.0.0.2:9080/"}})
    assert admin_targets(explicit) == {"gw2": "http://10.0.0.2:9080"}


async def test_any_server_can_have_an_admin_app() -> None:
    """No switch on role names: a server reports its facts, its address comes from a map."""
    settings = load_settings()
    assert admin_addresses(settings) == {
        "gateway": ("127.0.0.1", 9080),
        "center": ("127.0.0.1", 9086),
        "talkroom": ("127.0.0.1", 9084),
    }
    server = ServiceServer([TalkroomService()], name="custom")
    with pytest.raises(ValueError, match="custom"):
        build_admin("custom", server, settings)
    async with server, build_admin("custom", server, settings, address=("127.0.0.1", 0)) as app:
        status, doc = app.health()
        assert status == 200 and doc["role"] == "custom"
        assert doc["port"] == server.port and doc["services"] == ["talkroom"]
        assert doc["gateway_links"] == 0 and app.port > 0


def _samples(text: str, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
