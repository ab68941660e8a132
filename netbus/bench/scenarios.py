"""The five scenarios: which servers to start, which phases to run, what to report.

Every scenario starts its servers as subprocesses on 127.0.0.1 with port 0 and temporary
configs (SQLite in a temp dir, or a scratch MariaDB database it creates and drops), unless
``--gateway`` points at a running cluster. Each returns a report dict; `netbus.bench.cli`
writes it as JSON and PNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from netbus.bench.codecs import BENCH_CODECS
from netbus.bench.echo import ECHO_CTYPE, ECHO_STYPE
from netbus.bench.procs import ServerProc, python_argv, repo_root, toml_document
from netbus.bench.runner import BenchError, run_phase, split
from netbus.bench.worker import WorkerSpec
from netbus.protocol.header import ProtoType
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd

__all__ = ["SCENARIOS", "Options", "run_scenario"]


@dataclass
class Options:
    """Everything the command line can set (see ``netbus bench --help``)."""

    scenario: str
    duration: float = 10.0
    messages: int = 5_000_000
    procs: int = 2
    clients: int = 64
    inflight: int = 1
    rate: float = 0.0
    client: str = "raw"
    loop: str = "uvloop"
    gateway: str | None = None
    gateway_ws: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    log_level: str = "WARNING"
    payload: int = 32
    setup_timeout: float = 120.0
    # relay
    baseline: bool = True
    rounds: int = 1
    profile: str = "none"
    # talkroom
    rooms: int = 1
    half: bool = True
    # fanout
    members: int = 1000
    # ccu
    connections: int = 20_000
    hb_interval: float = 5.0
    source_addrs: int = 0
    # login (and ccu's database)
    db: str = "both"
    mysql_url: str = "mysql+asyncmy://root@127.0.0.1:3306"
    concurrency: int = 16


# ------------------------------------------------------------------------------ cluster
class Cluster:
    """The servers of one run; configs and the SQLite file live in a temp dir."""

    def __init__(self, opts: Options, logs: Path, console: Console) -> None:
        self.opts = opts
        self.logs = logs
        self.console = console
        self._tmp = tempfile.TemporaryDirectory(prefix="netbus-bench-")
        self.work = Path(self._tmp.name)
        self.servers: list[ServerProc] = []
        self._n = Counter[str]()

    def _admin(self, section: str) -> dict[str, Any]:
        from netbus import config

        model = {
            "gateway": config.GatewayConfig,
            "center": config.CenterConfig,
            "talkroom": config.TalkroomConfig,
        }[section]
        fields: dict[str, Any] = getattr(model, "model_fields", {})
        return {"admin_port": 0} if "admin_port" in fields else {}

    def _open_limits(self) -> dict[str, Any]:
        """Listener limits that would throttle a load generator by design, turned off.

        The per-connection packet rate limit, the per-IP cap (every bench client comes from
        127.0.0.1) and the total cap (ccu goes to the fd limit itself). The idle timeout
        stays as configured: bench clients heartbeat like real ones.
        """
        from netbus.config import ListenerConfig

        wanted = {"rate": 0, "max_per_ip": 0, "max_connections": 0}
        return {k: v for k, v in wanted.items() if k in ListenerConfig.model_fields}

    def _start(self, role: str, argv: list[str], name: str | None = None) -> ServerProc:
        name = name or role
        self._n[name] += 1
        log = self.logs / f"{name}-{self._n[name]}.log"
        server = ServerProc(name, argv, log)
        self.console.print(f"[dim]starting {name}: {' '.join(argv[1:])}")
        server.start(timeout=60)
        self.servers.append(server)
        return server

    def _role(
        self, role: str, doc: dict[str, Any], name: str, profile: Path | None = None
    ) -> ServerProc:
        doc = {"log": {"level": self.opts.log_level}, **doc}
        path = self.work / f"{name}-{self._n[name] + 1}.toml"
        path.write_text(toml_document(doc) + "\n")
        argv = python_argv(
            "-m",
            "netbus",
            role,
            "--config",
            str(path),
            "--loop",
            self.opts.loop,
            profile_to=profile,
        )
        return self._start(role, argv, name)

    def center(self, db_url: str | None = None) -> ServerProc:
        url = db_url or f"sqlite+aiosqlite:///{self.work / f'bench-{secrets.token_hex(4)}.db'}"
        section = {
            "host": "127.0.0.1",
            "port": 0,
            "database_url": url,
            "pepper_file": str(self.work / "pepper"),
            **self._admin("center"),
        }
        return self._role("center", {"center": section}, "center")

    def talkroom(self, index: int = 0) -> ServerProc:
        section = {"host": "127.0.0.1", "port": 0, **self._admin("talkroom")}
        return self._role("talkroom", {"talkroom": section}, f"talkroom-{index}")

    def echo(self) -> ServerProc:
        argv = python_argv(
            "-m",
            "netbus.bench.echo",
            "--port",
            "0",
            "--loop",
            self.opts.loop,
            "--log-level",
            self.opts.log_level,
        )
        return self._start("echo", argv)

    def gateway(
        self, services: dict[str, tuple[int, list[ServerProc]]], *, profile: Path | None = None
    ) -> ServerProc:
        section: dict[str, Any] = {
            "id": "bench",
            **self._admin("gateway"),
            "listeners": [
                {"kind": "tcp", "host": "127.0.0.1", "port": 0, **self._open_limits()},
                {"kind": "ws", "host": "127.0.0.1", "port": 0, **self._open_limits()},
            ],
            "services": {
                name: {"stype": stype, "addresses": [f"127.0.0.1:{s.port}" for s in procs]}
                for name, (stype, procs) in services.items()
            },
            "limits": {"login_rate": 0},  # every bench login comes from 127.0.0.1
        }
        return self._role("gateway", {"gateway": section}, "gateway", profile)

    def baseline(self) -> tuple[ServerProc, ServerProc]:
        script = repo_root() / "bench" / "baseline_relay.py"
        if not script.is_file():
            raise BenchError(f"baseline relay not found at {script} (run from a checkout)")
        echo = self._start(
            "baseline-echo", python_argv(str(script), "echo", "--port", "0"), "baseline-echo"
        )
        relay = self._start(
            "baseline-relay",
            python_argv(
                str(script), "relay", "--port", "0", "--upstream", f"127.0.0.1:{echo.port}"
            ),
            "baseline-relay",
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


def gateway_urls(gateway: ServerProc) -> tuple[str, str]:
    tcp_port, ws_port = gateway.info["ports"][:2]
    return f"tcp://127.0.0.1:{tcp_port}", f"ws://127.0.0.1:{ws_port}/ws"


def tcp_url(server: ServerProc) -> str:
    return f"tcp://127.0.0.1:{server.port}"


async def _probe(url: str, stype: int | None, timeout: float = 30.0) -> None:
    """Until a guest login (and one request to ``stype``) goes through the gateway."""
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
                if stype == ECHO_STYPE:
                    await client.request(
                        ECHO_STYPE, ECHO_CTYPE, {"seq": 0, "data": ""}, proto_type=ProtoType.BUF
                    )
                elif stype == Stype.TalkRoom:
                    await client.exit()  # NOT_IN_ROOM: reaches the service, changes nothing
                return
        except (OSError, ServiceUnavailable, RequestTimeout, ConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise BenchError(f"cluster at {url} not answering after {timeout}s: {last!r}")


def probe(url: str, stype: int | None = None) -> None:
    asyncio.run(_probe(url, stype))


@contextlib.contextmanager
def mariadb_database(base_url: str, console: Console) -> Iterator[str]:
    """Create ``netbus_bench_<hex>`` on the local MariaDB, yield its URL, drop it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from netbus.bench.procs import check_loopback

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


