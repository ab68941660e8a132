"""Sans-I/O wire protocol: header, framing, body codecs, command table. No sockets here."""

from netbus.protocol.codec import *  # noqa: F403
from netbus.protocol.codec import __all__ as _codec_all
from netbus.protocol.commands import *  # noqa: F403
from netbus.protocol.commands import __all__ as _commands_all
from netbus.protocol.framing import *  # noqa: F403
from netbus.protocol.framing import __all__ as _framing_all
from netbus.protocol.header import *  # noqa: F403
from netbus.protocol.header import __all__ as _header_all

__all__ = [*_header_all, *_framing_all, *_codec_all, *_commands_all]
