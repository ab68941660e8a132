"""The ``netbus up`` supervisor and the ``netbus chat`` terminal client, as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from netbus.protocol import GatewayCmd
from netbus.protocol.framing import FrameDecoder
from netbus.protocol.header import unpack_header
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from tests.helpers import cmd_buf, frame, json_body

from .cluster import Cluster, Proc, child_env, children_of, live_pids_with_arg, processes
from .conftest import ready_check
from .helpers import (
    BUF,
    ISSUED_KEYS,
    JSON,
    Clients,
    leaked_secrets,
    new_key,
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


def chat_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "netbus", "chat", *args]


@pytest.mark.process
async def test_netbus_chat_exits_when_the_server_closes(
    cluster: Cluster, clients: Clients, tmp_path: Path
) -> None:
    """Issue 10 item 23: `netbus chat --config` finds the config's gateway, and when the
    server ends the connection (here a RELOGIN kick) it says why and exits at once, although
    its standard input is still open and nobody presses Enter."""
    key = new_key()
    key_file = tmp_path / "keys" / "guest_key"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n")
    name = new_name("cli")
    argv = chat_argv("--config", str(cluster.config_path), "--key-file", str(key_file))
    chat = Proc("chat", [*argv, "--name", name], cwd=tmp_path, stdin=b"", keep_stdin=True)
    try:
        await chat.await_line(lambda line: line == f"entered the room as {name}", stream="out")
        await clients.login(cluster.tcp_url, JSON, key)  # same account: the chat is kicked
        code = await asyncio.to_thread(chat.wait, 10.0)
    finally:
        if chat.running:
            chat.kill()
    out = chat.output("out")
    assert code == 1, chat.text()
    assert "! this account logged in elsewhere; disconnected" in out, chat.text()
    assert any(line.startswith("! connection closed") for line in out), chat.text()


#: C0 (but the newline ending each line), DEL, C1, line separators, bidi overrides
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


async def hostile_gateway(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, said: dict[str, str]
) -> None:
    """A server that speaks the protocol like an old or compromised gateway: it logs the
    client in, lets it enter, pushes text full of terminal escapes, then closes."""

    def send(stype: int, ctype: int, value: object) -> None:
        body = json_body(orjson.dumps({"0": value}))
        writer.write(frame(cmd_buf(stype, ctype, JSON, body)))

    decoder = FrameDecoder()
    try:
        while data := await reader.read(65536):
            for cmd in decoder.feed(data):
                stype, ctype = unpack_header(cmd)[:2]
                if (stype, ctype) == (Stype.Auth, AuthCmd.GUEST_LOGIN):
                    account = {"status": 1, "uid": 7, "unick": said["unick"], "usex": 0}
                    send(stype, ctype, {**account, "uface": 0, "uvip": 0, "guest_key": "x"})
                elif (stype, ctype) == (Stype.TalkRoom, TalkroomCmd.Enter):
                    send(stype, ctype, 1)
                    send(stype, TalkroomCmd.UserArrived, {"uname": said["uname"], "usex": 1})
                    msg = {"0": said["uname"], "1": 1, "2": said["msg"]}
                    send(stype, TalkroomCmd.UserMsg, msg)
                    send(Stype.Gateway, GatewayCmd.SHUTDOWN, {"reason": said["reason"]})
                    await writer.drain()
                    return
    finally:
        writer.close()


@pytest.mark.process
async def test_netbus_chat_shows_control_characters_escaped(tmp_path: Path) -> None:
    """Issue 10 item 8: whatever a server sends (an old one, or one that lets anything
    through), `netbus chat` never writes a control character to the terminal: ESC, NUL, DEL,
    C1 and the rest are shown as escapes, so no window title, screen clear, OSC 52 clipboard
    write or forged line gets through."""
    said = {
        "unick": "\x1b]0;owned\x07guest",
        "uname": "eve\x1b[2J\x9b2J\u202e",
        "msg": "\x1b]52;c;aGVsbG8=\x07\x00\r<admin> forged line\x7f\x85\n<mod> another",
        "reason": "\x1bc reset",
    }
    server = await asyncio.start_server(lambda r, w: hostile_gateway(r, w, said), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    argv = chat_argv("--url", f"tcp://127.0.0.1:{port}", "--key-file", str(tmp_path / "key"))
    chat = Proc("chat", [*argv, "--name", "me"], cwd=tmp_path, stdin=b"", keep_stdin=True)
    try:
        code = await asyncio.to_thread(chat.wait, 20.0)
    finally:
        if chat.running:
            chat.kill()
        server.close()
        await server.wait_closed()
    out = chat.output("out")
    assert code == 1, chat.text()
    assert not [line for line in out if RAW_CONTROL.search(line)], out
    text = "\n".join(out)
    assert "logged in as \\x1b]0;owned\\x07guest (uid 7)" in text, text
    assert "* eve\\x1b[2J\\x9b2J\\u202e joined" in text, text
    forged = "\\x1b]52;c;aGVsbG8=\\x07\\x00\\x0d<admin> forged line\\x7f\\x85\\x0a<mod> another"
    assert f"<eve\\x1b[2J\\x9b2J\\u202e> {forged}" in text, text
    assert "! the server is shutting down: \\x1bc reset" in text, text


def up_layout(tmp_path: Path) -> Cluster:
    """Free ports and their config for a `netbus up` (storage under its ``.netbus/``)."""
    layout = Cluster(tmp_path / "up")
    layout.config_path.write_text(layout.config_text(storage=False))
    return layout


def up_argv(layout: Cluster) -> list[str]:
    return [sys.executable, "-m", "netbus", "up", "--config", str(layout.config_path)]


async def started_up(layout: Cluster) -> tuple[Proc, dict[str, int]]:
    """`netbus up` running and ready; its role children by name."""
    up = Proc("up", up_argv(layout), cwd=layout.workdir)
    try:
        await up.await_line(lambda line: line == "netbus up: cluster ready", timeout=UP_TIMEOUT)
        roles = role_children(up.pid)
        assert roles.keys() == {"center", "talkroom", "gateway", "web"}, roles
    except BaseException:
        up.kill()
        raise
    return up, roles


def bound_ports(layout: Cluster) -> list[int]:
    """The cluster's ports that something still listens on."""
    taken = []
    for port in layout.ports.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


