"""Several gateway processes over one Redis: the harness of the scaling tests.

`ScaleCluster` writes one TOML config (free ports, a temp SQLite database, a pepper, a short
lease) and runs ``python -m netbus center|talkroom|gateway`` as subprocesses; each gateway
gets its id and its listeners through ``NETBUS_GATEWAY__*`` environment overrides, as
``netbus up --gateways N`` does. A role is ready when it prints ``NETBUS-READY <role> <json>``
(read by a thread, so a cluster can outlive one test's event loop); the gateways listen on
port 0 and report the ports they got in that line.

Every process is killed when its cluster stops, and at interpreter exit as a last resort.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.registry.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
READY = "NETBUS-READY"
START_TIMEOUT = 30.0

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class RoleProc:
    """One role process; a thread reads its stdout for the READY line."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        self.info: dict[str, Any] = {}
        self._ready = threading.Event()
        with self.log.open("ab") as err:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=child_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        _live.add(self.popen)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line.startswith(READY + " ") and not self._ready.is_set():
                self.info = json.loads(line.split(" ", 2)[2])
                self._ready.set()
        self.popen.stdout.close()
        self._ready.set()  # exited: wait_ready() reports it

    def wait_ready(self) -> None:
        if not self._ready.wait(START_TIMEOUT) or not self.info:
            self.kill()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.name} did not become ready:\n{tail}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        self.popen.wait(10)
        _live.discard(self.popen)
        self._thread.join(5)

    @property
    def port(self) -> int:
        """The TCP client port of a gateway, the service port of the other roles."""
        if "ports" in self.info:
            return int(self.info["ports"][0])
        return int(self.info["port"])

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


class ScaleCluster:
    """center + talkroom instances + gateways gw1..gwN, all sharing ``redis_url``.

    `start` and `kill` block (they wait for processes); async tests call them through
    ``asyncio.to_thread``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        prefix: str,
        loop: str = "auto",
        lease: float = 1.5,
        refresh_interval: float = 0.3,
        timeout: float = 1.0,
        talkrooms: int = 1,
    ) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.prefix = prefix
        self.loop = loop
        self.center_port = free_port()
        self.talkroom_ports = [free_port() for _ in range(talkrooms)]
        self.procs: dict[str, RoleProc] = {}
        self.config = workdir / "netbus.toml"
        addresses = ", ".join(f'"127.0.0.1:{p}"' for p in self.talkroom_ports)
        self.config.write_text(
            f"""
[gateway]
admin_port = 0
[gateway.limits]
login_exempt_loopback = true
[gateway.services.talkroom]
stype = 1
addresses = [{addresses}]
policy = "primary"
[gateway.services.auth]
stype = 2
addresses = ["127.0.0.1:{self.center_port}"]

[center]
port = {self.center_port}
admin_port = 0
database_url = "sqlite+aiosqlite:///{workdir}/netbus.db"
pepper = "scaling-test-pepper-0123456789"

[talkroom]
admin_port = 0

[redis]
url = "{redis_url}"
prefix = "{prefix}"
lease = {lease}
refresh_interval = {refresh_interval}
timeout = {timeout}

[log]
level = "WARNING"
"""
        )

    # --------------------------------------------------------------------- processes
    def _spawn(self, name: str, role: str, env: dict[str, str]) -> RoleProc:
        argv = [sys.executable, "-m", "netbus", role, "--config", str(self.config)]
        proc = RoleProc(name, [*argv, "--loop", self.loop], cwd=self.workdir, env=env)
        self.procs[name] = proc
        return proc

    def _gateway_env(self, gw_id: str) -> dict[str, str]:
        listeners = json.dumps([{"kind": "tcp", "port": 0}])
        return {"NETBUS_GATEWAY__ID": gw_id, "NETBUS_GATEWAY__LISTENERS": listeners}

    def start(self, gateways: int) -> None:
        """Services first (all at once), then the gateways (all at once)."""
        services = [self._spawn("center", "center", {})]
        for i, port in enumerate(self.talkroom_ports):
            env = {"NETBUS_TALKROOM__PORT": str(port)}
            services.append(self._spawn(f"talkroom{i + 1}", "talkroom", env))
        for proc in services:
            proc.wait_ready()
        started = [
            self._spawn(f"gw{i + 1}", "gateway", self._gateway_env(f"gw{i + 1}"))
            for i in range(gateways)
        ]
        for proc in started:
            proc.wait_ready()

    def gateway(self, gw_id: str) -> RoleProc:
        return self.procs[gw_id]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.procs.pop(name).kill(sig)

    def stop(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.procs))) as pool:
            list(pool.map(lambda p: p.kill(), list(self.procs.values())))
        self.procs.clear()

    async def akill(self, name: str, sig: int = signal.SIGKILL) -> None:
        await asyncio.to_thread(self.kill, name, sig)
