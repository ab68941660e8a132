"""Service and command numbers, status codes and BUF layouts (PROTOCOL.md §4).

A `CodecRegistry` maps ``(stype, ctype, direction)`` to the BUF layout of that body; JSON
needs no layout. A command with no BUF layout accepts JSON only (§3.3). `CODECS` is the
registry preloaded with every command in the contract; a new service registers its own.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol.codec import (
    I16,
    STR,
    U16,
    BodyCodec,
    FieldsCodec,
    Reader,
    ScalarCodec,
    decode_json_body,
    encode_json_body,
)
from netbus.protocol.header import HEADER_SIZE, MAX_CMD_BUF, ProtoType, pack_header

__all__ = [
    "CODECS",
    "USER_DISCONNECT",
    "AuthCmd",
    "AuthStatus",
    "Cmd",
    "CodecRegistry",
    "Direction",
    "GatewayCmd",
    "Stype",
    "TalkroomCmd",
    "TalkroomStatus",
]


class Stype(IntEnum):
    """Service numbers. 0 is the gateway's own control channel (docs/protocol.md §5)."""

    Gateway = 0
    TalkRoom = 1
    Auth = 2


USER_DISCONNECT = 10000  #: gateway -> every service, utag = uid of the user who left (§4.3)


class TalkroomCmd(IntEnum):
    Enter = 1
    Exit = 2
    UserArrived = 3
    UserExit = 4
    SendMsg = 5
    UserMsg = 6


class AuthCmd(IntEnum):
    GUEST_LOGIN = 1
    RELOGIN = 2


class GatewayCmd(IntEnum):
    """Gateway control commands (stype 0), designed by netbus; see docs/protocol.md."""

    HEARTBEAT = 1  #: client -> gateway; the gateway answers with a HEARTBEAT (null body)
    SERVICE_UNAVAILABLE = 2  #: gateway -> client: {"stype", "ctype"} of the undeliverable packet
    SHUTDOWN = 3  #: gateway -> client: the gateway is going away; reconnect elsewhere
    RATE_LIMITED = 4  #: gateway -> client: packets were dropped by the rate limit
    LOGIN_REQUIRED = 5  #: gateway -> client: {"stype", "ctype"} refused before login
    SERVICE_AVAILABLE = 6  #: gateway -> client: {"stype", "ctype": 0}: the service is back


class Cmd:
    """All command numbers, grouped by service like the original's ``Cmd`` table."""

    USER_DISCONNECT = USER_DISCONNECT
    TalkRoom = TalkroomCmd
    Auth = AuthCmd
    Gateway = GatewayCmd


class TalkroomStatus(IntEnum):
    OK = 1
    INVALID_OPT = -100
    IN_ROOM = -101
    NOT_IN_ROOM = -102


class AuthStatus(IntEnum):
    OK = 1
    SYSTEM_ERROR = -100
    INVALID_PARAMS = -101
    INVALID_OPT = -102
    ILLEGAL_ACCOUNT = -103


class Direction(IntEnum):
    TO_SERVER = 0  #: client -> service (through the gateway)
    TO_CLIENT = 1  #: service -> client: replies and pushes


class _SendMsgReply:
    """SendMsg reply: ``i16 status`` then, on OK only, ``str uname, i16 usex, str msg``."""

    _status = ScalarCodec(I16)
    _ok_tail = FieldsCodec(("1", STR), ("2", I16), ("3", STR))

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, dict) or "0" not in value:
            raise LocalProtocolError('SendMsg reply needs {"0": status, ...}')
        status = self._status.encode(value["0"])
        if value["0"] != TalkroomStatus.OK:
            return status
        return status + self._ok_tail.encode(value)

    def decode(self, reader: Reader) -> Any:
        status = reader.i16()
        if status != TalkroomStatus.OK:
            reader.expect_end()
            return {"0": status}
        value = {"0": status, "1": reader.str(), "2": reader.i16(), "3": reader.str()}
        reader.expect_end()
        return value


