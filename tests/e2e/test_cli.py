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

import orjson
import pytest

from netbus.protocol.commands import AuthCmd, GatewayCmd, Stype, TalkroomCmd, TalkroomStatus
from netbus.protocol.framing import FrameDecoder
from netbus.protocol.header import unpack_header
from tests.helpers import cmd_buf, frame, json_body

from .cluster import Cluster, Proc, children_of, live_pids_with_arg, processes
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