# ----------------------------------------------------------------------------- helpers
def _specs(opts: Options, url: str, conns: int, procs: int, **kw: Any) -> list[WorkerSpec]:
    procs = _nworkers(procs, conns)
    tag = secrets.token_hex(3)
    return [
        WorkerSpec(
            wid=i,
            url=url,
            conns=c,
            duration=opts.duration,
            max_messages=m,
            loop=opts.loop,
            tag=tag,
            setup_timeout=opts.setup_timeout,
            **kw,
        )
        for i, (c, m) in enumerate(
            zip(split(conns, procs), split(opts.messages, procs), strict=True)
        )
    ]


def _nworkers(procs: int, conns: int) -> int:
    """How many workers `_specs` makes (a paced rate is split over them)."""
    return max(1, min(procs, conns))


def _target(name: str, target: str, measured: Any, met: bool | None) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "met": met}


def _pids(cluster_servers: dict[str, ServerProc]) -> dict[str, int]:
    return {role: s.pid for role, s in cluster_servers.items()}


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


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


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


# ------------------------------------------------------------------------------- relay
def scenario_relay(opts: Options, cluster: Cluster, console: Console, out: Path) -> dict[str, Any]:
    body = {"seq": 1, "data": "x" * opts.payload}
    common: dict[str, Any] = {
        "job": "request",
        "client": opts.client,
        "inflight": opts.inflight,
        "rate": opts.rate / _nworkers(opts.procs, opts.clients),
        "stype": ECHO_STYPE,
        "ctype": ECHO_CTYPE,
        "proto_type": ProtoType.BUF,
        "body": body,
    }
    if opts.gateway:
        url, servers = opts.gateway, dict(opts.pids)
        gateway_pid = opts.pids.get("gateway")
    else:
        center = cluster.center()
        echo = cluster.echo()
        gw = cluster.gateway({"auth": (Stype.Auth, [center]), "echo": (ECHO_STYPE, [echo])})
        url = gateway_urls(gw)[0]
        servers = _pids({"gateway": gw, "echo": echo, "center": center})
        gateway_pid = gw.pid
    probe(url, ECHO_STYPE)
    base_url = base_servers = None
    if opts.baseline:
        relay, becho = cluster.baseline()
        base_url = tcp_url(relay)
        base_servers = {"baseline-relay": relay.pid, "baseline-echo": becho.pid}
    phases: list[dict[str, Any]] = []
    for r in range(opts.rounds):
        suffix = f"#{r + 1}" if opts.rounds > 1 else ""
        phases.append(
            run_phase(
                f"netbus{suffix}",
                _specs(opts, url, opts.clients, opts.procs, login=True, **common),
                servers,
                console=console,
                unit="round trips",
                duration=opts.duration,
            )
        )
        if base_url and base_servers:
            phases.append(
                run_phase(
                    f"baseline{suffix}",
                    _specs(opts, base_url, opts.clients, opts.procs, login=False, **common),
                    base_servers,
                    console=console,
                    unit="round trips",
                    duration=opts.duration,
                )
            )
    profile: dict[str, Any] | None = None
    if opts.profile != "none" and not opts.gateway:
        profile = _profile_gateway(opts, cluster, console, out, common, phases, gateway_pid)
    # Medians over the rounds; the profiled phase ("netbus+...") is not one of them.
    nb = [p for p in phases if p["name"].split("#")[0] == "netbus"]
    bl = [p for p in phases if p["name"].split("#")[0] == "baseline"]
    nb_rate = _median([p["throughput_per_s"] for p in nb])
    bl_rate = _median([p["throughput_per_s"] for p in bl])
    ratio = round(nb_rate / bl_rate, 3) if bl_rate else None

    def cpu(group: list[dict[str, Any]], role: str) -> float | None:
        values = [
            p["servers"][role]["cpu_s_per_1k"]
            for p in group
            if p["servers"].get(role, {}).get("cpu_s_per_1k") is not None
        ]
        return round(_median(values), 5) if values else None

    summary: dict[str, Any] = {
        "netbus_round_trips_per_s": round(nb_rate, 1),
        "baseline_round_trips_per_s": round(bl_rate, 1) if bl else None,
        "ratio_netbus_to_baseline": ratio,
        "gateway_cpu_s_per_1k": cpu(nb, "gateway"),
        "echo_cpu_s_per_1k": cpu(nb, "echo"),
        "baseline_relay_cpu_s_per_1k": cpu(bl, "baseline-relay"),
        "baseline_echo_cpu_s_per_1k": cpu(bl, "baseline-echo"),
    }
    gw_cpu, relay_cpu = summary["gateway_cpu_s_per_1k"], summary["baseline_relay_cpu_s_per_1k"]
    summary["cpu_ratio_gateway_to_baseline_relay"] = (
        round(gw_cpu / relay_cpu, 2) if gw_cpu and relay_cpu else None
    )
    report: dict[str, Any] = {
        "phases": phases,
        "summary": summary,
        "targets": [
            _target(
                "relay ≥ 0.8× baseline", "≥ 0.8", ratio, None if ratio is None else ratio >= 0.8
            )
        ],
    }
    if profile is not None:
        report["profile"] = profile
    return report


