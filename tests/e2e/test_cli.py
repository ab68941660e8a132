"""The ``netbus up`` supervisor and the ``netbus chat`` terminal client, as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest

from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus

from .cluster import Cluster, Proc, children_of, live_pids_with_arg, processes
from .conftest import ready_check
from .helpers import (
    BUF,
    ISSUED_KEYS,
    JSON,
    Clients,
    leaked_secrets,
    new_name,
    next_gateway_notice,
    settled,
    talk,
)

UP_TIMEOUT = 30.0

pytestmark = pytest.mark.one_client_loop


def role_children(pid: int) -> dict[str, int]:
    """role name -> pid of the ``python -m netbus <role>`` children of ``pid``."""
    roles = {}
    for child, argv in children_of(pid).items():
        if argv[1:3] == ["-m", "netbus"] and len(argv) > 3:
            roles[argv[3]] = child
    return roles


async def test_netbus_up(tmp_path: Path, clients: Clients) -> None:
    workdir = tmp_path / "up"
    layout = Cluster(workdir)  # free ports and their config; `netbus up` runs the roles
    layout.config_path.write_text(layout.config_text(storage=False))  # storage: .netbus/
    up = Proc(
        "up",
        [sys.executable, "-m", "netbus", "up", "--config", str(layout.config_path)],
        cwd=workdir,
    )
    roles: dict[str, int] = {}
    try:
        await up.await_line(lambda line: line == "netbus up: cluster ready", timeout=UP_TIMEOUT)
        assert (workdir / ".netbus" / "pepper").is_file()
        assert list((workdir / ".netbus").glob("netbus.db*"))
        roles = role_children(up.pid)
        assert {"center", "talkroom", "gateway"} <= roles.keys(), roles
        await ready_check(layout)

        a_name, b_name = new_name("a"), new_name("b")
        a = await clients.member(layout.tcp_url, a_name, JSON)
        b = await clients.member(layout.ws_url, b_name, BUF, usex=1)
        assert await a.send_msg("via up") == {"0": 1, "1": a_name, "2": 0, "3": "via up"}
        assert await b.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg) is not None

        # A crashed role is logged and restarted; clients are told when it is back.
        mark = len(up.lines)
        os.kill(roles["talkroom"], signal.SIGKILL)
        await up.await_line(
            lambda line: "talkroom exited with code -9" in line, start=mark, timeout=UP_TIMEOUT
        )
        for client in (a, b):
            await next_gateway_notice(
                client, GatewayCmd.SERVICE_AVAILABLE, Stype.TalkRoom, timeout=UP_TIMEOUT
            )
        restarted = role_children(up.pid)
        assert restarted.get("talkroom") not in (None, roles["talkroom"]), restarted
        assert {k: v for k, v in restarted.items() if k != "talkroom"} == {
            k: v for k, v in roles.items() if k != "talkroom"
        }
        roles = {**roles, "talkroom2": restarted["talkroom"]}
        assert await a.enter(a_name, 0) == TalkroomStatus.OK
        assert await b.enter(b_name, 1) == TalkroomStatus.OK
        assert await b.send_msg("after") == {"0": 1, "1": b_name, "2": 1, "3": "after"}
        a_pushes, _ = await settled(a, b)
        assert talk(a_pushes) == Counter(
            [("arrived", b_name, 1, JSON), ("msg", b_name, 1, "after", JSON)]
        )
    finally:
        up.signal(signal.SIGTERM)
        code = await asyncio.to_thread(up.wait, UP_TIMEOUT)
        leftovers = live_pids_with_arg(str(layout.config_path))
        if leftovers:  # never leave them running, whatever the outcome
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    assert code == 0, up.text()
    assert "netbus up: stopping" in up.output("out")
    assert not leftovers, f"children outlived `netbus up`: {leftovers}\n{up.text()}"
    assert not leaked_secrets(up.output()), "a guest key was logged"
    alive = {name: pid for name, pid in roles.items() if pid in processes()}
    assert not alive, f"role processes still there: {alive}"


async def chat_cli(url: str, key_file: Path, name: str, lines: list[str], *args: str) -> str:
    """Run ``netbus chat`` with ``lines`` then ``/quit`` on stdin; its stdout."""
    argv = [sys.executable, "-m", "netbus", "chat", "--url", url, "--key-file", str(key_file)]
    proc = Proc(
        "chat",
        [*argv, "--name", name, *args],
        cwd=key_file.parent.parent,
        stdin="".join(f"{line}\n" for line in [*lines, "/quit"]).encode(),
    )
    code = await asyncio.to_thread(proc.wait, 20.0)
    assert code == 0, proc.text()
    out = "\n".join(proc.output("out"))
    assert f"entered the room as {name}" in out, proc.text()
    assert not [line for line in out.splitlines() if line.startswith("!")], proc.text()
    return out


async def test_netbus_chat(cluster: Cluster, clients: Clients, tmp_path: Path) -> None:
    observer = await clients.member(cluster.tcp_url, new_name("obs"))
    key_file = tmp_path / "keys" / "guest_key"
    name = new_name("cli")
    assert not key_file.exists()
    uids, keys = [], []
    for url, args, msg in [
        (cluster.tcp_url, (), "hello"),
        (cluster.ws_url, ("--buf",), "and again over ws 🎲"),
    ]:
        out = await chat_cli(url, key_file, name, [msg], *args)
        found = re.search(r"^logged in as .+ \(uid (\d+)\)$", out, re.M)
        assert found, out
        uids.append(int(found.group(1)))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        keys.append(key_file.read_text().strip())
        ISSUED_KEYS.add(keys[-1])
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", keys[-1])
        # The observer saw the CLI user come, speak and (on /quit) leave, once each.
        expected = [
            ("arrived", name, 0, JSON),
            ("msg", name, 0, msg, JSON),
            ("exit", name, 0, JSON),
        ]
        for ctype, item in zip((3, 6, 4), expected, strict=True):
            push = await observer.next_push(Stype.TalkRoom, timeout=10)
            assert push.ctype == ctype and talk([push]) == Counter([item]), push
        (rest,) = await settled(observer)
        assert rest == []
    assert keys[0] == keys[1]  # the key file was created once, then reused
    assert uids[0] == uids[1] > 0  # so both runs were the same account


async def test_netbus_up_stopped_while_a_role_cannot_start(tmp_path: Path) -> None:
    """The gateway's port is taken, so the gateway exits at once and is restarted again and
    again and `up` never gets ready. SIGTERM then must still stop every child: `up` exits 0
    and leaves no role behind (it used to die of the signal and orphan the services)."""
    workdir = tmp_path / "up"
    layout = Cluster(workdir)
    layout.config_path.write_text(layout.config_text(storage=False))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", layout.ports["tcp"]))
        squatter.listen()
        up = Proc(
            "up",
            [sys.executable, "-m", "netbus", "up", "--config", str(layout.config_path)],
            cwd=workdir,
        )
        try:
            await up.await_line(
                lambda line: "gateway exited with code 1" in line, timeout=UP_TIMEOUT
            )
            roles = role_children(up.pid)
            assert {"center", "talkroom"} <= roles.keys(), roles
        finally:
            up.signal(signal.SIGTERM)
            code = await asyncio.to_thread(up.wait, UP_TIMEOUT)
            leftovers = live_pids_with_arg(str(layout.config_path))
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    assert code == 0, up.text()
    assert "netbus up: cluster ready" not in up.output("out")
    assert "netbus up: stopping" in up.output("out")
    assert not leftovers, f"children outlived `netbus up`: {leftovers}\n{up.text()}"


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guest_chat.py"


async def test_python_client_example(cluster: Cluster, clients: Clients, tmp_path: Path) -> None:
    """examples/guest_chat.py logs in as a guest (key kept in a file) and chats."""
    observer = await clients.member(cluster.tcp_url, new_name("obs"))
    key_file = tmp_path / "example_key"
    name = new_name("ex")
    argv = [sys.executable, str(EXAMPLE), "hi from the example", "--url", cluster.ws_url]
    argv += ["--key-file", str(key_file), "--name", name, "--listen", "0.2"]
    uids = []
    for _ in range(2):
        proc = Proc("example", argv, cwd=tmp_path)
        assert await asyncio.to_thread(proc.wait, 20.0) == 0, proc.text()
        out = "\n".join(proc.output("out"))
        found = re.search(r"^logged in: uid (\d+)", out, re.M)
        assert found and "sent: status 1" in out, proc.text()
        uids.append(int(found.group(1)))
        ISSUED_KEYS.add(key_file.read_text().strip())
        push = await observer.next_push(Stype.TalkRoom, TalkroomCmd.UserMsg, timeout=10)
        assert push.body == {"0": name, "1": 0, "2": "hi from the example"}
    assert uids[0] == uids[1] > 0  # the key file made it the same account twice
