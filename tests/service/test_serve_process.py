"""``netbus serve`` and a ``netbus new`` project as real processes (docs/services.md §9-10).

1. ``python -m netbus serve package.module:attr``: READY line, admin ``/healthz`` and
   ``/metrics``, and a drain on SIGHUP (exit 0).
2. The whole path of a new game: ``netbus new`` makes a project in a temp dir; it is
   installed into a fresh virtualenv that sees this checkout's netbus (and the test tools)
   through a ``.pth`` file, offline (``--no-index --no-build-isolation``); its own tests pass
   there; ``netbus up`` in its directory reads its ``netbus.toml`` and starts its service
   with the built-in roles (free ports through ``NETBUS_*`` overrides); the client of its
   README logs in as a guest and is answered by the new service through the gateway.

Self-contained on purpose: no shared process harness, every process is waited for or killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
READY = "NETBUS-READY"
PROJECT = "nbgame_e2e"  #: an unusual name: no module of this environment is called that


def child_env(**extra: str) -> dict[str, str]:
    """This environment without NETBUS_*/PYTEST_* settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NETBUS_", "PYTEST_", "PYTHONPATH"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free a moment ago (bound to port 0, read, released)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class Child:
    """A child process whose stdout lines are read as they come; stderr goes to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, err: Path) -> None:
        self.proc = proc
        self.err = err
        self.lines: list[str] = []

    async def line(self, matches: Callable[[str], bool], timeout: float) -> str:
        """The next stdout line that ``matches`` (the others are kept in `lines`)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while raw := await self.proc.stdout.readline():
                text = raw.decode().rstrip("\n")
                self.lines.append(text)
                if matches(text):
                    return text
        raise AssertionError(f"no such line; the process ended:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.err.read_text()

    async def stop(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            self.lines += (await self.proc.stdout.read()).decode().splitlines()
            return await self.proc.wait()


@asynccontextmanager
async def spawn(
    name: str, argv: list[str], *, cwd: Path, env: dict[str, str]
) -> AsyncIterator[Child]:
    err = cwd / f"{name}.err"
    with err.open("w") as err_file:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=err_file
        )
    child = Child(proc, err)
    try:
        yield child
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def test_netbus_serve_runs_a_target_and_drains_on_sighup(tmp_path: Path) -> None:
    (tmp_path / "netbus.toml").write_text('[cluster]\nsecret = "a-test-cluster-secret-0123"\n')
    argv = [sys.executable, "-m", "netbus", "serve", "tests.service.targets:Echo"]
    argv += ["--name", "echo-proc", "--port", "0"]
    async with spawn("serve", argv, cwd=tmp_path, env=child_env(PYTHONPATH=str(REPO))) as child:
        ready = await child.line(lambda line: line.startswith(READY), timeout=30)
        role, info = ready.split(" ", 2)[1:]
        facts = json.loads(info)
        assert role == "echo-proc" and facts["port"] > 0 and facts["admin_port"] > 0
        admin = f"http://127.0.0.1:{facts['admin_port']}"
        status, body = await asyncio.to_thread(http_get, admin + "/healthz")
        health = json.loads(body)
        assert status == 200
        assert (health["role"], health["services"], health["port"]) == (
            "echo-proc",
            ["echo"],
            facts["port"],
        )
        status, body = await asyncio.to_thread(http_get, admin + "/metrics")
        assert status == 200 and "netbus_connections" in body
        assert await child.stop(signal.SIGHUP) == 0
    assert "echo-proc: SIGHUP received, shutting down" in child.err.read_text()


def project_venv(tmp_path: Path) -> Path:
    """A virtualenv (no pip of its own) that sees this environment's packages, netbus and
    pip and pytest included, through a .pth file; returns its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "_netbus_checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def run(argv: list[str], *, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def test_a_new_project_installs_passes_its_tests_and_serves_under_netbus_up(
    tmp_path: Path,
) -> None:
    out = run([sys.executable, "-m", "netbus", "new", PROJECT], cwd=tmp_path)
    assert "python -m pytest" in out
    project = tmp_path / PROJECT
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.exists():  # the templates are as clean as the repo's code
        rules = "E,F,W,I,B,UP,SIM,RUF"
        run([str(ruff), "check", "--no-cache", "--select", rules, "."], cwd=project)
        run([str(ruff), "format", "--check", "--no-cache", PROJECT, "tests"], cwd=project)

    python = project_venv(tmp_path)
    install = [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation"]
    await asyncio.to_thread(run, [*install, "-e", ".[test]"], cwd=project)
    tests = await asyncio.to_thread(
        run, [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project
    )
    assert "3 passed" in tests

    ports = free_ports(11)
    gw_tcp, gw_ws, gw_admin, center, center_admin, talk, talk_admin = ports[:7]
    web, web_admin, game, game_admin = ports[7:]
    routes = {
        "talkroom": {"stype": 1, "addresses": [f"127.0.0.1:{talk}"], "policy": "primary"},
        "auth": {"stype": 2, "addresses": [f"127.0.0.1:{center}"]},
    }
    env = child_env(
        NETBUS_GATEWAY__LISTENERS=json.dumps(
            [{"kind": "tcp", "port": gw_tcp}, {"kind": "ws", "port": gw_ws}]
        ),
        NETBUS_GATEWAY__ADMIN_PORT=str(gw_admin),
        NETBUS_GATEWAY__SERVICES=json.dumps(routes),  # ours is added from [services.*]
        NETBUS_CENTER__PORT=str(center),
        NETBUS_CENTER__ADMIN_PORT=str(center_admin),
        NETBUS_TALKROOM__PORT=str(talk),
        NETBUS_TALKROOM__ADMIN_PORT=str(talk_admin),
        NETBUS_WEB__PORT=str(web),
        NETBUS_WEB__ADMIN_PORT=str(web_admin),
        **{
            f"NETBUS_SERVICES__{PROJECT.upper()}__PORT": str(game),
            f"NETBUS_SERVICES__{PROJECT.upper()}__ADMIN_PORT": str(game_admin),
        },
    )
    async with spawn("up", [str(python), "-m", "netbus", "up"], cwd=project, env=env) as up:
        await up.line(lambda line: line == "netbus up: cluster ready", timeout=90)
        banner = await up.line(lambda line: "Ctrl-C stops everything" in line, timeout=10)
        assert banner and f"  service   {PROJECT} (stype 16) x1" in up.lines
        status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{game_admin}/healthz")
        assert status == 200 and json.loads(body)["role"] == PROJECT

        readme = (project / "README.md").read_text()
        (client,) = re.findall(r"```python\n(.*?)```", readme, re.S)
        assert '"tcp://127.0.0.1:6080"' in client
        script = project / "client.py"
        script.write_text(client.replace("127.0.0.1:6080", f"127.0.0.1:{gw_tcp}"))
        said = await asyncio.to_thread(run, [str(python), str(script)], cwd=project, timeout=60)
        hello, moved = said.splitlines()
        assert hello.startswith("{'text': 'Hello, Ann!', 'uid': ")  # answered through the gateway
        assert moved == "{'x': 3, 'y': -2}"  # a BUF request and reply

        assert await up.stop(signal.SIGINT, timeout=60) == 0, up.output()
    assert "netbus up: stopping" in up.lines
    with socket.socket() as sock:  # the service process is gone and freed its port
        sock.bind(("127.0.0.1", game))
