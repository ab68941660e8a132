"""The built-in applications, written on the public service SDK: center (auth), talkroom, web.

`Stype` names the service numbers netbus itself uses (docs/protocol.md §6); game services use
16 and up. Importing this package loads nothing else, so clients and tests may use it freely.
"""

from enum import IntEnum

__all__ = ["Stype"]


class Stype(IntEnum):
    """Service numbers of the built-in services; 1-15 are reserved for netbus."""

    Gateway = 0  #: the gateway's control channel (`netbus.protocol.control.CONTROL_STYPE`)
    TalkRoom = 1  #: the talkroom (`netbus.roles.talkroom`)
    Auth = 2  #: auth, served by the center (`netbus.roles.center`)
    Rooms = 3  #: the rooms service (issue 13)
