"""`netbus <role>` processes serve their admin app and announce ``admin_port``; `netbus web` runs.

Each role is a real child process configured through ``NETBUS_`` environment variables with
port 0 everywhere; ports are read from its ``NETBUS-READY`` line, as `netbus up` reads them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from netbus.supervisor import READY_PREFIX

ROOT = Path(__file__).resolve().parents[2]


class Role:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        NETBUS_CENTER__PORT="0",
        NETBUS_CENTER__ADMIN_PORT="0",
        NETBUS_CENTER__DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/netbus.db",
        NETBUS_CENTER__PEPPER_FILE=str(tmp_path / "pepper"),
        NETBUS_CLUSTER__SECRET_FILE=str(tmp_path / "cluster_secret"),
        NETBUS_TALKROOM__PORT="0",
        NETBUS_TALKROOM__ADMIN_PORT="0",
        NETBUS_GATEWAY__ADMIN_PORT="0",
        NETBUS_WEB__ADMIN_PORT="0",
        NETBUS_GATEWAY__LISTENERS='[{"kind": "tcp", "port": 0}, {"kind": "ws", "port": 0}]',
        NETBUS_LOG__LEVEL="WARNING",
    )
    env.update(extra)
    return env


@contextmanager
def run_role(name: str, env: dict[str, str], *args: str) -> Iterator[Role]:
    """Start ``netbus <name>``, wait for its NETBUS-READY line, SIGTERM it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "netbus", name, "--loop", "asyncio", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=30)
            assert line is not None, f"netbus {name} exited with {proc.wait()}"
            if line.startswith(f"{READY_PREFIX} {name} "):
                info = json.loads(line.split(" ", 2)[2])
                break
        yield Role(proc, info)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, f"netbus {name} exited with {code}"


def get(url: str) -> tuple[int, bytes]:
    return get_with_headers(url)[:2]


def get_with_headers(url: str) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


@pytest.mark.process
def test_roles_serve_admin_and_web_aggregates(tmp_path: Path) -> None:
    """Every role serves its admin app; `netbus web` aggregates them on its admin port, and
    its public port (issue 10 item 19) serves no /metrics, a /healthz that says only ok or
    degraded, and the security headers on every response."""
    env = _env(tmp_path)
    with run_role("center", env) as center, run_role("talkroom", env) as talkroom:
        services = {
            "talkroom": {"stype": 1, "addresses": [f"127.0.0.1:{talkroom.info['port']}"]},
            "auth": {"stype": 2, "addresses": [f"127.0.0.1:{center.info['port']}"]},
        }
        gw_env = {**env, "NETBUS_GATEWAY__SERVICES": json.dumps(services)}
        with run_role("gateway", gw_env) as gateway:
            admin = {
                "center": center.info["admin_port"],
                "talkroom": talkroom.info["admin_port"],
                "gateway": gateway.info["admin_port"],
            }
            for role, port in admin.items():
                assert port > 0, role
                status, body = get(f"http://127.0.0.1:{port}/healthz")
                assert status == 200
                assert json.loads(body)["role"] == role
                status, body = get(f"http://127.0.0.1:{port}/metrics")
                assert status == 200
                assert b"netbus_packets_total" in body
            targets = {role: f"http://127.0.0.1:{port}" for role, port in admin.items()}
            web_env = {**env, "NETBUS_WEB__HEALTH_TARGETS": json.dumps(targets)}
            with run_role("web", web_env, "--port", "0") as web:
                public = f"http://127.0.0.1:{web.info['port']}"
                assert web.info["admin_port"] not in (0, web.info["port"])
                private = f"http://127.0.0.1:{web.info['admin_port']}"
                status, body = get(private + "/healthz")
                assert status == 200, body
                doc = json.loads(body)
                assert {r: doc["roles"][r]["status"] for r in admin} == dict.fromkeys(admin, "ok")
                status, body = get(private + "/metrics")
                assert (status, b"netbus_cluster_role_up" in body) == (200, True)
                assert get(public + "/healthz") == (200, b'{"status":"ok"}')
                for path in ("/", "/config.js", "/healthz", "/metrics", "/nope"):
                    status, body, headers = get_with_headers(public + path)
                    assert status == (404 if path in ("/metrics", "/nope") else 200), path
                    assert b"netbus_" not in body, path
                    assert headers["X-Frame-Options"] == "DENY", path
                    assert headers["X-Content-Type-Options"] == "nosniff", path
                    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
                status, body = get(public + "/config.js")
                assert (status, body) == (200, b'window.NETBUS_CONFIG = {"gatewayUrl":null};\n')
                gateway.proc.send_signal(signal.SIGTERM)
                gateway.proc.wait(timeout=15)
                status, body = get(private + "/healthz")
                assert status == 503
                assert json.loads(body)["roles"]["gateway"]["status"] == "down"
                assert get(public + "/healthz") == (503, b'{"status":"degraded"}')
