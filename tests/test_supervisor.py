"""netbus/supervisor.py: the restart policy, output that survives its reader, the lifeline."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netbus.supervisor import (
    LIFELINE_ENV,
    Output,
    RestartPolicy,
    RestartTracker,
    arm_parent_death_signal,
    watch_lifeline,
)

ROOT = Path(__file__).resolve().parents[1]


def test_quick_failures_give_up_after_the_limit() -> None:
    tracker = RestartTracker(RestartPolicy(max_quick_failures=3, stable_after=10.0))
    assert tracker.exited(ran_for=0.2, was_ready=False) == 0.5
    assert tracker.exited(ran_for=0.2, was_ready=False) == 1.0
    assert tracker.exited(ran_for=0.2, was_ready=False) is None  # third in a row: give up
    assert tracker.quick_failures == 3


def test_a_run_that_lasted_starts_the_count_again() -> None:
    tracker = RestartTracker(RestartPolicy(max_quick_failures=3, stable_after=10.0))
    assert tracker.exited(ran_for=1.0, was_ready=False) == 0.5
    assert tracker.exited(ran_for=9.9, was_ready=True) == 1.0  # ready, but not for long
    assert tracker.exited(ran_for=3600.0, was_ready=True) == 0.5  # stable: count and backoff reset
    assert tracker.quick_failures == 0
    assert tracker.exited(ran_for=30.0, was_ready=False) == 1.0  # never ready: quick
    assert tracker.exited(ran_for=0.1, was_ready=False) == 2.0
    assert tracker.exited(ran_for=0.1, was_ready=False) is None


def test_backoff_is_capped() -> None:
    policy = RestartPolicy(max_quick_failures=100, first_delay=0.5, max_delay=5.0)
    tracker = RestartTracker(policy)
    delays = [tracker.exited(ran_for=0, was_ready=False) for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_output_survives_a_broken_pipe() -> None:
    read_fd, write_fd = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_fd, "w"), line_buffering=False)
    broken: list[int] = []
    out = Output(stream, on_broken=lambda: broken.append(1))
    out.line("first")
    assert os.read(read_fd, 100) == b"first\n"
    os.close(read_fd)  # the reader (say, `tee`) is gone
    out.line("second")  # EPIPE: no exception, the owner is told
    out.line("third")
    assert broken == [1] and out.broken
    stream.write("later writes go to /dev/null\n")
    stream.flush()
    stream.close()


async def test_lifeline_ends_when_the_write_end_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(LIFELINE_ENV, str(read_fd))
    try:
        gone = watch_lifeline()
        assert gone is not None
        await asyncio.sleep(0)
        assert not gone.done()
        os.close(write_fd)  # the supervisor is gone, however it died
        await asyncio.wait_for(gone, 5)
    finally:
        os.close(read_fd)


async def test_no_lifeline_outside_netbus_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIFELINE_ENV, raising=False)
    assert watch_lifeline() is None
    assert arm_parent_death_signal() is True


CHILD = """
import ctypes, sys
from netbus.supervisor import arm_parent_death_signal
ok = arm_parent_death_signal()
sig = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
print(ok, sig.value)
"""


@pytest.mark.process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
@pytest.mark.parametrize("parent_alive", [True, False])
def test_child_arms_the_parent_death_signal(parent_alive: bool) -> None:
    """A child of `netbus up` asks for SIGTERM when its parent dies, and refuses to start
    if the supervisor is gone already (its lifeline at end of file)."""
    read_fd, write_fd = os.pipe()
    if not parent_alive:
        os.close(write_fd)
    env = {**os.environ, LIFELINE_ENV: str(read_fd), "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env,
            pass_fds=(read_fd,),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        os.close(read_fd)
        if parent_alive:
            os.close(write_fd)
    assert result.stdout.split() == [str(parent_alive), "15"], result.stderr