async def cluster_gone(layout: Cluster, roles: dict[str, int], timeout: float = 30.0) -> None:
    """Wait until no role process of ``layout`` is left and no port is bound; kill and fail
    otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {name: pid for name, pid in roles.items() if pid in processes()}
        leftovers = live_pids_with_arg(str(layout.config_path))
        leftovers += [pid for pid in alive.values() if pid not in leftovers]
        if not leftovers and not bound_ports(layout):
            return
        if time.monotonic() > deadline:
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(
                f"roles outlived `netbus up`: {alive or leftovers}; ports still bound: "
                f"{bound_ports(layout)}"
            )
        await asyncio.sleep(0.1)  # processes exiting: nothing to await but /proc


@pytest.mark.process
async def test_up_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Issue 10 item 21: `netbus up` SIGKILLed (nothing of it runs any more) still takes
    every role with it: each sees its lifeline close and shuts down, freeing its ports."""
    layout = up_layout(tmp_path)
    up, roles = await started_up(layout)
    assert up.kill() == -signal.SIGKILL
    await cluster_gone(layout, roles)


@pytest.mark.process
async def test_up_stops_cleanly_on_sighup_and_its_chat_command_works(tmp_path: Path) -> None:
    """Issue 10 items 21 and 23: the chat command in the banner works for this config, and
    closing the terminal (SIGHUP) stops the whole cluster cleanly."""
    layout = up_layout(tmp_path)
    up, roles = await started_up(layout)
    try:
        line = next(line for line in up.output("out") if line.strip().startswith("chat "))
        argv = shlex.split(line.strip().removeprefix("chat").strip())
        assert argv[-2:] == ["--config", str(layout.config_path)], argv
        key_file = tmp_path / "keys" / "guest_key"
        chat = Proc(
            "chat",
            [*argv, "--key-file", str(key_file), "--name", "banner"],
            cwd=tmp_path,
            stdin=b"hello from the banner\n/quit\n",
        )
        assert await asyncio.to_thread(chat.wait, 20.0) == 0, chat.text()
        ISSUED_KEYS.add(key_file.read_text().strip())
        assert "entered the room as banner" in chat.output("out"), chat.text()
        up.signal(signal.SIGHUP)
        code = await asyncio.to_thread(up.wait, UP_TIMEOUT)
    finally:
        if up.running:
            up.kill()
    assert code == 0, up.text()
    assert "netbus up: stopping" in up.output("out")
    await cluster_gone(layout, roles)
    assert not leaked_secrets(up.output()), "a guest key was logged"


@pytest.mark.process
async def test_up_stops_cleanly_when_its_stdout_pipe_breaks(tmp_path: Path) -> None:
    """Issue 10 item 21: `netbus up | tee log`, then Ctrl-C: tee is gone, so every write to
    stdout fails (EPIPE). `up` must still stop the cluster in order and exit, not die on
    the broken pipe and orphan the roles."""
    layout = up_layout(tmp_path)
    popen, errors = spawn_piped(up_argv(layout), cwd=layout.workdir)
    assert popen.stdout is not None
    roles: dict[str, int] = {}
    try:
        assert await asyncio.to_thread(read_until_ready, popen.stdout), b"".join(errors)
        roles = role_children(popen.pid)
        popen.stdout.close()  # the reader (tee) is gone
        popen.send_signal(signal.SIGINT)  # Ctrl-C
        code = await asyncio.to_thread(popen.wait, UP_TIMEOUT)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    log = b"".join(errors).decode(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log, log
    await cluster_gone(layout, roles)


def spawn_piped(argv: list[str], *, cwd: Path) -> tuple[subprocess.Popen[bytes], list[bytes]]:
    """A process whose stdout the test reads itself; its stderr lines are collected."""
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    errors: list[bytes] = []
    assert popen.stderr is not None
    threading.Thread(target=errors.extend, args=(popen.stderr,), daemon=True).start()
    return popen, errors


def read_until_ready(stream: Any) -> bool:
    """Read `netbus up`'s stdout until its banner is complete; False at end of file."""
    return any(raw.strip().startswith(b"Ctrl-C") for raw in iter(stream.readline, b""))


@pytest.mark.process
async def test_up_gives_up_on_a_role_that_cannot_start(tmp_path: Path) -> None:
    """Issue 10 item 22: the gateway's port is taken, so it exits at once each time. After a
    few quick failures `up` says so once, with the reason, stops the other roles and exits
    non-zero (it used to restart the gateway every few seconds forever)."""
    layout = up_layout(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", layout.ports["tcp"]))
        squatter.listen()
        up = Proc("up", up_argv(layout), cwd=layout.workdir)
        try:
            code = await asyncio.to_thread(up.wait, 60.0)
        finally:
            leftovers = live_pids_with_arg(str(layout.config_path))
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    assert code == 1, up.text()
    out = up.output()
    assert "netbus up: cluster ready" not in out
    failed = [line for line in out if "gateway failed 3 times in a row" in line]
    assert len(failed) == 2, up.text()  # the log line, and `up`'s own last word
    assert "address already in use" in failed[0].lower(), failed
    assert sum("gateway exited with code 1; restarting" in line for line in out) == 2
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
