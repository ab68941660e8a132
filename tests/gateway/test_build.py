"""netbus/gateway/build.py: a gateway from the typed configuration (built, not started)."""

from __future__ import annotations

from netbus.config import ListenerConfig, ServiceRoute, load_settings
from netbus.gateway import build_gateway
from netbus.gateway.logins import ClaimedLogins, LocalLogins
from netbus.gateway.routing import Policy
from netbus.registry import LocalHub, LocalRegistry, RedisRegistry
from netbus.testing import FakeClock


def test_listeners_routes_and_the_local_registry_come_from_the_config() -> None:
    settings = load_settings(
        gateway={
            "id": "gw7",
            "listeners": [ListenerConfig(kind="ws", port=0, max_per_ip=3, rate=50.0)],
            "services": {
                "rooms": ServiceRoute(stype=16, addresses=["10.0.0.1:7000", "10.0.0.2:7000"]),
                "auth": ServiceRoute(stype=2, addresses=["127.0.0.1:6086"], policy="primary"),
            },
        }
    )
    gateway = build_gateway(settings)
    assert gateway.id == "gw7"
    (spec,) = gateway.listener_specs
    assert spec.kind == "ws" and spec.port == 0
    assert spec.limits is not None and (spec.limits.max_per_ip, spec.limits.rate) == (3, 50.0)
    rooms = gateway.routes[16]
    assert [u.name for u in rooms.instances] == ["rooms@10.0.0.1:7000", "rooms@10.0.0.2:7000"]
    assert rooms.policy is Policy.HASH and gateway.routes[2].policy is Policy.PRIMARY
    assert rooms.live == ()  # nothing is linked before start
    assert isinstance(gateway.logins, LocalLogins)


def test_redis_url_selects_the_redis_registry_and_its_timeout() -> None:
    settings = load_settings(redis={"url": "redis://127.0.0.1:1/0", "timeout": 0.7})
    gateway = build_gateway(settings)
    assert isinstance(gateway.logins, ClaimedLogins)
    assert isinstance(gateway.logins.registry, RedisRegistry)
    assert gateway.logins.claim_timeout == 0.7


def test_an_injected_registry_and_clock_win() -> None:
    settings = load_settings(redis={"url": "redis://127.0.0.1:1/0"})
    clock = FakeClock(5.0)
    registry = LocalRegistry("gw1", hub=LocalHub())
    gateway = build_gateway(settings, registry=registry, clock=clock, claim_timeout=0.2)
    assert gateway.logins.registry is registry and isinstance(gateway.logins, LocalLogins)
    assert gateway.logins.clock is clock and gateway.logins.claim_timeout == 0.2
