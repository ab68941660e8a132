"""The gateway's per-IP GUEST_LOGIN limit, over real sockets with a real center."""

from __future__ import annotations

from pathlib import Path

from netbus.client import Client
from netbus.client.guest import new_guest_key
from netbus.config import LimitsConfig, ListenerConfig, ServiceRoute, load_settings
from netbus.gateway import build_gateway
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.center.app import CenterServer


async def test_login_flood_from_one_ip_is_rate_limited(tmp_path: Path) -> None:
    base = load_settings()
    center_cfg = base.center.model_copy(
        update={
            "port": 0,
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/t.db",
            "pepper_file": str(tmp_path / "pepper"),
        }
    )
    center = CenterServer(base.model_copy(update={"center": center_cfg}))
    await center.start()
    limits = LimitsConfig(login_rate=0.001, login_burst=3, login_exempt_loopback=False)
    gateway_cfg = base.gateway.model_copy(
        update={
            "listeners": [ListenerConfig(kind="tcp", port=0)],
            "services": {"auth": ServiceRoute(stype=2, addresses=[f"127.0.0.1:{center.port}"])},
            "limits": limits,
        }
    )
    gateway = build_gateway(base.model_copy(update={"gateway": gateway_cfg}))
    await gateway.start()
    await gateway.wait_services_up()
    client = await Client.connect(f"tcp://127.0.0.1:{gateway.ports[0]}")
    try:
        for _ in range(3):  # the burst
            reply = await client.guest_login(new_guest_key())
            assert reply["status"] == 1
        client.send(Stype.Auth, 1, new_guest_key())
        push = await client.next_push(Stype.Gateway, GatewayCmd.RATE_LIMITED)
        assert push.body == {"dropped": 1}
        await client.heartbeat()  # the connection itself is fine
        sample = gateway.metrics.registry.get_sample_value(
            "netbus_logins_total", {"result": "rate_limited"}
        )
        assert sample == 1
    finally:
        await client.close()
        await gateway.close()
        await center.close()
