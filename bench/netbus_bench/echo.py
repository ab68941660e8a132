"""A tiny echo service for ``netbus bench relay``: every command is answered with its body.

It is an ordinary `Service` in an ordinary `ServiceServer`, so the relay benchmark measures the
framework's real service path: header parse, BUF body decode, handler, BUF encode, reply by
utag. Its stype (100) has a BUF layout of its own, declared on the command; clients get it
with ``client_codecs(EchoService)`` (`ECHO_CODECS`)::

    python -m netbus_bench.echo --port 0      # prints NETBUS-READY echo {"port": N}
"""

from __future__ import annotations

import argparse
from typing import Any

from netbus.cluster import cluster_secret
from netbus.config import load_settings
from netbus.log import setup_logging
from netbus.metrics import Metrics
from netbus.protocol.codec import STR, U32, FieldsCodec
from netbus.runtime import LoopName, run, wait_for_signal
from netbus.service import Service, ServiceServer, User, client_codecs, command
from netbus.supervisor import announce_ready

__all__ = ["ECHO_CODECS", "ECHO_CTYPE", "ECHO_LAYOUT", "ECHO_STYPE", "EchoService", "main"]

ECHO_STYPE = 100
ECHO_CTYPE = 1
#: the BUF body of an echo request and of its reply: ``u32 seq, str data``
ECHO_LAYOUT = FieldsCodec(("seq", U32), ("data", STR))


class EchoService(Service):
    stype = ECHO_STYPE
    name = "echo"

    @command(ECHO_CTYPE, buf=ECHO_LAYOUT, reply_buf=ECHO_LAYOUT)
    def echo(self, user: User, body: Any) -> Any:
        return body  # same ctype, same proto_type, back by utag


#: what a client of the echo service needs (plus the control channel)
ECHO_CODECS = client_codecs(EchoService)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netbus_bench.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging("echo", level=args.log_level)

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
