"""Client registries and JSON declarations built from services (no transcription by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import netbus.roles.web
from netbus.protocol import CONTROL_CODECS, I16, CodecRegistry, Direction, ProtoType
from netbus.roles.center.auth import AuthService
from netbus.roles.talkroom import TalkroomService
from netbus.service import Service, User, client_codecs, command, declaration
from netbus.service.declare import load_object, render

C = Direction.TO_CLIENT


class Clashing(Service):
    stype = 1  # the talkroom's stype, with another Enter layout

    @command(1, buf=I16, reply_buf=I16)
    def enter(self, user: User, body: Any) -> Any:
        return body


def test_client_codecs_hold_the_control_channel_and_the_services() -> None:
    codecs = client_codecs(TalkroomService, AuthService)
    assert codecs.only([0]) == CONTROL_CODECS
    assert codecs.buf_codec(1, 5, C) is TalkroomService.commands[5].reply_buf
    assert codecs.buf_codec(2, 2, C) is not None  # RELOGIN's empty layout, from `pushes`
    assert codecs.buf_codec(2, 1, C) is None  # GUEST_LOGIN is JSON only
    data = codecs.encode(1, 6, {"0": "a", "1": 1, "2": "m"}, proto_type=ProtoType.BUF, direction=C)
    assert data[10:] == b"\x01\x00a\x01\x00\x01\x00m"
    # Instances work too, with the stype they were given.
    room = TalkroomService()
    room.stype = 16
    assert {key[0] for key in client_codecs(room).only([16])} == {16}


def test_two_services_that_disagree_cannot_share_a_client() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        client_codecs(TalkroomService, Clashing)


def test_declaration_leaves_out_the_control_channel_and_round_trips() -> None:
    doc = declaration(TalkroomService, AuthService)
    assert {row["stype"] for row in doc["layouts"]} == {1, 2}
    rebuilt = CONTROL_CODECS | CodecRegistry.from_declaration(json.loads(json.dumps(doc)))
    assert rebuilt == client_codecs(TalkroomService, AuthService)


def test_declare_command_prints_the_declaration() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netbus.service.declare", "netbus.roles.talkroom:TalkroomService"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == declaration(TalkroomService)
    assert out.stderr == ""


def test_load_object() -> None:
    assert load_object("netbus.roles.talkroom:TalkroomService") is TalkroomService
    with pytest.raises(ValueError, match=r"package\.module:attr"):
        load_object("netbus.roles.talkroom")
    with pytest.raises(AttributeError):
        load_object("netbus.roles.talkroom:Nope")


def test_the_browser_client_ships_the_built_in_declaration() -> None:
    """netbus.js builds its default registry from builtin_codecs.js; it must be exactly what
    the services declare (regenerate it with the command in its first line)."""
    shipped = Path(netbus.roles.web.__file__).parent / "static" / "builtin_codecs.js"
    specs = ["netbus.roles.talkroom:TalkroomService", "netbus.roles.center.auth:AuthService"]
    assert shipped.read_text() == render(specs, js_name="BUILTIN_DECLARATION")
