"""``Client.connect(local_addr=...)`` binds the source address, over TCP and WebSocket."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from netbus.client import Client


async def test_tcp_source_address() -> None:
    peers: asyncio.Queue[str] = asyncio.Queue()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.put_nowait(writer.get_extra_info("peername")[0])
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = await Client.connect(f"tcp://127.0.0.1:{port}", local_addr=("127.0.0.2", 0))
        try:
            assert await asyncio.wait_for(peers.get(), 5) == "127.0.0.2"
        finally:
            await client.close()


async def test_ws_source_address() -> None:
    peers: asyncio.Queue[str] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        peers.put_nowait(ws.remote_address[0])
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await Client.connect(f"ws://127.0.0.1:{port}/ws", local_addr=("127.0.0.3", 0))
        try:
            assert await asyncio.wait_for(peers.get(), 5) == "127.0.0.3"
        finally:
            await client.close()
