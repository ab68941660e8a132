"""`netbus up`: run every role as its own process, restart crashed ones, stop them together.

Each child prints one line ``NETBUS-READY <role> <json>`` on stdout when it is serving; the
supervisor waits for all of them before it prints where to connect. A child that exits while
the cluster runs is logged with its exit code and restarted with backoff, unless it keeps
failing right after its start (`RestartPolicy`): then it is marked failed with one message
(the last line it wrote to stderr included), and ``netbus up`` exits non-zero if the cluster
never became ready.

Children never outlive the supervisor, however it ends (docs/operations.md §1):

* the **lifeline**: a pipe whose write end only the supervisor holds. Each child gets the read
  end (``NETBUS_LIFELINE_FD``) and watches it on its event loop; when the supervisor is gone
  (exit, crash, SIGKILL) the kernel closes the write end, the child reads end-of-file and
  shuts down as on SIGTERM. Works on every POSIX system.
* on Linux, also the **parent-death signal**: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, set by the
  child itself at start (`arm_parent_death_signal`, which then checks the lifeline in case the
  supervisor died first).

The supervisor itself stops the cluster cleanly on SIGINT, SIGTERM, SIGHUP (the terminal was
closed) and SIGPIPE, and when its output breaks (``netbus up | tee log`` after ``tee`` is
gone): `Output` turns the broken pipe into a stop instead of an exception that would kill
the supervisor and orphan its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import select
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TextIO

import orjson

__all__ = [
    "LIFELINE_ENV",
    "READY_PREFIX",
    "Output",
    "RestartPolicy",
    "RestartTracker",
    "RoleFailed",
    "RoleProcess",
    "RoleState",
    "Supervisor",
    "announce_ready",
    "arm_parent_death_signal",
    "watch_lifeline",
]

log = logging.getLogger("netbus.up")

READY_PREFIX = "NETBUS-READY"
#: environment variable that tells a child which file descriptor is its lifeline
LIFELINE_ENV = "NETBUS_LIFELINE_FD"
_LINE_LIMIT = 1024 * 1024  #: longest child output line relayed as one line
_PR_SET_PDEATHSIG = 1  #: <linux/prctl.h>


def announce_ready(role: str, **info: object) -> None:
    """Tell a supervising process (or a test) that this role is serving."""
    sys.stdout.write(f"{READY_PREFIX} {role} {orjson.dumps(info).decode()}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- restart policy
@dataclass(frozen=True)
class RestartPolicy:
    """When a role that keeps exiting is given up on.

    A run is a *quick failure* when the child exits before it said READY or less than
    ``stable_after`` seconds after its start. ``max_quick_failures`` of them in a row mark
    the role failed; a run that lasted marks a fresh start (the backoff resets too).
    """

    max_quick_failures: int = 3
    stable_after: float = 10.0
    first_delay: float = 0.5
    max_delay: float = 5.0


class RestartTracker:
    """The restart decisions for one role: pure, the caller passes what happened."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.quick_failures = 0
        self._delay = policy.first_delay

    def exited(self, *, ran_for: float, was_ready: bool) -> float | None:
        """Seconds to wait before the next start, or None: give up on the role."""
        policy = self.policy
        if was_ready and ran_for >= policy.stable_after:
            self.quick_failures = 0
            self._delay = policy.first_delay
        else:
            self.quick_failures += 1
            if self.quick_failures >= policy.max_quick_failures:
                return None
        delay, self._delay = self._delay, min(self._delay * 2, policy.max_delay)
        return delay


class RoleState(enum.Enum):
    STARTING = "starting"  #: spawned, no READY line yet
    READY = "ready"  #: serving
    BACKOFF = "backoff"  #: exited; waiting to be started again
    FAILED = "failed"  #: given up on (`RestartPolicy`)
    STOPPED = "stopped"  #: stopped by the supervisor


