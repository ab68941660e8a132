"""netbus/client/chat.py: what reaches the terminal, and reading standard input on the loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from netbus.client.chat import StdinLines, _describe_push, printable
from netbus.client.client import Push
from netbus.protocol import GatewayCmd
from netbus.roles import Stype
from netbus.roles.talkroom.protocol import TalkroomCmd


def test_printable_escapes_every_control_character() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        assert printable(f"a{chr(code)}b") == f"a\\x{code:02x}b"
    for char in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert printable(char) == f"\\u{ord(char):04x}"
    text = "héllo 遊客 🎮 \xa0 <b>&amp;</b> back\\slash"
    assert printable(text) == text
    assert printable("\x1b]52;c;aGk=\x07") == "\\x1b]52;c;aGk=\\x07"


def test_pushes_with_malformed_bodies_are_described_not_raised() -> None:
    members: dict[str, int] = {}
    T = Stype.TalkRoom
    for ctype in (TalkroomCmd.UserArrived, TalkroomCmd.UserExit, TalkroomCmd.UserMsg):
        for body in (None, 5, "x", [], {"uname": ["x"]}, {"0": {"a": 1}}):
            assert isinstance(_describe_push(Push(T, ctype, body, 1), members), str)
    shutdown = Push(Stype.Gateway, GatewayCmd.SHUTDOWN, None, 1)
    assert _describe_push(shutdown, members) == "! the server is shutting down: "


async def test_stdin_lines_from_a_pipe() -> None:
    read_fd, write_fd = os.pipe()
    try:
        async with StdinLines(read_fd) as lines:
            os.write(write_fd, b"one\ntw")
            assert await lines.readline() == "one"
            pending = asyncio.ensure_future(lines.readline())
            await asyncio.sleep(0)
            assert not pending.done()  # waits on the loop, no thread
            os.write(write_fd, "o\nthree 遊".encode()[:-1])  # a character split across reads
            assert await pending == "two"
            os.write(write_fd, "遊".encode()[-1:] + b"\nlast")
            assert await lines.readline() == "three 遊"
            os.close(write_fd)
            write_fd = -1
            assert await lines.readline() == "last"  # no newline before the end
            assert await lines.readline() is None
            assert await lines.readline() is None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


async def test_stdin_lines_from_a_file_and_dev_null(tmp_path: Path) -> None:
    path = tmp_path / "input"
    path.write_bytes(b"a\n\nb\n")
    for name, expected in ((str(path), ["a", "", "b"]), (os.devnull, [])):
        fd = os.open(name, os.O_RDONLY)
        try:
            async with StdinLines(fd) as lines:
                got = []
                while (line := await lines.readline()) is not None:
                    got.append(line)
        finally:
            os.close(fd)
        assert got == expected


@pytest.mark.parametrize("data", [b"\xff\xfe bad utf-8\n"])
async def test_stdin_lines_replace_invalid_utf8(data: bytes) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    try:
        async with StdinLines(read_fd) as lines:
            assert await lines.readline() == "\ufffd\ufffd bad utf-8"
    finally:
        os.close(read_fd)
