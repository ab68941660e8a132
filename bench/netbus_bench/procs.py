"""Server processes for the benchmarks: start roles as subprocesses, read /proc, stop them.

Every role is started as ``python -m netbus <role> --config <temp toml>`` (or the echo service
/ the bare baseline, modules of this package) with port 0 everywhere, and announces its real
ports on stdout with ``NETBUS-READY <role> <json>``; nothing here guesses free ports. Only
loopback addresses are ever used, and `check_loopback` refuses any other target given on the
command line.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from netbus.supervisor import READY_PREFIX

__all__ = [
    "BenchError",
    "ServerProc",
    "check_loopback",
    "child_env",
    "cpu_seconds",
    "python_argv",
    "rss_kib",
    "toml_document",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a worker failed to set up)."""


# ------------------------------------------------------------------------------ /proc
def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (``/proc/<pid>/stat``), 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0.0
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- loopback
def check_loopback(target: str) -> str:
    """Return ``target`` (a URL or ``host[:port]``) if its host is loopback, else raise.

    Names are resolved and every address they resolve to must be loopback (127.0.0.0/8, ::1).

    Raises:
        ValueError: the host is not a loopback address.
    """
    host = urlsplit(target).hostname if "://" in target else target.rpartition(":")[0]
    host = (host or target).strip("[]")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from None
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise ValueError(
                f"refusing non-loopback target {target!r} ({address}): "
                "netbus bench only loads servers on this machine"
            )
    return target


# ----------------------------------------------------------------------------- config
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # IntEnum members too
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_document(doc: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer for the role configs (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in doc.items():
        if isinstance(value, dict) or (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tables:
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines.append(toml_document(value, name + "."))
        else:
            for item in value:
                lines.append(f"\n[[{name}]]")
                lines.append(toml_document(item, name + "."))
    return "\n".join(line for line in lines if line)


def import_roots() -> list[str]:
    """The directories ``netbus`` and ``netbus_bench`` were imported from.

    Child processes get them first on ``PYTHONPATH``, so the servers and workers run the same
    code as this process (a checkout's, when the tests put it on ``sys.path``).
    """
    import netbus

    import netbus_bench

    roots = [str(Path(m.__file__ or "").resolve().parents[1]) for m in (netbus, netbus_bench)]
    return list(dict.fromkeys(roots))


def child_env() -> dict[str, str]:
    """The environment for role processes: no stray ``NETBUS_*`` overrides, same code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*import_roots(), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# ---------------------------------------------------------------------------- servers
@dataclass
class ServerProc:
    """One server subprocess, started by `start` and announced by ``NETBUS-READY``."""

    role: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, timeout: float = 30.0) -> ServerProc:
        """Start it and wait for its ready line.

        Raises:
            RuntimeError: it exited or stayed silent for ``timeout`` seconds (log tail shown).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        pending = b""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise BenchError(f"{self.role} not ready in {timeout}s\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.role} exited with {self.proc.returncode}\n{self.log_tail()}"
                    )
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(timeout=5)
                raise BenchError(
                    f"{self.role} exited with {self.proc.returncode}\n{self.log_tail()}"
                )
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if text.startswith(READY_PREFIX + " "):
                    _, _name, payload = text.split(" ", 2)
                    self.info = orjson.loads(payload)
                    return self

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def python_argv(*args: str, profile_to: Path | None = None) -> list[str]:
    """``python [-m cProfile -o F] <args>`` with this interpreter."""
    base = [sys.executable]
    if profile_to is not None:
        base += ["-m", "cProfile", "-o", str(profile_to)]
    return [*base, *args]
