"""Process-level harness of the hardening tests: real roles, real sockets, no mocks.

`HardCluster` is the e2e `Cluster` (``python -m netbus center|talkroom|gateway`` with a temp
TOML config, readiness from the ``NETBUS-READY`` line) plus what these tests need to
configure: options on the gateway's listeners, extra listeners (port 0, their ports read
from the READY line), ``[gateway]`` keys, ``[gateway.limits]``, and service addresses that
point somewhere else than the real services (a stalled fake). The rest are small helpers:
the gateway's ``/healthz`` and ``/metrics``, VmRSS from ``/proc``, raw TCP / WebSocket
sockets that speak bytes, a private ``mariadbd`` to stop and start, and a TCP server that
accepts a link and never answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from netbus.protocol import Direction, GatewayCmd
from netbus.protocol.framing import encode_frame
from netbus.protocol.header import HEADER, ProtoType, unpack_header
from netbus.roles import Stype
from tests.e2e.cluster import START_TIMEOUT, Cluster, live_pids_with_arg
from tests.e2e.helpers import leaked_secrets
from tests.helpers import CODECS

T = TypeVar("T")

JSON = ProtoType.JSON
BUF = ProtoType.BUF
MiB = 1024 * 1024


# ------------------------------------------------------------------------------ cluster
def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string here


def _keys(options: Mapping[str, Any]) -> str:
    return "".join(f"{key} = {_toml(value)}\n" for key, value in options.items())


class HardCluster(Cluster):
    """A `Cluster` whose gateway configuration the test chooses.

    Args:
        tcp, ws: extra keys of the two standard listeners (e.g. ``{"max_per_ip": 5}``).
        listeners: name -> keys of additional gateway listeners (``kind`` included); they
            listen on port 0 and `listener_url` finds them from the READY line.
        gateway: extra ``[gateway]`` keys (e.g. ``{"heartbeat_interval": 0.5}``).
        limits: ``[gateway.limits]`` keys (e.g. ``{"max_buffered_out": 65536}``).
        talkroom: extra ``[talkroom]`` keys (e.g. ``{"max_msg_len": 16000}``).
        service_addresses: service name -> the address the gateway dials instead.
        cluster: ``[cluster]`` keys (e.g. ``{"secret": ...}`` for a fake service that must
            pass the link handshake); default: the roles create ``.netbus/cluster_secret``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        loop: str = "auto",
        tcp: Mapping[str, Any] | None = None,
        ws: Mapping[str, Any] | None = None,
        listeners: Mapping[str, Mapping[str, Any]] | None = None,
        gateway: Mapping[str, Any] | None = None,
        limits: Mapping[str, Any] | None = None,
        talkroom: Mapping[str, Any] | None = None,
        service_addresses: Mapping[str, str] | None = None,
        cluster: Mapping[str, Any] | None = None,
    ) -> None:
        self.cluster_options = dict(cluster or {})
        self.tcp_options = dict(tcp or {})
        self.ws_options = dict(ws or {})
        self.extra_listeners = {name: dict(opts) for name, opts in (listeners or {}).items()}
        self.gateway_options = dict(gateway or {})
        self.limit_options = dict(limits or {})
        self.talkroom_options = dict(talkroom or {})
        self.service_addresses = dict(service_addresses or {})
        self.listener_ports: dict[str, int] = {}
        self.gateway_admin = 0
        super().__init__(workdir, database_url=database_url, loop=loop)

    def config_text(self, *, storage: bool = True) -> str:
        text = super().config_text(storage=storage)
        p = self.ports

        def insert_after(anchor: str, extra: str) -> None:
            nonlocal text
            assert text.count(anchor) == 1, f"config anchor {anchor!r} not unique"
            text = text.replace(anchor, anchor + extra)

        if self.tcp_options:
            insert_after(f"port = {p['tcp']}\n", _keys(self.tcp_options))
        if self.ws_options:
            insert_after(f"port = {p['ws']}\n", _keys(self.ws_options))
        if self.gateway_options:
            insert_after('id = "e2e"\n', _keys(self.gateway_options))
        if self.talkroom_options:
            insert_after(f"port = {p['talkroom']}\n", _keys(self.talkroom_options))
        for name, address in self.service_addresses.items():
            default = {"talkroom": p["talkroom"], "center": p["center"], "auth": p["center"]}
            old = f'addresses = ["127.0.0.1:{default[name]}"]'
            assert text.count(old) == 1, old
            text = text.replace(old, f"addresses = [{_toml(address)}]")
        for options in self.extra_listeners.values():
            text += "\n[[gateway.listeners]]\n" + _keys({"host": "127.0.0.1", "port": 0, **options})
        if self.cluster_options:
            text += "\n[cluster]\n" + _keys(self.cluster_options)
        if self.limit_options:
            if "login_exempt_loopback" in self.limit_options:  # the e2e config sets it
                text = re.sub(r"(?m)^login_exempt_loopback = .*\n", "", text)
            insert_after("[gateway.limits]\n", _keys(self.limit_options))
        return text

    def start(self, services: Iterable[str] = ("center", "talkroom")) -> None:  # type: ignore[override]
        """Start ``services`` (in parallel), then the gateway; each awaited by READY."""
        services = tuple(services)
        try:
            for role in services:
                self.spawn(role)
            for role in services:
                assert self.wait_ready(role)["port"] == self.ports[role]
            self.spawn("gateway")
            self._gateway_ready(self.wait_ready("gateway"))
        except BaseException:
            self.stop(check=False)
            raise

    def _gateway_ready(self, info: dict[str, Any]) -> None:
        names = ["tcp", "ws", *self.extra_listeners]
        ports = info["ports"]
        assert len(ports) == len(names), info
        assert ports[:2] == [self.ports["tcp"], self.ports["ws"]], info
        self.listener_ports = dict(zip(names, ports, strict=True))
        self.gateway_admin = int(info["admin_port"])

    async def start_role(self, role: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        info = await super().start_role(role, timeout)
        if role == "gateway":
            self._gateway_ready(info)
        return info

    def listener_url(self, name: str) -> str:
        kind = {"tcp": "tcp", "ws": "ws"}.get(name) or self.extra_listeners[name]["kind"]
        port = self.listener_ports[name]
        return f"tcp://127.0.0.1:{port}" if kind == "tcp" else f"ws://127.0.0.1:{port}/ws"

    def pid(self, role: str) -> int:
        return self.procs[role].pid

    def pids(self) -> dict[str, int]:
        return {role: proc.pid for role, proc in self.procs.items() if proc.running}

    def dead_roles(self) -> dict[str, int | None]:
        """Roles whose current process has exited: name -> returncode."""
        return {r: p.popen.returncode for r, p in self.procs.items() if p.popen.poll() is not None}

    # --------------------------------------------------------------- admin HTTP
    async def healthz(self, role: str = "gateway") -> dict[str, Any]:
        return await http_json(f"http://127.0.0.1:{self.admin_port(role)}/healthz")

    async def metrics_text(self, role: str = "gateway") -> str:
        return await http_text(f"http://127.0.0.1:{self.admin_port(role)}/metrics")

    async def metric(self, name: str, role: str = "gateway", **labels: str) -> float:
        return metric_value(await self.metrics_text(role), name, **labels)

    def admin_port(self, role: str) -> int:
        if role == "gateway" and self.gateway_admin:
            return self.gateway_admin
        return self.ports[f"admin-{role}"]

    def finish(self) -> None:
        """Stop every role (each must exit 0 on SIGTERM); no process or secret left behind."""
        try:
            self.stop(check=True)
        finally:
            leftovers = live_pids_with_arg(str(self.config_path))
            assert not leftovers, f"role processes outlived the cluster: {leftovers}"
        pepper = self.pepper_file.read_text().strip() if self.pepper_file.exists() else ""
        secret_file = self.workdir / ".netbus" / "cluster_secret"
        secret = str(self.cluster_options.get("secret", ""))
        if secret_file.exists():
            secret = secret_file.read_text().strip()
        output = [line for proc in self.history for line in proc.output()]
        leaked = leaked_secrets(output, self.probe_key, pepper, secret)
        assert not leaked, f"secrets in the roles' output: {sorted(leaked)}"


# --------------------------------------------------------------------------- admin HTTP
_TIMEOUT = aiohttp.ClientTimeout(total=5)


async def http_text(url: str) -> str:
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as http, http.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def http_json(url: str) -> dict[str, Any]:
    return json.loads(await http_text(url))  # type: ignore[no-any-return]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def vm_rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``accept`` holds; the last value. Fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------- raw packets
def cmd(stype: int, ctype: int, body: Any, proto: int = JSON, *, utag: int = 0) -> bytes:
    """A well-formed client -> server cmd_buf."""
    return CODECS.encode(
        stype, ctype, body, utag=utag, proto_type=proto, direction=Direction.TO_SERVER
    )


def frame(stype: int, ctype: int, body: Any, proto: int = JSON, *, utag: int = 0) -> bytes:
    """The same, as a TCP frame."""
    return encode_frame(cmd(stype, ctype, body, proto, utag=utag))


HEARTBEAT_FRAME = frame(Stype.Gateway, GatewayCmd.HEARTBEAT, None)


def decode(cmd_buf: bytes) -> tuple[int, int, Any, int]:
    """(stype, ctype, body, proto_type) of a server -> client cmd_buf."""
    stype, ctype, _utag, proto = unpack_header(cmd_buf)
    return (
        stype,
        ctype,
        CODECS.decode_body(cmd_buf, stype, ctype, proto, Direction.TO_CLIENT),
        proto,
    )


OPEN_RAW: set[RawTcp] = set()  #: closed by the tests' fixture at the end of each test


async def close_raw_sockets() -> None:
    for raw in list(OPEN_RAW):
        await raw.close()


class RawTcp:
    """A TCP client socket that speaks bytes (asyncio streams), for limits and hostility."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        source: str | None = None,
        rcvbuf: int | None = None,
        limit: int = 1 << 20,
    ) -> RawTcp:
        """Connect from ``source`` (another loopback address is another client IP); a small
        ``rcvbuf`` and ``limit`` (asyncio stops reading past 2 * limit) make a slow reader."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # before connect(), so the window is small from the start
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source is not None:
                sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        except BaseException:
            sock.close()
            raise
        raw = cls(reader, writer)
        OPEN_RAW.add(raw)
        return raw

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, int, Any, int]:
        async with asyncio.timeout(timeout):
            (length,) = struct.unpack("<H", await self.reader.readexactly(2))
            return decode(await self.reader.readexactly(length - 2))

    async def read_until(
        self, stype: int, ctype: int, timeout: float = 5.0
    ) -> tuple[list[tuple[int, int, Any, int]], Any]:
        """Frames up to the first (stype, ctype) one: (the others, that one's body)."""
        others = []
        async with asyncio.timeout(timeout):
            while True:
                got = await self.read_frame(timeout)
                if got[:2] == (stype, ctype):
                    return others, got[2]
                others.append(got)

    async def closed_by_peer(self, timeout: float) -> bytes | None:
        """The bytes received until the server closed (EOF or reset) within ``timeout``,
        or None if it did not."""
        received = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while data := await self.reader.read(65536):
                    received += data
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            pass
        return bytes(received)

    async def heartbeat(self, timeout: float = 5.0) -> None:
        """One HEARTBEAT round trip (fails if anything else arrives first)."""
        self.send(HEARTBEAT_FRAME)
        got = await self.read_frame(timeout)
        assert got[:2] == (Stype.Gateway, GatewayCmd.HEARTBEAT), got

    async def closed_within(self, timeout: float) -> tuple[bytes | None, float]:
        """`closed_by_peer`, and the seconds it took."""
        start = time.monotonic()
        received = await self.closed_by_peer(timeout)
        return received, time.monotonic() - start

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        OPEN_RAW.discard(self)
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def raw_ws_handshake(port: int) -> RawTcp:
    """A WebSocket upgrade done by hand; afterwards the socket is left alone (no pongs)."""
    raw = await RawTcp.connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.send(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(5):
        head = await raw.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


def pack_header(stype: int, ctype: int, utag: int, proto: int) -> bytes:
    return HEADER.pack(stype, ctype, utag, proto)


# ---------------------------------------------------------------------- stalled service
class StalledService:
    """A TCP server that accepts links and reads everything, but never writes a byte: a
    frozen service process as its peer sees it (the kernel still ACKs).

    With ``secret`` (the cluster's) it first passes the service-link handshake, so the
    gateway opens the link, and freezes after that.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.accepted = 0
        self.accept_times: list[float] = []  #: time.monotonic() of each accept
        self.received: list[bytearray] = []  #: the bytes read, one entry per link
        self.conns: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        self.conns.append(writer)
        received = bytearray()
        self.received.append(received)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            if self.secret is not None:
                from netbus.protocol.linkauth import PROOF_SIZE, AuthState, ServiceHandshake

                handshake = ServiceHandshake(self.secret)
                writer.write(handshake.data_to_send())
                if handshake.receive_data(await reader.readexactly(PROOF_SIZE)) is AuthState.DONE:
                    writer.write(handshake.data_to_send())
            while data := await reader.read(65536):
                received += data
        writer.transport.abort()

    def frames(self) -> list[tuple[int, int, int]]:
        """(stype, ctype, utag) of every whole frame received, link after link."""
        out = []
        for data in self.received:
            at = 0
            while len(data) - at >= 2:
                (length,) = struct.unpack_from("<H", data, at)
                if len(data) - at < length:
                    break
                stype, ctype, utag, _proto = HEADER.unpack_from(data, at + 2)
                out.append((stype, ctype, utag))
                at += length
        return out

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self.conns:
                writer.transport.abort()
            await self._server.wait_closed()


# -------------------------------------------------------------------- private MariaDB
class PrivateMariaDB:
    """A throwaway ``mariadbd`` of this test's own (never the shared server), on a free port,
    that the test may stop, freeze and start again with the same data directory."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("mariadb-install-db") and _mariadbd() and shutil.which("mariadb"))

    @property
    def url(self) -> str:
        # connect_timeout bounds a connect to a server that accepts but does not answer
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/netbus?connect_timeout=2"

    def install(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                f"--datadir={self.datadir}",
                "--user=root",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = (self.workdir / "mariadbd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(_mariadbd()),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                f"--socket={self.workdir / 'mysqld.sock'}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                f"--pid-file={self.workdir / 'mysqld.pid'}",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                [
                    "mariadb",
                    "--no-defaults",
                    "-h127.0.0.1",
                    f"-P{self.port}",
                    "-uroot",
                    "--connect-timeout=2",
                    "-e",
                    "CREATE DATABASE IF NOT EXISTS netbus CHARACTER SET utf8mb4",
                ],
                capture_output=True,
                timeout=10,
            )
            if done.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"private mariadbd did not start: {done.stderr!r}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.stop(signal.SIGKILL)


def _mariadbd() -> str | None:
    for candidate in ("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld"):
        found = shutil.which(candidate)
        if found:
            return found
    return None