class CodecRegistry:
    """BUF layouts per ``(stype, ctype, direction)`` plus whole-cmd_buf encode/decode."""

    def __init__(self) -> None:
        self._buf: dict[tuple[int, int, Direction], BodyCodec] = {}

    def register(
        self,
        stype: int,
        ctype: int,
        *,
        to_server: BodyCodec | None = None,
        to_client: BodyCodec | None = None,
    ) -> None:
        for direction, codec in (
            (Direction.TO_SERVER, to_server),
            (Direction.TO_CLIENT, to_client),
        ):
            if codec is not None:
                self._buf[(stype, ctype, direction)] = codec

    def copy(self) -> CodecRegistry:
        clone = CodecRegistry()
        clone._buf = dict(self._buf)
        return clone

    def buf_codec(self, stype: int, ctype: int, direction: Direction) -> BodyCodec | None:
        return self._buf.get((stype, ctype, direction))

    def encode_body(
        self, stype: int, ctype: int, proto_type: int, body: Any, direction: Direction
    ) -> bytes:
        if proto_type == ProtoType.JSON:
            return encode_json_body(body)
        if proto_type == ProtoType.BUF:
            codec = self._buf.get((stype, ctype, direction))
            if codec is None:
                raise LocalProtocolError(f"({stype}, {ctype}) has no BUF layout {direction.name}")
            return codec.encode(body)
        raise LocalProtocolError(f"unknown proto_type {proto_type}")

    def encode(
        self,
        stype: int,
        ctype: int,
        body: Any,
        *,
        utag: int = 0,
        proto_type: int = ProtoType.JSON,
        direction: Direction,
    ) -> bytes:
        """Build a whole cmd_buf (header + body).

        Raises:
            LocalProtocolError: the body does not fit the layout or the cmd_buf is too long.
        """
        data = pack_header(stype, ctype, utag, proto_type) + self.encode_body(
            stype, ctype, proto_type, body, direction
        )
        if len(data) > MAX_CMD_BUF:
            raise LocalProtocolError(f"cmd_buf of {len(data)} bytes exceeds {MAX_CMD_BUF}")
        return data

    def decode_body(
        self,
        cmd_buf: bytes | bytearray | memoryview,
        stype: int,
        ctype: int,
        proto_type: int,
        direction: Direction,
    ) -> Any:
        """Decode the body of a cmd_buf whose header was already validated.

        Raises:
            ProtocolError: the body is malformed, or BUF was used where no layout exists.
        """
        if proto_type == ProtoType.JSON:
            return decode_json_body(cmd_buf, HEADER_SIZE)
        codec = self._buf.get((stype, ctype, direction))
        if codec is None:
            raise ProtocolError("no_buf_layout", f"({stype}, {ctype}) accepts JSON only")
        return codec.decode(Reader(cmd_buf, HEADER_SIZE))


def _default_registry() -> CodecRegistry:
    reg = CodecRegistry()
    t = Stype.TalkRoom
    user = FieldsCodec(("uname", STR), ("usex", I16))
    status = ScalarCodec(I16)
    reg.register(t, TalkroomCmd.Enter, to_server=user, to_client=status)
    reg.register(t, TalkroomCmd.Exit, to_server=FieldsCodec(), to_client=status)
    reg.register(t, TalkroomCmd.UserArrived, to_client=user)
    reg.register(t, TalkroomCmd.UserExit, to_client=user)
    reg.register(t, TalkroomCmd.SendMsg, to_server=ScalarCodec(STR), to_client=_SendMsgReply())
    reg.register(t, TalkroomCmd.UserMsg, to_client=FieldsCodec(("0", STR), ("1", I16), ("2", STR)))
    g = Stype.Gateway
    reg.register(g, GatewayCmd.HEARTBEAT, to_server=FieldsCodec(), to_client=FieldsCodec())
    reg.register(
        g, GatewayCmd.SERVICE_UNAVAILABLE, to_client=FieldsCodec(("stype", U16), ("ctype", U16))
    )
    for notice in (GatewayCmd.LOGIN_REQUIRED, GatewayCmd.SERVICE_AVAILABLE):
        reg.register(g, notice, to_client=FieldsCodec(("stype", U16), ("ctype", U16)))
    reg.register(g, GatewayCmd.SHUTDOWN, to_client=FieldsCodec(("reason", STR)))
    reg.register(g, GatewayCmd.RATE_LIMITED, to_client=FieldsCodec(("dropped", U16)))
    reg.register(Stype.Auth, AuthCmd.RELOGIN, to_client=FieldsCodec())
    return reg


CODECS = _default_registry()
