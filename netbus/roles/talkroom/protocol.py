"""The talkroom's commands, status codes and BUF layouts (docs/protocol.md §6.1).

The talkroom speaks the original framework's wire format, so these numbers and layouts are
fixed; `TalkroomService` declares them with ``@command`` next to its handlers.
"""

from __future__ import annotations

from enum import IntEnum

from netbus.protocol.codec import I16, STR, StatusCodec

__all__ = [
    "SEND_MSG_REPLY",
    "STATUS",
    "USER",
    "USER_MSG",
    "TalkroomCmd",
    "TalkroomStatus",
]


class TalkroomCmd(IntEnum):
    Enter = 1
    Exit = 2
    UserArrived = 3  #: push
    UserExit = 4  #: push
    SendMsg = 5
    UserMsg = 6  #: push


class TalkroomStatus(IntEnum):
    OK = 1
    INVALID_OPT = -100
    IN_ROOM = -101
    NOT_IN_ROOM = -102


#: Enter request, UserArrived and UserExit: ``str uname, i16 usex``
USER = [("uname", STR), ("usex", I16)]
#: Enter and Exit replies: ``i16 status``
STATUS = I16
#: SendMsg reply: ``i16 status`` then, on OK only, ``str uname, i16 usex, str msg``
SEND_MSG_REPLY = StatusCodec(("1", STR), ("2", I16), ("3", STR))
#: UserMsg push: ``str uname, i16 usex, str msg`` under the keys "0", "1", "2"
USER_MSG = [("0", STR), ("1", I16), ("2", STR)]
