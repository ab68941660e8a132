"""The servers of one run: roles started as subprocesses on 127.0.0.1, their configs, probes.

Every server gets port 0 and a temporary config (SQLite in a temp dir, or a scratch MariaDB
database created and dropped around the run), and announces its ports on its READY line.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netbus.protocol.header import ProtoType
from netbus.roles import Stype

from netbus_bench.codecs import BENCH_CODECS
from netbus_bench.echo import ECHO_CTYPE, ECHO_STYPE
from netbus_bench.kinds import LogLevel, Loop, Role
from netbus_bench.procs import BenchError, ServerProc, check_loopback, python_argv, toml_document

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "SERVICE_STYPES",
    "Cluster",
    "gateway_urls",
    "local_db_pid",
    "mariadb_database",
    "probe",
    "tcp_url",
]

#: listener limits that would throttle a load generator by design, turned off: the
#: per-connection packet rate limit, the per-IP cap (every bench client comes from 127.0.0.1)
#: and the total cap (ccu goes to the fd limit itself). The idle timeout stays as configured:
#: bench clients heartbeat like real ones.
_OPEN_LIMITS = {"rate": 0, "max_per_ip": 0, "max_connections": 0}

#: the stype each service role serves behind the gateway
SERVICE_STYPES: dict[Role, int] = {
    Role.CENTER: Stype.Auth,
    Role.TALKROOM: Stype.TalkRoom,
    Role.ECHO: ECHO_STYPE,
}
#: the gateway's name for each service route (``[gateway.services.<name>]``)
_ROUTE_NAMES = {Role.CENTER: "auth", Role.TALKROOM: "talkroom", Role.ECHO: "echo"}


class Cluster:
    """Starts and stops the servers of one run; configs and SQLite files live in a temp dir."""

    def __init__(self, *, loop: Loop, log_level: LogLevel, logs: Path, console: Console) -> None:
        self.loop = loop
        self.log_level = log_level
        self.logs = logs
        self.console = console
        self._tmp = tempfile.TemporaryDirectory(prefix="netbus-bench-")
        self.work = Path(self._tmp.name)
        self.servers: list[ServerProc] = []
        self._n = Counter[str]()

    def _start(self, name: str, argv: list[str]) -> ServerProc:
        name = str(name)  # a Role's value
        self._n[name] += 1
        server = ServerProc(name, argv, self.logs / f"{name}-{self._n[name]}.log")
        self.console.print(f"[dim]starting {name}: {' '.join(argv[1:])}")
        server.start(timeout=60)
        self.servers.append(server)
        return server

    def _role(
        self, role: Role, section: dict[str, Any], name: str, profile: Path | None = None
    ) -> ServerProc:
        """``python -m netbus <role> --config <toml>`` with ``[<role>] = section``."""
        doc = {"log": {"level": self.log_level.value}, role.value: section}
        path = self.work / f"{name}-{self._n[name] + 1}.toml"
        path.write_text(toml_document(doc) + "\n")
        argv = ["-m", "netbus", role.value, "--config", str(path), "--loop", self.loop.value]
        return self._start(name, python_argv(*argv, profile_to=profile))

    def center(self, db_url: str | None = None) -> ServerProc:
        """The auth service on ``db_url``, or on a new SQLite file."""
        url = db_url or f"sqlite+aiosqlite:///{self.work / f'bench-{secrets.token_hex(4)}.db'}"
        section = {
            "host": "127.0.0.1",
            "port": 0,
            "admin_port": 0,
            "database_url": url,
            "pepper_file": str(self.work / "pepper"),
        }
        return self._role(Role.CENTER, section, Role.CENTER)

    def service(self, role: Role, name: str) -> ServerProc:
        """A talkroom (``netbus talkroom``) or the bench's echo service."""
        if role is Role.TALKROOM:
            return self._role(role, {"host": "127.0.0.1", "port": 0, "admin_port": 0}, name)
        if role is Role.ECHO:
            module = "netbus_bench.echo"
            argv = ["-m", module, "--port", "0", "--loop", self.loop.value]
            return self._start(name, python_argv(*argv, "--log-level", self.log_level.value))
        raise ValueError(f"{role} is not a service the bench starts")

    def gateway(
        self, services: dict[Role, list[ServerProc]], *, profile: Path | None = None
    ) -> ServerProc:
        """A gateway with TCP and WS listeners routing to ``services`` (role -> instances)."""
        listeners = [
            {"kind": k, "host": "127.0.0.1", "port": 0, **_OPEN_LIMITS} for k in ("tcp", "ws")
        ]
        section: dict[str, Any] = {
            "id": "bench",
            "admin_port": 0,
            "listeners": listeners,
            "services": {
                _ROUTE_NAMES[role]: {
                    "stype": SERVICE_STYPES[role],
                    "addresses": [f"127.0.0.1:{s.port}" for s in procs],
                }
                for role, procs in services.items()
            },
            "limits": {"login_rate": 0},  # every bench login comes from 127.0.0.1
        }
        return self._role(Role.GATEWAY, section, Role.GATEWAY, profile)

    def baseline(self) -> tuple[ServerProc, ServerProc]:
        """The bare uvloop relay and its echo (`netbus_bench.baseline_relay`)."""
        module = "netbus_bench.baseline_relay"
        echo = self._start(Role.BASELINE_ECHO, python_argv("-m", module, "echo", "--port", "0"))
        upstream = f"127.0.0.1:{echo.port}"
        relay = self._start(
            Role.BASELINE_RELAY,
            python_argv("-m", module, "relay", "--port", "0", "--upstream", upstream),
        )
        return relay, echo

    def stop(self, *servers: ServerProc) -> None:
        for server in servers:
            server.stop()
            if server in self.servers:
                self.servers.remove(server)

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        self._tmp.cleanup()


