"""The talkroom role: one chat room (docs/protocol.md §6.1), the reference service."""

from netbus.roles.talkroom.protocol import TalkroomCmd, TalkroomStatus
from netbus.roles.talkroom.room import Member, Room
from netbus.roles.talkroom.service import TalkroomService

__all__ = ["Member", "Room", "TalkroomCmd", "TalkroomService", "TalkroomStatus"]