def _profile_gateway(
    opts: Options,
    cluster: Cluster,
    console: Console,
    out: Path,
    common: dict[str, Any],
    phases: list[dict[str, Any]],
    gateway_pid: int | None,
) -> dict[str, Any]:
    """An extra netbus phase with the gateway profiled (kept out of the clean numbers)."""
    from netbus.bench.profiling import top_cprofile, top_pyspy

    center = cluster.center()
    echo = cluster.echo()
    routes = {"auth": (Stype.Auth, [center]), "echo": (ECHO_STYPE, [echo])}
    if opts.profile == "py-spy":
        tool = _py_spy()
        if tool is None:
            raise BenchError("py-spy not found: pip install py-spy, or use --profile cprofile")
        gw = cluster.gateway(routes)
        url = gateway_urls(gw)[0]
        probe(url, ECHO_STYPE)
        raw = out / "gateway-py-spy.txt"
        spy = subprocess.Popen(
            [
                tool,
                "record",
                "--pid",
                str(gw.pid),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "--duration",
                str(math.ceil(opts.duration) + 8),
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            phases.append(
                run_phase(
                    "netbus+py-spy",
                    _specs(opts, url, opts.clients, opts.procs, login=True, **common),
                    {"gateway": gw.pid, "echo": echo.pid, "center": center.pid},
                    console=console,
                    unit="round trips",
                    duration=opts.duration,
                )
            )
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            try:
                spy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                spy.kill()
        return {"tool": "py-spy", "file": raw.name, **top_pyspy(raw)}
    prof = out / "gateway.prof"
    gw = cluster.gateway(routes, profile=prof)
    url = gateway_urls(gw)[0]
    probe(url, ECHO_STYPE)
    phases.append(
        run_phase(
            "netbus+cProfile",
            _specs(opts, url, opts.clients, opts.procs, login=True, **common),
            {"gateway": gw.pid, "echo": echo.pid, "center": center.pid},
            console=console,
            unit="round trips",
            duration=opts.duration,
        )
    )
    cluster.stop(gw)  # SIGTERM: the gateway exits normally and cProfile writes the file
    return {"tool": "cProfile", "file": prof.name, **top_cprofile(prof)}


# ---------------------------------------------------------------------------- talkroom
def scenario_talkroom(
    opts: Options, cluster: Cluster, console: Console, out: Path
) -> dict[str, Any]:
    text = "x" * opts.payload
    common: dict[str, Any] = {
        "job": "request",
        "client": opts.client,
        "inflight": opts.inflight,
        "stype": Stype.TalkRoom,
        "ctype": TalkroomCmd.SendMsg,
        "proto_type": ProtoType.JSON,
        "body": text,
    }
    if opts.gateway:
        url, servers = opts.gateway, dict(opts.pids)
    else:
        center = cluster.center()
        rooms = [cluster.talkroom(i) for i in range(opts.rooms)]
        gw = cluster.gateway({"auth": (Stype.Auth, [center]), "talkroom": (Stype.TalkRoom, rooms)})
        url = gateway_urls(gw)[0]
        servers = _pids({"gateway": gw, "center": center}) | {
            f"talkroom-{i}": r.pid for i, r in enumerate(rooms)
        }
    probe(url, Stype.TalkRoom)
    phases: list[dict[str, Any]] = []
    if opts.baseline:
        relay, becho = cluster.baseline()
        phases.append(
            run_phase(
                "baseline",
                _specs(
                    opts, tcp_url(relay), opts.clients, opts.procs, login=False, rate=0.0, **common
                ),
                {"baseline-relay": relay.pid, "baseline-echo": becho.pid},
                console=console,
                unit="round trips",
                duration=opts.duration,
            )
        )
    peak = run_phase(
        "talkroom-peak" if not opts.rate else "talkroom",
        _specs(
            opts,
            url,
            opts.clients,
            opts.procs,
            login=True,
            enter=True,
            rate=opts.rate / _nworkers(opts.procs, opts.clients),
            **common,
        ),
        servers,
        console=console,
        unit="round trips",
        duration=opts.duration,
    )
    phases.append(peak)
    half: dict[str, Any] | None = None
    if opts.half and not opts.rate and peak["throughput_per_s"] > 0:
        rate = peak["throughput_per_s"] / 2
        half = run_phase(
            "talkroom-half",
            _specs(
                opts,
                url,
                opts.clients,
                opts.procs,
                login=True,
                enter=True,
                rate=rate / _nworkers(opts.procs, opts.clients),
                **common,
            ),
            servers,
            console=console,
            unit="round trips",
            duration=opts.duration,
        )
        phases.append(half)
    base = next((p for p in phases if p["name"] == "baseline"), None)
    ratio = (
        round(peak["throughput_per_s"] / base["throughput_per_s"], 3)
        if base and base["throughput_per_s"]
        else None
    )
    p99_half = half["latency_ms"]["p99"] if half else None
    summary = {
        "talkroom_round_trips_per_s": peak["throughput_per_s"],
        "baseline_round_trips_per_s": base["throughput_per_s"] if base else None,
        "ratio_talkroom_to_baseline": ratio,
        "half_rate_target_per_s": round(peak["throughput_per_s"] / 2, 1) if half else None,
        "half_rate_achieved_per_s": half["throughput_per_s"] if half else None,
        "half_rate_p99_ms": p99_half,
        "pushes_per_round_trip": round(peak["pushes_received"] / peak["count"], 3)
        if peak["count"]
        else None,
        "rooms": opts.rooms,
    }
    return {
        "phases": phases,
        "summary": summary,
        "targets": [
            _target(
                "talkroom ≥ 0.5× baseline", "≥ 0.5", ratio, None if ratio is None else ratio >= 0.5
            ),
            _target(
                "talkroom p99 at half of peak",
                "< 5 ms",
                p99_half,
                None if p99_half is None else p99_half < 5,
            ),
        ],
    }


# ------------------------------------------------------------------------------ fanout
def scenario_fanout(opts: Options, cluster: Cluster, console: Console, out: Path) -> dict[str, Any]:
    if opts.members < 2:
        raise BenchError("fanout needs at least 2 members (one sender, one receiver)")
    if opts.gateway:
        url, servers = opts.gateway, dict(opts.pids)
    else:
        center = cluster.center()
        room = cluster.talkroom()
        gw = cluster.gateway({"auth": (Stype.Auth, [center]), "talkroom": (Stype.TalkRoom, [room])})
        url = gateway_urls(gw)[0]
        servers = _pids({"gateway": gw, "talkroom": room, "center": center})
    probe(url, Stype.TalkRoom)
    receivers = opts.members - 1
    common = {
        "login": True,
        "enter": True,
        "room_size": opts.members,
        "payload": opts.payload,
        "concurrency": opts.concurrency,
    }
    specs = _specs(opts, url, receivers, opts.procs, job="fanout-recv", client="raw", **common)
    sender = _specs(
        opts,
        url,
        1,
        1,
        job="fanout-send",
        client="sdk",
        inflight=opts.inflight,
        rate=opts.rate,
        **common,
    )
    phase = run_phase(
        "fanout",
        [*specs, *sender],
        servers,
        console=console,
        unit="deliveries",
        duration=opts.duration,
        senders={len(specs)},
        setup_timeout=opts.setup_timeout,
    )
    expected = phase["messages_sent"] * receivers
    rate = phase["throughput_per_s"]
    summary = {
        "members": opts.members,
        "receivers": receivers,
        "messages_sent": phase["messages_sent"],
        "deliveries": phase["count"],
        "deliveries_expected": expected,
        "delivered_fraction": round(phase["count"] / expected, 4) if expected else None,
        "deliveries_per_s": rate,
        "delivery_latency_p99_ms": phase["latency_ms"]["p99"],
        "sender_rtt_p99_ms": phase["sender_rtt_ms"]["p99"],
        "setup_s": phase["setup_s"],
    }
    met = (rate >= 100_000) if opts.members >= 1000 else None
    return {
        "phases": [phase],
        "summary": summary,
        "targets": [
            _target("fanout ≥ 100,000 deliveries/s, 1,000 members", "≥ 100000/s", rate, met)
        ],
    }


# --------------------------------------------------------------------------------- ccu
def scenario_ccu(opts: Options, cluster: Cluster, console: Console, out: Path) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the servers inherit this; the workers raise their own
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    dbs = _dbs(opts, default="sqlite")
    if len(dbs) != 1:
        raise BenchError("ccu runs against one database: --db sqlite or --db mariadb")
    with _database(dbs[0], opts, console) as db_url:
        if opts.gateway_ws:
            ws_url, servers = opts.gateway_ws, dict(opts.pids)
            probe_url = opts.gateway
        else:
            center = cluster.center(db_url)
            gw = cluster.gateway({"auth": (Stype.Auth, [center])})
            probe_url, ws_url = gateway_urls(gw)
            servers = _pids({"gateway": gw, "center": center})
            db_pid = local_db_pid() if dbs[0] == "mariadb" else None
            if db_pid is not None:
                servers["mariadbd"] = db_pid
        if probe_url:
            probe(probe_url)
        procs = max(opts.procs, math.ceil(opts.connections / (hard - 200)))
        k = opts.source_addrs or max(1, math.ceil(opts.connections / 25_000))
        addrs = tuple(f"127.0.0.{i + 1}" for i in range(k)) if k > 1 else ()
        specs = _specs(
            opts,
            ws_url,
            opts.connections,
            procs,
            job="ccu",
            client="sdk",
            hb_interval=opts.hb_interval,
            local_addrs=addrs,
            concurrency=opts.concurrency,
        )
        phase = run_phase(
            "ccu",
            specs,
            servers,
            console=console,
            unit="heartbeats",
            duration=opts.duration,
            ramp=True,
            setup_timeout=opts.setup_timeout,
        )
    gw_stats = phase["servers"].get("gateway", {})
    reached = phase["connections_logged_in"]
    still_open = phase["connections_reached"]
    before = gw_stats.get("rss_kib_before", 0)
    idle = gw_stats.get("rss_kib_ramped", 0)
    per_conn_idle = round((idle - before) / reached, 2) if reached and idle else None
    after = gw_stats.get("rss_kib_after", 0)
    per_conn_hold = round((after - before) / still_open, 2) if still_open and after else None
    summary = {
        "connections_target": opts.connections,
        "connections_logged_in": reached,
        "connections_open_after_hold": still_open,
        "ramp_s": phase["ramp_s"],
        "ramp_logins_per_s": round(reached / phase["ramp_s"], 1) if phase["ramp_s"] else None,
        "gateway_rss_kib_before": before or None,
        "gateway_rss_kib_after_ramp": idle or None,
        "gateway_rss_kib_after_hold": after or None,
        "rss_kib_per_idle_connection": per_conn_idle,
        "rss_kib_per_connection_after_hold": per_conn_hold,
        "heartbeats_per_s": phase["throughput_per_s"],
        "errors": phase["errors"],
        "error_kinds": phase["error_kinds"],
        "worker_processes": procs,
        "source_addresses": max(1, len(addrs)),
        "rlimit_nofile": [soft, hard],
        "database": dbs[0],
    }
    return {
        "phases": [phase],
        "summary": summary,
        "targets": [
            _target("ccu 20,000 logged-in connections", "≥ 20000", reached, reached >= 20_000),
            _target(
                "RSS per idle connection",
                "≤ 10 KiB",
                per_conn_idle,
                None if per_conn_idle is None else per_conn_idle <= 10,
            ),
        ],
    }


# ------------------------------------------------------------------------------- login
def _dbs(opts: Options, default: str) -> list[str]:
    db = opts.db if opts.db != "both" or default == "both" else default
    return ["sqlite", "mariadb"] if db == "both" else [db]


@contextlib.contextmanager
def _database(db: str, opts: Options, console: Console) -> Iterator[str | None]:
    if db == "mariadb" and not opts.gateway:
        with mariadb_database(opts.mysql_url, console) as url:
            yield url
    else:
        yield None


def scenario_login(opts: Options, cluster: Cluster, console: Console, out: Path) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    dbs = ["external"] if opts.gateway else _dbs(opts, default="both")
    for db in dbs:
        with _database(db, opts, console) as db_url:
            if opts.gateway:
                url, servers, started = opts.gateway, dict(opts.pids), []
            else:
                center = cluster.center(db_url)
                gw = cluster.gateway({"auth": (Stype.Auth, [center])})
                url = gateway_urls(gw)[0]
                servers = _pids({"gateway": gw, "center": center})
                started = [gw, center]
                db_pid = local_db_pid() if db == "mariadb" else None
                if db_pid is not None:
                    servers["mariadbd"] = db_pid
            try:
                probe(url)
                phases.append(
                    run_phase(
                        db,
                        _specs(
                            opts,
                            url,
                            opts.concurrency * opts.procs,
                            opts.procs,
                            job="login",
                            client="sdk",
                        ),
                        servers,
                        console=console,
                        unit="logins",
                        duration=opts.duration,
                    )
                )
            finally:
                cluster.stop(*started)
    summary = {f"{p['name']}_logins_per_s": p["throughput_per_s"] for p in phases}
    for p in phases:
        summary[f"{p['name']}_login_p99_ms"] = p["latency_ms"]["p99"]
        center_stats = p["servers"].get("center")
        if center_stats:
            summary[f"{p['name']}_center_cpu_s_per_1k"] = center_stats["cpu_s_per_1k"]
    maria = next((p for p in phases if p["name"] == "mariadb"), None)
    rate = maria["throughput_per_s"] if maria else None
    return {
        "phases": phases,
        "summary": summary,
        "targets": [
            _target(
                "login ≥ 1,000 new guests/s on MariaDB",
                "≥ 1000/s",
                rate,
                None if rate is None else rate >= 1000,
            )
        ],
    }


SCENARIOS: dict[str, Callable[[Options, Cluster, Console, Path], dict[str, Any]]] = {
    "relay": scenario_relay,
    "talkroom": scenario_talkroom,
    "fanout": scenario_fanout,
    "ccu": scenario_ccu,
    "login": scenario_login,
}


def run_scenario(opts: Options, out: Path, console: Console) -> dict[str, Any]:
    """Run one scenario end to end; returns the full report (also written by the caller)."""
    from netbus.bench.report import machine_info

    machine = machine_info()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(opts, logs, console)
    t0 = time.monotonic()
    try:
        body = SCENARIOS[opts.scenario](opts, cluster, console, out)
    finally:
        cluster.close()
    params = {k: v for k, v in vars(opts).items() if k != "pids"}
    params["pids"] = {k: int(v) for k, v in opts.pids.items()}
    return {
        "scenario": opts.scenario,
        "machine": machine,
        "params": params,
        "wall_s": round(time.monotonic() - t0, 1),
        "note": (
            "Load generator and servers share this machine's "
            f"{os.cpu_count()} CPUs; numbers are noisy, compare ratios and CPU per message."
        ),
        **body,
    }
