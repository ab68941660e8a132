"""``netbus chat``: a terminal chat client on the client library.

Lines you type are sent as messages; ``/who`` lists the room, ``/exit`` leaves it, ``/enter``
comes back, ``/quit`` (or Ctrl-D) ends the program.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from netbus.client.client import Client, Push
from netbus.client.guest import load_or_create_key
from netbus.errors import NetbusError
from netbus.protocol.control import GatewayCmd
from netbus.protocol.header import ProtoType
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom import TalkroomService
from netbus.roles.talkroom.protocol import TalkroomCmd
from netbus.service import client_codecs

__all__ = ["run_chat"]


def _say(text: str) -> None:
    print(text, flush=True)


def _describe_push(push: Push, members: dict[str, int]) -> str | None:
    body: Any = push.body
    if push.stype == Stype.TalkRoom:
        if push.ctype == TalkroomCmd.UserArrived:
            members[body["uname"]] = body["usex"]
            return f"* {body['uname']} joined"
        if push.ctype == TalkroomCmd.UserExit:
            members.pop(body["uname"], None)
            return f"* {body['uname']} left"
        if push.ctype == TalkroomCmd.UserMsg:
            return f"<{body['0']}> {body['2']}"
    if push.stype == Stype.Auth and push.ctype == AuthCmd.RELOGIN:
        return "! this account logged in elsewhere; disconnected"
    if push.stype == Stype.Gateway:
        if push.ctype == GatewayCmd.SERVICE_UNAVAILABLE:
            return "! the chat service is unavailable; messages are not delivered"
        if push.ctype == GatewayCmd.SERVICE_AVAILABLE:
            return "! the chat service is back; type /enter to rejoin"
        if push.ctype == GatewayCmd.SHUTDOWN:
            return f"! the server is shutting down: {body.get('reason', '')}"
    return None


async def _print_pushes(client: Client, members: dict[str, int]) -> None:
    while True:
        push = await client.pushes.get()
        text = _describe_push(push, members)
        if text:
            _say(text)


async def run_chat(
    url: str, *, key_file: str, name: str | None, sex: int, buf: bool, login: bool
) -> None:
    proto = ProtoType.BUF if buf else ProtoType.JSON
    try:
        client = await Client.connect(url, proto_type=proto, codecs=client_codecs(TalkroomService))
    except (OSError, TimeoutError) as exc:
        _say(f"cannot connect to {url}: {exc}")
        return
    members: dict[str, int] = {}
    printer = asyncio.create_task(_print_pushes(client, members))
    try:
        if login:
            reply = await client.guest_login(load_or_create_key(key_file))
            if reply.get("status") != 1:
                _say(f"login refused (status {reply.get('status')})")
                return
            _say(f"logged in as {reply['unick']} (uid {reply['uid']})")
            name = name or reply["unick"]
        uname = (name or "player")[:32]
        status = await client.enter(uname, sex)
        _say(f"entered the room as {uname}" if status == 1 else f"enter failed: {status}")
        await _input_loop(client, uname, sex, members)
    except (NetbusError, ConnectionError) as exc:
        _say(f"! {exc}")
    finally:
        printer.cancel()
        await client.close()


async def _input_loop(client: Client, uname: str, sex: int, members: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.create_task(client.closed.wait())
    while True:
        line_task = loop.run_in_executor(None, sys.stdin.readline)
        done, _ = await asyncio.wait({line_task, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed in done:
            _say(f"! connection closed: {client.close_reason}")
            return
        line = line_task.result()
        if not line or line.strip() == "/quit":
            return
        text = line.rstrip("\n")
        if text == "/who":
            _say("in the room: " + (", ".join([uname, *members]) or "nobody"))
        elif text == "/exit":
            _say(f"exit: {await client.exit()}")
            members.clear()
        elif text == "/enter":
            _say(f"enter: {await client.enter(uname, sex)}")
        elif text:
            reply = await client.send_msg(text)
            if reply.get("0") != 1:
                _say(f"! not sent (status {reply.get('0')}); /enter first?")