def tcp_url(server: ServerProc) -> str:
    return f"tcp://127.0.0.1:{server.port}"


def gateway_urls(gateway: ServerProc) -> tuple[str, str]:
    """The gateway's TCP and WebSocket URLs, from its READY line."""
    tcp_port, ws_port = gateway.info["ports"][:2]
    return f"tcp://127.0.0.1:{tcp_port}", f"ws://127.0.0.1:{ws_port}/ws"


async def _probe(url: str, service: Role | None, timeout: float) -> None:
    from netbus.client import Client
    from netbus.errors import RequestTimeout, ServiceUnavailable

    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            async with await Client.connect(url, codecs=BENCH_CODECS) as client:
                reply = await client.guest_login(f"bench-probe-{secrets.token_hex(8)}")
                if reply.get("status") != 1:
                    raise BenchError(f"probe login refused: {reply}")
                if service is Role.ECHO:
                    await client.request(
                        ECHO_STYPE, ECHO_CTYPE, {"seq": 0, "data": ""}, proto_type=ProtoType.BUF
                    )
                elif service is Role.TALKROOM:
                    await client.exit()  # NOT_IN_ROOM: reaches the service, changes nothing
                return
        except (OSError, ServiceUnavailable, RequestTimeout, ConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise BenchError(f"cluster at {url} not answering after {timeout}s: {last!r}")


def probe(url: str, service: Role | None = None, timeout: float = 30.0) -> None:
    """Until a guest login (and one request to ``service``) goes through the gateway.

    Raises:
        BenchError: still not answering after ``timeout`` seconds.
    """
    asyncio.run(_probe(url, service, timeout))


@contextlib.contextmanager
def mariadb_database(base_url: str, console: Console) -> Iterator[str]:
    """Create ``netbus_bench_<hex>`` on the local MariaDB, yield its URL, drop it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    url = make_url(base_url)
    check_loopback(url.host or "127.0.0.1")
    name = f"netbus_bench_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        engine = create_async_engine(url.set(database=None), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    console.print(f"[dim]created MariaDB database {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS `{name}`"))
        console.print(f"[dim]dropped MariaDB database {name}")


def local_db_pid() -> int | None:
    """The pid of the MariaDB/MySQL server on this machine, to measure its CPU too."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in ("mariadbd", "mysqld"):
                return int(entry.name)
    return None
