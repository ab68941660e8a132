"""Rooms (issue 13): tracked room state, its wire encoding, and the fixed-rate clock.

Wave 1 holds the sans-I/O foundations: declare a state (`Schema` dataclasses), encode it for
viewers (`StateEncoder`), rebuild it on a client (`StateDecoder`), and run a simulation at a
fixed rate without drift (`Scheduler`; `loop_scheduler` wires one to the running event loop).
"""

from netbus.rooms.clock import LogSampler, Repeating, Scheduler, TickInfo, Timer, TimerGroup
from netbus.rooms.containers import SyncDict, SyncList
from netbus.rooms.decoder import *  # noqa: F403
from netbus.rooms.decoder import __all__ as _decoder_all
from netbus.rooms.driver import loop_scheduler
from netbus.rooms.encoder import *  # noqa: F403
from netbus.rooms.encoder import __all__ as _encoder_all
from netbus.rooms.layout import ViewRule, Visible, f32, owner_only
from netbus.rooms.schema import Schema

__all__ = [
    *_decoder_all,
    *_encoder_all,
    "LogSampler",
    "Repeating",
    "Scheduler",
    "Schema",
    "SyncDict",
    "SyncList",
    "TickInfo",
    "Timer",
    "TimerGroup",
    "ViewRule",
    "Visible",
    "f32",
    "loop_scheduler",
    "owner_only",
]
