"""`ServiceManager` dispatch and error containment, without sockets.

Sessions wrap never-connected `TcpLink`s: dispatch needs a session, not a network, and a
reply on such a link is simply dropped (``send_raw`` returns False).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netbus.metrics import Metrics
from netbus.protocol.commands import USER_DISCONNECT, CodecRegistry
from netbus.protocol.header import read_utag
from netbus.service import Request, Service, ServiceManager
from netbus.session import Session, SessionTable
from netbus.transport.tcp import TcpLink
from tests.helpers import BUF, JSON, cmd_buf, json_body

S = 7  #: the test service's stype


class Recorder(Service):
    """ctype 1: record; 2: raise; 3: async (waits for ``gate``; body "fail" raises)."""

    stype = S
    name = "recorder"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.service_cmds: list[Request] = []
        self.disconnects: list[tuple[Session, int]] = []
        self.lost: list[Session] = []
        self.gate = asyncio.Event()
        self.finished = 0

    def on_player_recv_cmd(self, req: Request) -> Any:
        self.requests.append(req)
        if req.ctype == 2:
            raise RuntimeError("handler bug")
        if req.ctype == 3:
            return self._slow(req)
        return None

    async def _slow(self, req: Request) -> None:
        await self.gate.wait()
        if req.body == "fail":
            raise RuntimeError("async handler bug")
        self.finished += 1

    def on_service_recv_cmd(self, req: Request) -> None:
        self.service_cmds.append(req)

    def on_player_disconnect(self, session: Session, utag: int) -> None:
        self.disconnects.append((session, utag))

    def on_link_lost(self, session: Session) -> None:
        self.lost.append(session)


class Broken(Service):
    stype = 8
    name = "broken"

    def on_player_disconnect(self, session: Session, utag: int) -> None:
        raise RuntimeError("disconnect hook bug")

    def on_link_lost(self, session: Session) -> None:
        raise RuntimeError("link lost hook bug")


class Transfer(Service):
    stype = 9
    name = "transfer"
    is_transfer = True

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def on_player_recv_cmd(self, req: Request) -> None:
        self.requests.append(req)


def packet(ctype: int, value: str = "null", *, stype: int = S, utag: int = 0) -> bytearray:
    return bytearray(cmd_buf(stype, ctype, JSON, json_body(f'{{"0":{value}}}'), utag=utag))


def value(manager: ServiceManager, name: str, **labels: str) -> float:
    return manager.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def rig() -> tuple[ServiceManager, Recorder, Session, Session]:
    recorder = Recorder()
    manager = ServiceManager([recorder, Broken(), Transfer()], metrics=Metrics("test"))
    table = SessionTable()
    player = table.add(TcpLink(None), is_client=True)  # type: ignore[arg-type]
    gateway = table.add(TcpLink(None), is_client=False)  # type: ignore[arg-type]
    return manager, recorder, player, gateway


def test_register_rejects_bad_and_duplicate_stypes() -> None:
    manager = ServiceManager([Recorder()])
    with pytest.raises(ValueError, match="already served"):
        manager.register(Recorder())
    bad = Service()
    with pytest.raises(ValueError, match="no valid stype"):
        manager.register(bad)
    assert [s.name for s in manager.services] == ["recorder"]
    assert manager.get(S) is not None and manager.get(99) is None


def test_direct_player_gets_its_sid_as_utag(rig: Any) -> None:
    manager, recorder, player, gateway = rig
    assert manager.on_player_cmd(player, packet(1, '"hi"', utag=123456))
    req = recorder.requests[-1]
    assert (req.stype, req.ctype, req.body, req.proto_type) == (S, 1, "hi", JSON)
    assert req.utag == player.sid and read_utag(req.cmd_buf) == player.sid
    assert req.user.session is player
    assert player.protos == {S: JSON}
    # Behind a gateway the utag is the gateway's word (the uid).
    assert manager.on_player_cmd(gateway, packet(1, "[1]", utag=123456))
    assert recorder.requests[-1].utag == 123456
    assert recorder.requests[-1].body == [1]


def test_unknown_stype_is_counted_and_dropped(rig: Any) -> None:
    manager, recorder, player, _ = rig
    assert manager.on_player_cmd(player, packet(1, stype=99)) is True  # not malformed
    assert value(manager, "netbus_dropped_total", reason="unknown_stype") == 1
    assert recorder.requests == []
    assert player.stats.protocol_errors == 0


def test_malformed_packets_are_rejected_and_counted(rig: Any) -> None:
    manager, recorder, player, gateway = rig
    assert manager.on_player_cmd(player, bytearray(b"\x07\x00\x01")) is False
    assert manager.on_player_cmd(player, bytearray(cmd_buf(S, 1, 3))) is False
    # No BUF layout for the test service: BUF is malformed for it (§3.3).
    assert manager.on_player_cmd(player, bytearray(cmd_buf(S, 1, BUF, b"\x01\x00"))) is False
    assert manager.on_player_cmd(player, bytearray(cmd_buf(S, 1, JSON, json_body("[")))) is False
    assert player.stats.protocol_errors == 4
    # On a gateway link a bad body is dropped but the link is not to be closed.
    assert manager.on_player_cmd(gateway, bytearray(cmd_buf(S, 1, JSON, json_body("{}")))) is True
    assert gateway.stats.protocol_errors == 1
    errors = "netbus_protocol_errors_total"
    assert value(manager, errors, kind="short_header") == 1
    assert value(manager, errors, kind="bad_proto_type") == 1
    assert value(manager, errors, kind="no_buf_layout") == 1
    assert value(manager, errors, kind="bad_json") == 2
    assert recorder.requests == []


def test_handler_exception_is_contained_and_counted(rig: Any) -> None:
    manager, recorder, player, _ = rig
    assert manager.on_player_cmd(player, packet(2)) is True
    assert value(manager, "netbus_dropped_total", reason="handler_error") == 1
    assert manager.on_player_cmd(player, packet(1, "1"))
    assert [r.ctype for r in recorder.requests] == [2, 1]


async def test_async_handler_is_tracked_and_its_failure_counted(rig: Any) -> None:
    manager, recorder, player, _ = rig
    assert manager.on_player_cmd(player, packet(3, '"ok"'))
    assert manager.on_player_cmd(player, packet(3, '"fail"'))
    assert manager.pending == 2
    recorder.gate.set()
    await manager.drain(timeout=5)
    assert manager.pending == 0
    assert recorder.finished == 1
    assert value(manager, "netbus_dropped_total", reason="handler_error") == 1


async def test_drain_gives_up_after_its_timeout(rig: Any) -> None:
    manager, recorder, player, _ = rig
    manager.on_player_cmd(player, packet(3, '"ok"'))
    await manager.drain(timeout=0.01)
    assert manager.pending == 1
    recorder.gate.set()
    await manager.drain()
    assert manager.pending == 0


def test_user_disconnect_from_a_direct_player_is_ignored(rig: Any) -> None:
    manager, recorder, player, gateway = rig
    assert manager.on_player_cmd(player, packet(USER_DISCONNECT, utag=5)) is True
    assert recorder.disconnects == [] and recorder.requests == []
    assert value(manager, "netbus_dropped_total", reason="forged_control") == 1
    # From a gateway link it is the notice of §4.3: utag is the user who left.
    assert manager.on_player_cmd(gateway, packet(USER_DISCONNECT, utag=5)) is True
    assert recorder.disconnects == [(gateway, 5)]
    assert recorder.requests == []


def test_lifecycle_hooks_reach_every_service_despite_one_failing(rig: Any) -> None:
    manager, recorder, player, gateway = rig
    manager.player_disconnected(player, player.sid)
    manager.link_lost(gateway)
    assert recorder.disconnects == [(player, player.sid)]
    assert recorder.lost == [gateway]
    assert value(manager, "netbus_dropped_total", reason="handler_error") == 2


def test_transfer_service_gets_the_raw_cmd_buf(rig: Any) -> None:
    manager, _, player, _ = rig
    transfer = manager.get(9)
    assert isinstance(transfer, Transfer)
    raw = bytearray(cmd_buf(9, 4, BUF, b"\xde\xad"))  # no layout: only a transfer takes it
    assert manager.on_player_cmd(player, raw)
    req = transfer.requests[-1]
    assert req.body is None and req.cmd_buf is raw and req.proto_type == BUF


def test_service_side_packets_go_to_on_service_recv_cmd(rig: Any) -> None:
    manager, recorder, _, gateway = rig
    assert manager.on_service_cmd(gateway, packet(1, '"back"', utag=77))
    assert recorder.requests == []
    req = recorder.service_cmds[-1]
    assert (req.body, req.utag) == ("back", 77)


def test_custom_codec_registry_enables_buf(rig: Any) -> None:
    from netbus.protocol.codec import STR, ScalarCodec

    codecs = CodecRegistry()
    codecs.register(S, 1, to_server=ScalarCodec(STR))
    recorder = Recorder()
    manager = ServiceManager([recorder], codecs=codecs, metrics=Metrics("test"))
    player = rig[2]
    assert manager.on_player_cmd(player, bytearray(cmd_buf(S, 1, BUF, b"\x02\x00ok")))
    assert recorder.requests[-1].body == "ok"
    assert player.protos[S] == BUF
