"""A tiny echo service for ``netbus bench relay``: every command is answered with its body.

It is an ordinary `Service` in an ordinary `ServiceServer`, so the relay benchmark measures the
framework's real service path: header parse, BUF body decode, handler, BUF encode, reply by
utag. Its stype (100) has a BUF layout of its own, registered in the process-wide `CODECS`
(the registry sessions encode replies with) by `register_codecs`::

    python -m netbus.bench.echo --port 0      # prints NETBUS-READY echo {"port": N}
"""

from __future__ import annotations

import argparse

from netbus.cluster import cluster_secret
from netbus.config import load_settings
from netbus.log import setup_logging
from netbus.metrics import Metrics
from netbus.protocol.codec import STR, U32, FieldsCodec
from netbus.protocol.commands import CODECS, CodecRegistry, Direction
from netbus.runtime import LoopName, run, wait_for_signal
from netbus.service import Request, Service
from netbus.service.server import ServiceServer
from netbus.supervisor import announce_ready

__all__ = ["ECHO_CTYPE", "ECHO_LAYOUT", "ECHO_STYPE", "EchoService", "main", "register_codecs"]

ECHO_STYPE = 100
ECHO_CTYPE = 1
#: the BUF body of an echo request and of its reply: ``u32 seq, str data``
ECHO_LAYOUT = FieldsCodec(("seq", U32), ("data", STR))


def register_codecs(registry: CodecRegistry = CODECS) -> None:
    """Add the echo layout to ``registry`` (idempotent). Clients need it too, for BUF."""
    if registry.buf_codec(ECHO_STYPE, ECHO_CTYPE, Direction.TO_SERVER) is None:
        registry.register(ECHO_STYPE, ECHO_CTYPE, to_server=ECHO_LAYOUT, to_client=ECHO_LAYOUT)


class EchoService(Service):
    stype = ECHO_STYPE
    name = "echo"

    def on_player_recv_cmd(self, req: Request) -> None:
        req.reply(req.body)  # same ctype, same proto_type, back by utag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netbus.bench.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging("echo", level=args.log_level)
    register_codecs()

    async def serve() -> None:
        server = ServiceServer(
            [EchoService()],
            host=args.host,
            port=args.port,
            metrics=Metrics("echo"),
            name="echo",
            cluster_secret=cluster_secret(load_settings()),  # the gateway proves the same one
        )
        await server.start()
        announce_ready("echo", port=server.port)
        await wait_for_signal()
        await server.close()

    loop: LoopName = args.loop
    run(serve, loop=loop)


if __name__ == "__main__":
    main()
