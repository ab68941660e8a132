"""``netbus chat``: a terminal chat client on the client library.

Lines you type are sent as messages; ``/who`` lists the room, ``/exit`` leaves it, ``/enter``
comes back, ``/quit`` (or Ctrl-D) ends the program. When the connection ends (a kick, a server
shutdown, an idle timeout) the program says why and exits at once: standard input is read
from the event loop, never by a thread that would hold the exit until Enter is pressed.

Everything printed passes through `printable`: text from other users (and from the server)
can never put a control character on the terminal, so no escape sequence from the network
(window titles, screen clears, OSC 52 clipboard writes, forged lines) reaches it raw.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

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

__all__ = ["StdinLines", "printable", "run_chat"]

#: C0, DEL and C1 controls, line/paragraph separators and the bidi embedding, override and
#: isolate marks (which can make a line display as something else).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (ESC -> ``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


def _say(text: str, out: TextIO | None = None) -> None:
    print(printable(text), file=out or sys.stdout, flush=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _describe_push(push: Push, members: dict[str, int]) -> str | None:
    """One line for a push, or None. Bodies from an old or hostile server may be malformed."""
    body: Any = push.body
    fields = body if isinstance(body, dict) else {}
    if push.stype == Stype.TalkRoom:
        uname = _text(fields.get("uname"))
        if push.ctype == TalkroomCmd.UserArrived:
            members[uname] = fields.get("usex", 0)
            return f"* {uname} joined"
        if push.ctype == TalkroomCmd.UserExit:
            members.pop(uname, None)
            return f"* {uname} left"
        if push.ctype == TalkroomCmd.UserMsg:
            return f"<{_text(fields.get('0'))}> {_text(fields.get('2'))}"
    if push.stype == Stype.Auth and push.ctype == AuthCmd.RELOGIN:
        return "! this account logged in elsewhere; disconnected"
    if push.stype == Stype.Gateway:
        if push.ctype == GatewayCmd.SERVICE_UNAVAILABLE:
            return "! the chat service is unavailable; messages are not delivered"
        if push.ctype == GatewayCmd.SERVICE_AVAILABLE:
            return "! the chat service is back; type /enter to rejoin"
        if push.ctype == GatewayCmd.SHUTDOWN:
            return f"! the server is shutting down: {_text(fields.get('reason', ''))}"
    return None


async def _print_pushes(client: Client, members: dict[str, int]) -> None:
    while True:
        push = await client.pushes.get()
        text = _describe_push(push, members)
        if text:
            _say(text)


class StdinLines:
    """Lines of a file descriptor (default: standard input), read by the running loop.

    A terminal or pipe is watched with ``loop.add_reader`` and read only when readable, so
    nothing blocks and nothing is left running when the program ends. Files and
    ``/dev/null`` (which the selector cannot watch, and which never block) are read directly.
    Use as an async context manager; `readline` returns ``None`` at end of input.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._watching = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> StdinLines:
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_reader(self.fd, self._on_readable)
            self._watching = True
        except (PermissionError, NotImplementedError):
            self._watching = False  # a regular file or /dev/null: reads never block
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._watching and self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._watching = False

    def _read_chunk(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the terminal went away
        if data:
            self._buffer += self._decoder.decode(data)
        else:
            self._buffer += self._decoder.decode(b"", final=True)
            self._eof = True

    def _on_readable(self) -> None:
        self._read_chunk()
        if self._eof and self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._watching = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def readline(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        while "\n" not in self._buffer and not self._eof:
            if not self._watching:
                self._read_chunk()
                continue
            assert self._loop is not None, "use StdinLines as an async context manager"
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            return line
        if self._buffer:
            line, self._buffer = self._buffer, ""
            return line
        return None


async def run_chat(
    url: str,
    *,
    key_file: str,
    name: str | None,
    sex: int,
    buf: bool,
    login: bool,
    lines: Callable[[], StdinLines] = StdinLines,
) -> int:
    """Chat until ``/quit``, end of input or the connection closes; the exit status.

    Returns 0 after ``/quit`` or end of input, 1 when the connection could not be made, the
    login was refused, or the server closed the connection.
    """
    proto = ProtoType.BUF if buf else ProtoType.JSON
    try:
        client = await Client.connect(url, proto_type=proto, codecs=client_codecs(TalkroomService))
    except (OSError, TimeoutError, NetbusError) as exc:
        _say(f"cannot connect to {url}: {exc}")
        return 1
    members: dict[str, int] = {}
    printer = asyncio.create_task(_print_pushes(client, members))
    try:
        if login:
            reply = await client.guest_login(load_or_create_key(key_file))
            if reply.get("status") != 1:
                _say(f"login refused (status {reply.get('status')})")
                return 1
            _say(f"logged in as {_text(reply.get('unick'))} (uid {reply.get('uid')})")
            name = name or _text(reply.get("unick"))
        uname = (name or "player")[:32]
        status = await client.enter(uname, sex)
        _say(f"entered the room as {uname}" if status == 1 else f"enter failed: {status}")
        async with lines() as stdin:
            return await _input_loop(client, stdin, uname, sex, members)
    except (NetbusError, ConnectionError) as exc:
        _say(f"! {exc}")
        return 1
    finally:
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)
        await client.close()


async def _input_loop(
    client: Client, stdin: StdinLines, uname: str, sex: int, members: dict[str, int]
) -> int:
    closed = asyncio.create_task(client.closed.wait())
    try:
        while True:
            line_task = asyncio.create_task(stdin.readline())
            done, _ = await asyncio.wait({line_task, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                line_task.cancel()
                while not client.pushes.empty():  # what arrived just before the close
                    text = _describe_push(client.pushes.get_nowait(), members)
                    if text:
                        _say(text)
                _say(f"! connection closed: {client.close_reason}")
                return 1
            line = line_task.result()
            if line is None or line.strip() == "/quit":
                return 0
            await _command(client, line, uname, sex, members)
    finally:
        closed.cancel()


async def _command(
    client: Client, text: str, uname: str, sex: int, members: dict[str, int]
) -> None:
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
