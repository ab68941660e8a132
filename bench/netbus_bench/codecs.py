"""The codecs the load generator's clients use .

Built from the services' own declarations, as any client's are; the bench talks to the
talkroom, auth (the RELOGIN kick) and the echo service.
"""

from __future__ import annotations

from netbus.protocol.registry import CodecRegistry
from netbus.roles import Stype
from netbus.roles.center.protocol import AuthCmd
from netbus.roles.talkroom import TalkroomService
from netbus.service import client_codecs

from netbus_bench.echo import ECHO_CODECS

__all__ = ["BENCH_CODECS"]

BENCH_CODECS = (
    client_codecs(TalkroomService)
    | ECHO_CODECS
    | CodecRegistry.of([(Stype.Auth, AuthCmd.RELOGIN, None, [])])
)
