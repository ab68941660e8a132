"""Real netbus processes for the end-to-end tests: no mocks, no in-process servers.

`Cluster` writes a TOML config with free ports, a temp SQLite database (or a MariaDB URL)
and a pepper file, and runs ``python -m netbus center|talkroom|gateway`` as subprocesses.
Readiness is the ``NETBUS-READY <role> <json>`` line each role prints on stdout: the helper
waits for that line (a condition variable fed by a reader thread), never for a fixed time.

Every process started here is tracked and killed at interpreter exit as a last resort, so a
failing or interrupted test never leaves a role running.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
READY_PREFIX = "NETBUS-READY"
ROLES = ("center", "talkroom", "gateway")
START_TIMEOUT = 20.0  #: seconds for a role to print its READY line
STOP_TIMEOUT = 10.0  #: seconds for a role to exit after SIGTERM

_live: set[subprocess.Popen[bytes]] = set()


def _admin_sections() -> tuple[str, ...]:
    """Config sections that have an admin HTTP port in this version of netbus."""
    from netbus.config import Settings

    return tuple(
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is not None
        and "admin_port" in getattr(field.annotation, "model_fields", {})
    )


ADMIN = _admin_sections()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def child_env() -> dict[str, str]:
    """This environment minus ``NETBUS_*`` overrides, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (bound, read, closed).

    They are drawn below the kernel's ephemeral range: a port that bind(0) handed out is one
    that any process on the machine may get from its own bind(0) or connect() while a role
    that owns it is down for a restart (seen: a restarted gateway failing with EADDRINUSE
    while other test suites ran). Outside that range only explicit binds can collide.
    """
    low = _ephemeral_low()
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            candidate = random.randrange(20000, low) if low > 21000 else 0
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


class Proc:
    """A subprocess whose stdout and stderr lines are collected by two reader threads."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        stdin: Any = None,
        keep_stdin: bool = False,
    ) -> None:
        """``stdin`` bytes are written to the process; its stdin is closed after them
        unless ``keep_stdin`` (then it stays open, like a terminal nobody types in)."""
        self.name = name
        self.argv = list(argv)
        self.lines: list[tuple[str, str]] = []  #: (stream, line) in arrival order
        self._cond = threading.Condition()
        self._open_streams = 2
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=child_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _live.add(self.popen)
        self.pid = self.popen.pid
        self._threads = [
            threading.Thread(target=self._read, args=(s, stream), daemon=True)
            for s, stream in (("out", self.popen.stdout), ("err", self.popen.stderr))
        ]
        for thread in self._threads:
            thread.start()
        if stdin is not None:
            assert self.popen.stdin is not None
            self.popen.stdin.write(stdin)
            self.popen.stdin.flush()
            if not keep_stdin:
                self.popen.stdin.close()

    def _read(self, stream_name: str, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append((stream_name, raw.decode(errors="replace").rstrip("\n")))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    # ------------------------------------------------------------------------ output
    def output(self, stream: str | None = None) -> list[str]:
        with self._cond:
            return [line for s, line in self.lines if stream is None or s == stream]

    def text(self, tail: int = 60) -> str:
        lines = [f"[{self.name} {s}] {line}" for s, line in list(self.lines)[-tail:]]
        return "\n".join(lines) or f"[{self.name}] (no output)"

    def wait_line(
        self,
        match: Callable[[str], bool],
        *,
        stream: str | None = None,
        start: int = 0,
        timeout: float = START_TIMEOUT,
    ) -> str:
        """The first line (from index ``start``) that ``match``es; waits for it to be printed.

        Raises:
            AssertionError: the process closed its output first, or the deadline passed.
        """
        deadline = time.monotonic() + timeout
        checked = start
        with self._cond:
            while True:
                for s, line in self.lines[checked:]:
                    if (stream is None or s == stream) and match(line):
                        return line
                checked = max(checked, len(self.lines))
                if self._open_streams == 0:
                    raise AssertionError(
                        f"{self.name} exited (code {self.popen.wait()}) before the expected "
                        f"line\n{self.text()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: expected line not printed in {timeout}s\n{self.text()}"
                    )
                self._cond.wait(remaining)

    async def await_line(self, match: Callable[[str], bool], **kwargs: Any) -> str:
        return await asyncio.to_thread(self.wait_line, match, **kwargs)

    # ----------------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Exit code (negative: killed by that signal); SIGKILL if the deadline passes.

        Raises:
            AssertionError: it had to be killed.
        """
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(
                f"{self.name} (pid {self.pid}) did not exit within {timeout}s; killed\n"
                f"{self.text()}"
            ) from None
        finally:
            for thread in self._threads:
                thread.join(5)
            if self.popen.stdin is not None and not self.popen.stdin.closed:
                self.popen.stdin.close()
        _live.discard(self.popen)
        return code

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.wait()

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


class Cluster:
    """center + talkroom + gateway as real processes on free ports.

    Args:
        workdir: holds the config, the SQLite file, the pepper and the roles' cwd.
        database_url: default a SQLite file in ``workdir``; a MariaDB URL works too.
        loop: the roles' ``--loop``; "auto" (uvloop where installed) is the production default.
    """

    def __init__(
        self, workdir: Path, *, database_url: str | None = None, loop: str = "auto"
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.loop = loop
        names = ("center", "talkroom", "tcp", "ws", "web", *(f"admin-{s}" for s in ADMIN))
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.database_url = database_url or f"sqlite+aiosqlite:///{workdir / 'netbus.db'}"
        self.pepper_file = workdir / "pepper"
        self.config_path = workdir / "netbus.toml"
        self.config_path.write_text(self.config_text())
        self.procs: dict[str, Proc] = {}
        self.history: list[Proc] = []  #: every process ever started, for logs and cleanup
        self.probe_key = "e2e-probe-" + os.urandom(8).hex()

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['tcp']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['ws']}/ws"

    def url(self, kind: str) -> str:
        return {"tcp": self.tcp_url, "ws": self.ws_url}[kind]

    def config_text(self, *, storage: bool = True) -> str:
        """The cluster's TOML; ``storage=False`` leaves the database and pepper at defaults."""
        p = self.ports
        q = json.dumps  # a JSON string is a valid TOML basic string for these values
        text = f"""\
[log]
level = "INFO"

[gateway]
id = "e2e"

[[gateway.listeners]]
kind = "tcp"
host = "127.0.0.1"
port = {p["tcp"]}

[[gateway.listeners]]
kind = "ws"
host = "127.0.0.1"
port = {p["ws"]}

[gateway.services.talkroom]
stype = 1
addresses = ["127.0.0.1:{p["talkroom"]}"]

[gateway.services.auth]
stype = 2
addresses = ["127.0.0.1:{p["center"]}"]

[center]
host = "127.0.0.1"
port = {p["center"]}
"""
        if storage:
            text += f"database_url = {q(self.database_url)}\n"
            text += f"pepper_file = {q(str(self.pepper_file))}\n"
        text += f"""
[talkroom]
host = "127.0.0.1"
port = {p["talkroom"]}

[web]
host = "127.0.0.1"
port = {p["web"]}
gateway_url = "{self.ws_url}"

[gateway.limits]
login_exempt_loopback = true  # every test client logs in from 127.0.0.1
"""
        # Admin HTTP listeners (where this version has them) must not collide either.
        for section in ADMIN:
            text = text.replace(
                f"[{section}]\n", f"[{section}]\nadmin_port = {p[f'admin-{section}']}\n", 1
            )
        return text

    def argv(self, role: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "netbus",
            role,
            "--config",
            str(self.config_path),
            "--loop",
            self.loop,
        ]

    # ------------------------------------------------------------------------ roles
    def spawn(self, role: str) -> Proc:
        """Start ``role`` (it must not be running); does not wait for it."""
        current = self.procs.get(role)
        assert current is None or not current.running, f"{role} is already running"
        proc = Proc(role, self.argv(role), cwd=self.workdir)
        self.procs[role] = proc
        self.history.append(proc)
        return proc

    def wait_ready(self, role: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Block until ``role`` prints its READY line; its JSON info."""
        prefix = f"{READY_PREFIX} {role} "
        line = self.procs[role].wait_line(
            lambda text: text.startswith(prefix), stream="out", timeout=timeout
        )
        return json.loads(line[len(prefix) :])  # type: ignore[no-any-return]

    def start(self) -> None:
        """Services first (in parallel), then the gateway; each awaited by its READY line."""
        try:
            self.spawn("center")
            self.spawn("talkroom")
            assert self.wait_ready("center")["port"] == self.ports["center"]
            assert self.wait_ready("talkroom")["port"] == self.ports["talkroom"]
            self.spawn("gateway")
            info = self.wait_ready("gateway")
            assert info["ports"] == [self.ports["tcp"], self.ports["ws"]], info
        except BaseException:
            self.stop(check=False)
            raise

    async def start_role(self, role: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Start ``role`` again and wait (without blocking the event loop) for READY."""
        self.spawn(role)
        return await asyncio.to_thread(self.wait_ready, role, timeout)

    async def kill(self, role: str) -> int:
        """SIGKILL ``role``; its exit code (-9)."""
        return await asyncio.to_thread(self.procs[role].kill)

    async def terminate(self, role: str) -> int:
        """SIGTERM ``role`` and wait for it to exit; its exit code."""
        return await asyncio.to_thread(self.procs[role].terminate)

    async def restart(self, role: str, *, sig: int = signal.SIGTERM) -> dict[str, Any]:
        proc = self.procs[role]
        proc.signal(sig)
        await asyncio.to_thread(proc.wait)
        return await self.start_role(role)

    def stop(self, *, check: bool = True) -> dict[str, int]:
        """SIGTERM every running role (gateway first), wait, SIGKILL what hangs.

        Raises:
            AssertionError: with ``check``, a role did not exit cleanly (code 0) on SIGTERM.
        """
        codes: dict[str, int] = {}
        errors: list[str] = []
        running = [p for p in reversed(self.history) if p.running]
        for proc in running:
            proc.signal(signal.SIGTERM)
        for proc in running:
            try:
                codes[proc.name] = proc.wait()
            except AssertionError as exc:
                errors.append(str(exc))
        for proc in self.history:  # a process that exited earlier: reap it too
            if proc.popen in _live:
                proc.kill()
        if check:
            bad = {name: code for name, code in codes.items() if code != 0}
            if bad:
                errors.append(f"roles did not exit cleanly on SIGTERM: {bad}\n{self.logs()}")
            if errors:
                raise AssertionError("\n".join(errors))
        return codes

    def logs(self, tail: int = 40) -> str:
        return "\n".join(proc.text(tail) for proc in self.history)


# ---------------------------------------------------------------------------- /proc
def processes() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (ppid, state, argv) of every process visible in /proc (Linux)."""
    out: dict[int, tuple[int, str, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")"
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (
            int(fields[1]),
            fields[0],
            [a.decode(errors="replace") for a in argv if a],
        )
    return out


def live_pids_with_arg(arg: str) -> list[int]:
    """Processes (not zombies) whose argv contains ``arg``: leftovers of a cluster."""
    return [
        pid
        for pid, (_ppid, state, argv) in processes().items()
        if state != "Z" and arg in argv and pid != os.getpid()
    ]


def children_of(pid: int) -> dict[int, list[str]]:
    """Live direct children of ``pid``: pid -> argv."""
    return {
        child: argv
        for child, (ppid, state, argv) in processes().items()
        if ppid == pid and state != "Z"
    }
