"""``netbus up --gateways N``: the port layout, the Redis check, and a real 2-gateway cluster."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from netbus.cli import main
from netbus.client import Client
from netbus.config import load_settings
from netbus.layout import gateway_layout
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from tests.e2e.cluster import live_pids_with_arg
from tests.registry.redis_server import REDIS_URL, delete_prefix, free_port, unique_prefix
from tests.scaling.cluster import child_env
from tests.scaling.conftest import _loop_name, _require_shared_redis

pytestmark = pytest.mark.timeout(60)


def test_layout_adds_two_per_gateway_and_skips_other_roles_ports() -> None:
    slots = gateway_layout(load_settings(), 4)
    assert [s.id for s in slots] == ["gw1", "gw2", "gw3", "gw4"]
    assert [[lst.port for lst in s.listeners] for s in slots] == [
        [6080, 6081],
        [6082, 6083],
        [6088, 6089],  # 6084/6085 and 6086/6087 would hit the talkroom and the center
        [6090, 6091],
    ]
    assert [s.admin_port for s in slots] == [9080, 9082, 9088, 9090]


def test_layout_env_overrides_load_into_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "netbus.toml"
    config.write_text('[gateway]\nauth_stype = 2\n[redis]\nurl = "redis://h:1/0"\n')
    slot = gateway_layout(load_settings(config), 2)[1]
    for name, value in slot.env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config)
    assert settings.gateway.id == "gw2"
    assert [(lst.kind, lst.port) for lst in settings.gateway.listeners] == [
        ("tcp", 6082),
        ("ws", 6083),
    ]
    assert settings.gateway.admin_port == 9082
    assert settings.redis.url == "redis://h:1/0"  # the rest of the file still applies


def test_up_refuses_to_start_when_redis_does_not_answer(tmp_path: Path) -> None:
    config = tmp_path / "netbus.toml"
    config.write_text(f'[redis]\nurl = "redis://:pw@127.0.0.1:{free_port()}/0"\n')
    result = CliRunner().invoke(main, ["up", "--gateways", "2", "--config", str(config)])
    assert result.exit_code == 1
    assert "does not answer" in result.output
    assert ":***@" in result.output and ":pw@" not in result.output


def _free_block(offsets: list[int]) -> int:
    """A base port such that base + each offset is free right now."""
    for _ in range(200):
        base = random.randrange(20000, 40000, 2)
        try:
            socks = []
            for off in offsets:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + off))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise AssertionError("no free port block")


def http_get(url: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def gateway_pid(up_pid: int, gateway_id: str) -> int:
    """The pid of the child gateway of ``netbus up`` that runs as ``gateway_id``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == up_pid and f"NETBUS_GATEWAY__ID={gateway_id}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no {gateway_id} child of {up_pid}")


@pytest.mark.process
async def test_up_runs_two_gateways_sharing_one_login_state(tmp_path: Path) -> None:
    _require_shared_redis()
    prefix = unique_prefix()
    # gateway ports base..base+3 (two gateways), admin base+10 and base+12, others around
    base = _free_block([0, 1, 2, 3, 10, 12, 20, 21, 22, 23, 24, 25])
    (tmp_path / "netbus.toml").write_text(
        f"""
[gateway]
admin_port = {base + 10}
listeners = [{{ kind = "tcp", port = {base} }}, {{ kind = "ws", port = {base + 1} }}]
[gateway.services.talkroom]
stype = 1
addresses = ["127.0.0.1:{base + 20}"]
policy = "primary"
[gateway.services.auth]
stype = 2
addresses = ["127.0.0.1:{base + 21}"]
[center]
port = {base + 21}
admin_port = {base + 22}
database_url = "sqlite+aiosqlite:///{tmp_path}/netbus.db"
pepper = "up-test-pepper-0123456789abcdef"
[talkroom]
port = {base + 20}
admin_port = {base + 23}
[web]
port = {base + 24}
admin_port = {base + 25}
[redis]
url = "{REDIS_URL}"
prefix = "{prefix}"
[log]
level = "WARNING"
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "netbus",
        "up",
        "--gateways",
        "2",
        "--config",
        str(tmp_path / "netbus.toml"),
        "--loop",
        _loop_name(),  # the cluster runs on the loop of the test's variant
        cwd=tmp_path,
        env=child_env({}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(40):
            async for raw in proc.stdout:
                output.append(raw.decode(errors="replace").rstrip())
                if output[-1].strip().startswith("chat "):
                    break
        banner = "\n".join(output)
        urls = dict(re.findall(r"^\s+(gw\d)\s+(tcp://\S+)$", banner, re.M))
        assert urls == {"gw1": f"tcp://127.0.0.1:{base}", "gw2": f"tcp://127.0.0.1:{base + 2}"}

        key = "up_" + os.urandom(12).hex()
        first = await Client.connect(urls["gw1"])
        assert (await first.guest_login(key))["status"] == 1
        second = await Client.connect(urls["gw2"])
        assert (await second.guest_login(key))["status"] == 1
        await first.next_push(Stype.Auth, AuthCmd.RELOGIN)
        await first.wait_closed()
        await second.close()

        # The web role checks every gateway (issue 10 item 15): gw2 frozen -> degraded.
        public = f"http://127.0.0.1:{base + 24}/healthz"
        private = f"http://127.0.0.1:{base + 25}/healthz"
        status, doc = await asyncio.to_thread(http_get, private)
        assert status == 200, doc
        roles = {name: role["status"] for name, role in doc["roles"].items()}
        assert roles == dict.fromkeys(["web", "center", "talkroom", "gw1", "gw2"], "ok")
        gw2 = gateway_pid(proc.pid, "gw2")
        os.kill(gw2, signal.SIGSTOP)
        try:
            status, doc = await asyncio.to_thread(http_get, private)
            assert status == 503, doc
            assert doc["roles"]["gw2"]["status"] == "down"
            assert doc["roles"]["gw1"]["status"] == "ok"
            assert await asyncio.to_thread(http_get, public) == (503, {"status": "degraded"})
        finally:
            os.kill(gw2, signal.SIGCONT)
        status, doc = await asyncio.to_thread(http_get, private)
        assert status == 200, doc

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.wait()
        for port in (base, base + 2):  # every gateway is gone with it
            with pytest.raises(OSError):
                await Client.connect(f"tcp://127.0.0.1:{port}", timeout=1)
    except BaseException:
        print("\n".join(output))
        raise
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        # roles that outlived `up` would hold its output pipe open (and their ports)
        for pid in live_pids_with_arg(str(tmp_path / "netbus.toml")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await proc.wait()
        await delete_prefix(REDIS_URL, prefix)
