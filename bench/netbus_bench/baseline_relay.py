"""Bare uvloop relay: the no-framework baseline of ``netbus bench relay``.

Same hops as netbus: client -> relay -> echo -> relay -> client, over u16 LE length-prefixed
frames (the length counts itself) carrying the 10-byte netbus header. The relay stamps a
connection id into the utag on the way up and routes the reply back by it, as the gateway
does; the echo writes every frame back. No checks, metrics or logging: a floor, not a rival.

    python -m netbus_bench.baseline_relay echo --port 0
    python -m netbus_bench.baseline_relay relay --port 0 --upstream 127.0.0.1:PORT

It imports nothing from netbus on purpose: the floor must not share the code it measures.
"""

import argparse
import asyncio
import itertools
import json
import struct

import uvloop

__all__ = ["cli", "main"]

UTAG = struct.Struct("<I")  # at byte 6 of a frame: 2 length bytes + stype + ctype
CLIENTS: dict[int, "ClientSide"] = {}
IDS = itertools.count(1)


class Framed(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            size = buf[pos] | buf[pos + 1] << 8
            if size < 12:
                self.transport.abort()
                return
            if end - pos < size:
                break
            self.frame(buf[pos : pos + size])
            pos += size
        del buf[:pos]

    def frame(self, frame: bytearray) -> None:
        self.transport.write(frame)  # the echo


class ClientSide(Framed):
    upstream: Framed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.id = next(IDS) & 0x7FFFFFFF
        CLIENTS[self.id] = self

    def connection_lost(self, exc: Exception | None) -> None:
        CLIENTS.pop(self.id, None)

    def frame(self, frame: bytearray) -> None:
        UTAG.pack_into(frame, 6, self.id)
        self.upstream.transport.write(frame)


class UpstreamSide(Framed):
    def frame(self, frame: bytearray) -> None:
        client = CLIENTS.get(UTAG.unpack_from(frame, 6)[0])
        if client is not None:
            frame[6:10] = b"\0\0\0\0"
            client.transport.write(frame)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    if args.role == "relay":
        host, _, port = args.upstream.rpartition(":")
        _, ClientSide.upstream = await loop.create_connection(UpstreamSide, host, int(port))
    factory = ClientSide if args.role == "relay" else Framed
    server = await loop.create_server(factory, args.host, args.port, backlog=4096)
    info = {"port": server.sockets[0].getsockname()[1]}
    print(f"NETBUS-READY baseline-{args.role} {json.dumps(info)}", flush=True)
    await asyncio.Event().wait()  # until SIGTERM


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m netbus_bench.baseline_relay", description=__doc__
    )
    parser.add_argument("role", choices=["relay", "echo"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="", help="echo host:port (relay only)")
    uvloop.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
