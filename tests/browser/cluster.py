"""A real ``netbus up`` cluster and Debian's Chromium for the browser tests.

`UpCluster` writes a TOML config with free loopback ports (gateway WS listener, center,
talkroom, the four admin ports and the web port; ``[web] gateway_url`` points the page at the
gateway) and runs ``python -m netbus up`` in a temp working directory, so the SQLite database
and the pepper land in ``<tmp>/.netbus/``. Readiness is the supervisor's "cluster ready" line
(printed once every role has announced ``NETBUS-READY``) and then the gateway's ``/healthz``
showing both service links up: conditions, never fixed sleeps.

Chromium is Debian's (``/usr/bin/chromium`` or ``NETBUS_CHROMIUM``); Playwright's own browser
downloads are never used. Without Chromium the tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"

START_TIMEOUT = 40.0  #: seconds for `netbus up` to say "cluster ready"
STOP_TIMEOUT = 20.0  #: seconds for `netbus up` to exit after SIGTERM (its children get 10)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:  # last resort: an interrupted run leaves nothing behind
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------- helpers
def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def http_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, parsed JSON) of a GET; (0, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
    except (OSError, ValueError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


def children(pid: int) -> dict[int, list[str]]:
    """pid -> argv of the live (non-zombie) child processes of ``pid``, from /proc."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # exited meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # "pid (comm) state ppid ..."
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = [a for a in argv if a]
    return found


def pids_with_arg(arg: str) -> list[int]:
    """Live processes whose argv contains ``arg`` (our unique config path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if arg in argv and state != "Z":
            found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------- the cluster
class UpCluster:
    """``netbus up`` as a subprocess, with its config, ports and collected output."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        names = ("ws", "center", "talkroom", "web", "admin-gateway", "admin-center")
        names += ("admin-talkroom", "admin-web")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.config_path = workdir / "netbus.toml"
        self.config_path.write_text(self.config_text())
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['ws']}/ws"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}/"

    def admin_url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'admin-{role}']}"

    def config_text(self) -> str:
        p = self.ports
        return f"""\
[log]
level = "INFO"

[gateway]
id = "browser"
admin_port = {p["admin-gateway"]}

[gateway.limits]
login_exempt_loopback = true

[[gateway.listeners]]
kind = "ws"
host = "127.0.0.1"
port = {p["ws"]}

[gateway.services.talkroom]
stype = 1
addresses = ["127.0.0.1:{p["talkroom"]}"]
policy = "primary"

[gateway.services.auth]
stype = 2
addresses = ["127.0.0.1:{p["center"]}"]

[center]
host = "127.0.0.1"
port = {p["center"]}
admin_port = {p["admin-center"]}

[talkroom]
host = "127.0.0.1"
port = {p["talkroom"]}
admin_port = {p["admin-talkroom"]}

[web]
host = "127.0.0.1"
port = {p["web"]}
admin_port = {p["admin-web"]}
gateway_url = "{self.ws_url}"
"""

    # ------------------------------------------------------------------------ process
    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netbus", "up", "--config", str(self.config_path)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        _live.add(self.proc)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        self.proc.stdout.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, match: Callable[[str], bool], *, start: int = 0, timeout: float) -> str:
        """The first output line from index ``start`` that ``match``es; waits for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if match(line):
                        return line
                start = max(start, len(self.lines))
                if self._eof:
                    raise AssertionError(f"netbus up exited first\n{self.log()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no such line within {timeout}s\n{self.log()}")
                self._cond.wait(remaining)

    def log(self, tail: int = 80) -> str:
        with self._cond:
            return "\n".join(self.lines[-tail:]) or "(no output)"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def role_pids(self) -> dict[str, int]:
        """role name -> pid of the ``python -m netbus <role>`` children of ``netbus up``."""
        roles = {}
        for child, argv in children(self.pid).items():
            if argv[1:3] == ["-m", "netbus"] and len(argv) > 3:
                roles[argv[3]] = child
        return roles

    def services_up(self) -> bool:
        status, doc = http_json(self.admin_url("gateway") + "/healthz")
        if status != 200 or not isinstance(doc, dict):
            return False
        links = [state for svc in doc.get("services", {}).values() for state in svc.values()]
        return len(links) == 2 and all(state == "up" for state in links)

    def link_states(self) -> dict[str, list[str]]:
        """service name -> the states ("up"/"down") of the gateway's links to it."""
        status, doc = http_json(self.admin_url("gateway") + "/healthz")
        if status != 200 or not isinstance(doc, dict):
            return {}
        return {name: list(links.values()) for name, links in doc.get("services", {}).items()}

    async def wait_link_down(self, service: str, timeout: float = START_TIMEOUT) -> None:
        """Poll the gateway's /healthz until its links to ``service`` are all down."""
        deadline = time.monotonic() + timeout
        while "up" in (await asyncio.to_thread(self.link_states)).get(service, ["up"]):
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} links still up after {timeout}s\n{self.log()}")
            await asyncio.sleep(0.1)

    async def wait_services_up(self, timeout: float = START_TIMEOUT) -> None:
        """Poll the gateway's /healthz until both service links are up."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.services_up):
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway links not up within {timeout}s\n{self.log()}")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        self.spawn()
        await asyncio.to_thread(
            self.wait_line, lambda line: line == "netbus up: cluster ready", timeout=START_TIMEOUT
        )
        roles = self.role_pids()
        assert {"center", "talkroom", "gateway", "web"} <= roles.keys(), (roles, self.log())
        await self.wait_services_up()

    def stop(self) -> int | None:
        """SIGTERM ``netbus up`` (it stops its children), SIGKILL whatever outlives it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        _live.discard(self.proc)
        if self._reader is not None:
            self._reader.join(5)
        # Children live in sessions of their own and carry our unique config path: a role
        # that outlived `netbus up` (or was orphaned by the SIGKILL above) is found by it.
        for pid in pids_with_arg(str(self.config_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return code


# ---------------------------------------------------------------------------- Chromium
def chromium_path() -> str:
    """Debian's Chromium, or skip (fail under CI) with the reason."""
    path = os.environ.get("NETBUS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    reason = None
    if not Path(path).is_file():
        reason = f"Chromium not found (looked for {path}; apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed (pip install '.[test]')"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path
