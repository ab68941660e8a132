"""The talkroom role: one chat room (PROTOCOL.md §4.1)."""

from netbus.roles.talkroom.room import Member, Room
from netbus.roles.talkroom.service import TalkroomService

__all__ = ["Member", "Room", "TalkroomService"]
