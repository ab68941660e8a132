"""The Python client library (asyncio; TCP, TLS, WS, WSS; JSON and BUF)."""

from netbus.client.client import Client, Push

__all__ = ["Client", "Push"]
