"""Sans-I/O wire protocol: header, framing, body codecs, codec registries, the control channel.

No sockets here, and no application commands: services declare their own (netbus.service).
"""

from netbus.protocol.codec import *  # noqa: F403
from netbus.protocol.codec import __all__ as _codec_all
from netbus.protocol.control import *  # noqa: F403
from netbus.protocol.control import __all__ as _control_all
from netbus.protocol.framing import *  # noqa: F403
from netbus.protocol.framing import __all__ as _framing_all
from netbus.protocol.header import *  # noqa: F403
from netbus.protocol.header import __all__ as _header_all
from netbus.protocol.registry import *  # noqa: F403
from netbus.protocol.registry import __all__ as _registry_all

__all__ = [*_header_all, *_framing_all, *_codec_all, *_registry_all, *_control_all]