class RoleFailed(Exception):
    """A role was given up on before the cluster became ready."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(reason)
        self.role = role


@dataclass
class RoleProcess:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    state: RoleState = RoleState.STARTING
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str = ""  #: why the role was given up on
    info: dict[str, object] = field(default_factory=dict)
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))


# ------------------------------------------------------------------------------ output
class Output:
    """Lines to a stream (the supervisor's stdout or stderr) that survive its reader.

    When the stream breaks (a closed pipe, a hung-up terminal) the file descriptor is pointed
    at /dev/null, so nothing later (nor the flush at exit) fails again, and ``on_broken``
    is called once: the supervisor stops the cluster rather than die and orphan it.
    """

    def __init__(self, stream: TextIO, on_broken: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.on_broken = on_broken
        self.broken = False

    def line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # EPIPE, EIO, or closed
            self._broke()

    def _broke(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        if self.on_broken is not None:
            self.on_broken()


# ---------------------------------------------------------------------- child side
def _lifeline_fd() -> int | None:
    value = os.environ.get(LIFELINE_ENV, "")
    return int(value) if value.isdigit() else None


def arm_parent_death_signal() -> bool:
    """In a child of ``netbus up``: SIGTERM this process when the supervisor dies (Linux).

    Returns False if the supervisor is already gone (it died before this call): the caller
    should not start. Does nothing, and returns True, outside ``netbus up``.
    """
    fd = _lifeline_fd()
    if fd is None:
        return True
    os.set_inheritable(fd, False)  # for this process only, not for anything it starts
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    try:
        readable, _, _ = select.select([fd], [], [], 0)
        return not (readable and os.read(fd, 1) == b"")
    except OSError:
        return False


def watch_lifeline() -> asyncio.Future[None] | None:
    """A future that completes when the supervisor is gone (its end of the lifeline
    closed); None outside ``netbus up``. Call from the running event loop."""
    fd = _lifeline_fd()
    if fd is None:
        return None
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of file: nobody holds the write end any more
            loop.remove_reader(fd)
            if not gone.done():
                gone.set_result(None)

    loop.add_reader(fd, readable)
    gone.add_done_callback(lambda _: loop.remove_reader(fd))
    return gone


# -------------------------------------------------------------------------- supervisor
class Supervisor:
    """Starts ``roles`` in order, keeps them running, stops them in reverse order.

    Args:
        out, err: where child stdout lines (prefixed ``[role]``) and child stderr (as is)
            go; default the process's stdout and stderr.
        clock: monotonic seconds, for how long a run lasted.
    """

    def __init__(
        self,
        roles: list[RoleProcess],
        *,
        stop_timeout: float = 10.0,
        policy: RestartPolicy | None = None,
        out: Output | None = None,
        err: Output | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roles = roles
        self.stop_timeout = stop_timeout
        self.policy = policy or RestartPolicy()
        self.out = out or Output(sys.stdout)
        self.err = err or Output(sys.stderr)
        self.clock = clock
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        # The lifeline: children inherit the read end; the write end stays here only.
        self._lifeline_r, self._lifeline_w = os.pipe()

    @property
    def failed_roles(self) -> list[RoleProcess]:
        return [role for role in self.roles if role.state is RoleState.FAILED]

    async def start(self) -> None:
        """Start the roles in order (services before the gateway), each once the one before
        is ready.

        Raises:
            RoleFailed: a role was given up on before it became ready.
        """
        for role in self.roles:
            self._tasks.append(asyncio.create_task(self._keep(role), name=f"up:{role.name}"))
            waits = [
                asyncio.ensure_future(role.ready.wait()),
                asyncio.ensure_future(role.failed.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            if role.state is RoleState.FAILED:
                raise RoleFailed(role.name, role.failure)

    async def _keep(self, role: RoleProcess) -> None:
        tracker = RestartTracker(self.policy)
        fd = self._lifeline_r
        while not self._stopping:
            role.ready.clear()
            role.state = RoleState.STARTING
            started = self.clock()
            role.proc = await asyncio.create_subprocess_exec(
                *role.argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **role.env, LIFELINE_ENV: str(fd)},
                pass_fds=(fd,),
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
            if self._stopping:  # stop() began while this child was being spawned
                role.proc.send_signal(signal.SIGTERM)
            readers = asyncio.gather(
                self._read_out(role, role.proc), self._read_err(role, role.proc)
            )
            code = await role.proc.wait()
            await readers
            if self._stopping:
                role.state = RoleState.STOPPED
                return
            delay = tracker.exited(ran_for=self.clock() - started, was_ready=role.ready.is_set())
            if delay is None:
                self._give_up(role, code, tracker.quick_failures)
                return
            role.restarts += 1
            role.state = RoleState.BACKOFF
            log.error("%s exited with code %s; restarting in %.1fs", role.name, code, delay)
            await asyncio.sleep(delay)

    def _give_up(self, role: RoleProcess, code: int, failures: int) -> None:
        last = role.last_errors[-1] if role.last_errors else "(nothing on stderr)"
        role.failure = (
            f"{role.name} failed {failures} times in a row within "
            f"{self.policy.stable_after:g}s of starting (last exit code {code}): {last}"
        )
        role.state = RoleState.FAILED
        log.error("%s; not restarting it", role.failure)
        role.failed.set()

    async def _read_out(self, role: RoleProcess, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in _lines(proc.stdout):
            if line.startswith(READY_PREFIX + " "):
                _, _name, payload = line.split(" ", 2)
                role.info = orjson.loads(payload)
                role.state = RoleState.READY
                role.ready.set()
            else:
                self.out.line(f"[{role.name}] {line}")

    async def _read_err(self, role: RoleProcess, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in _lines(proc.stderr):
            if line.strip():
                role.last_errors.append(line.strip())
            self.err.line(line)

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
        for fd in (self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines of a child's output; an overlong line comes in pieces."""
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
            if not raw:
                return
        except asyncio.LimitOverrunError as exc:
            raw = await stream.readexactly(exc.consumed)
        yield raw.decode(errors="replace").rstrip("\r\n")
