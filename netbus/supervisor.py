"""`netbus up`: run every role as its own process, restart crashed ones, stop them together.

Each child prints one line ``NETBUS-READY <role> <json>`` on stdout when it is serving; the
supervisor waits for all of them before it prints where to connect. A child that exits while
the cluster runs is logged with its exit code and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field

import orjson

__all__ = ["READY_PREFIX", "RoleProcess", "Supervisor", "announce_ready"]

log = logging.getLogger("netbus.up")

READY_PREFIX = "NETBUS-READY"


def announce_ready(role: str, **info: object) -> None:
    """Tell a supervising process (or a test) that this role is serving."""
    sys.stdout.write(f"{READY_PREFIX} {role} {orjson.dumps(info).decode()}\n")
    sys.stdout.flush()


@dataclass
class RoleProcess:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    info: dict[str, object] = field(default_factory=dict)


class Supervisor:
    def __init__(self, roles: list[RoleProcess], *, stop_timeout: float = 10.0) -> None:
        self.roles = roles
        self.stop_timeout = stop_timeout
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for role in self.roles:
            self._tasks.append(asyncio.create_task(self._keep(role), name=f"up:{role.name}"))
            await role.ready.wait()  # start in order: services before the gateway

    async def _keep(self, role: RoleProcess) -> None:
        delay = 0.5
        while not self._stopping:
            role.ready.clear()
            env = {**os.environ, **role.env}
            role.proc = await asyncio.create_subprocess_exec(
                *role.argv, stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True
            )
            if self._stopping:  # stop() began while this child was being spawned
                role.proc.send_signal(signal.SIGTERM)
            reader = asyncio.create_task(self._read(role, role.proc))
            code = await role.proc.wait()
            await reader
            if self._stopping:
                return
            role.restarts += 1
            log.error("%s exited with code %s; restarting in %.1fs", role.name, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _read(self, role: RoleProcess, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(READY_PREFIX + " "):
                _, _name, payload = line.split(" ", 2)
                role.info = orjson.loads(payload)
                role.ready.set()
            else:
                print(f"[{role.name}] {line}", flush=True)

    def _running(self) -> list[asyncio.subprocess.Process]:
        return [r.proc for r in reversed(self.roles) if r.proc and r.proc.returncode is None]

    async def stop(self) -> None:
        """SIGTERM the children in reverse start order, each after the one before it has gone
        (the gateway drains its clients while its services still answer), then SIGKILL what
        outlives the deadline."""
        self._stopping = True
        try:
            async with asyncio.timeout(self.stop_timeout):
                for proc in self._running():  # reverse start order
                    proc.send_signal(signal.SIGTERM)
                    await proc.wait()
        except TimeoutError:
            pass
        for proc in self._running():
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_timeout):
                # Again until none is left: a child whose spawn was under way when stop()
                # began appears later (and _keep has sent it SIGTERM).
                while running := self._running():
                    for proc in running:
                        await proc.wait()
        except TimeoutError:
            for proc in self._running():
                log.warning("pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
