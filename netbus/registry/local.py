"""The in-process registry: the default when ``[redis] url`` is unset.

One gateway alone needs nothing more than its `SessionTable`; this registry adds the same
semantics across several gateways living in **one** process (tests, an embedded cluster):
they share a `LocalHub`, and a claim calls the kick handler of the gateway that loses the uid
directly, synchronously. There is no lease: in one process, a gateway cannot crash alone.

Besides the async `Registry` methods it offers `claim_nowait` / `release_nowait`, which the
gateway uses so that the single-gateway login path stays synchronous (no task, no await).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from netbus.registry.base import KickHandler, Owner

__all__ = ["LocalHub", "LocalRegistry"]

log = logging.getLogger("netbus.registry")


class LocalHub:
    """State shared by the `LocalRegistry` objects of one process: owners and gateways."""

    def __init__(self) -> None:
        self.owners: dict[int, Owner] = {}
        self.gateways: dict[str, LocalRegistry] = {}


class LocalRegistry:
    """`Registry` over a `LocalHub` (a private one unless ``hub`` is given).

    Args:
        gateway_id: this gateway's id; must be unique within the hub.
        hub: share one to let several in-process gateways kick each other's users.
    """

    def __init__(self, gateway_id: str, *, hub: LocalHub | None = None) -> None:
        self.gateway_id = gateway_id
        self.hub = hub if hub is not None else LocalHub()
        self._held: dict[int, str] = {}
        self._handler: KickHandler | None = None
        self.hub.gateways[gateway_id] = self

    def set_kick_handler(self, handler: KickHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        self.hub.gateways[self.gateway_id] = self

    async def close(self) -> None:
        for uid, conn in list(self._held.items()):
            self.release_nowait(uid, conn)
        if self.hub.gateways.get(self.gateway_id) is self:
            del self.hub.gateways[self.gateway_id]

    @property
    def held(self) -> Mapping[int, str]:
        return MappingProxyType(self._held)

    # ------------------------------------------------------------------ synchronous core
    def claim_nowait(self, uid: int, conn: str) -> Owner | None:
        """`claim` without the coroutine: the single-gateway fast path."""
        me = Owner(self.gateway_id, conn)
        owners = self.hub.owners
        previous = owners.get(uid)
        owners[uid] = me
        self._held[uid] = conn
        if previous is None or previous == me:
            return None
        if previous.gateway != self.gateway_id:
            other = self.hub.gateways.get(previous.gateway)
            if other is not None:
                other.deliver_kick(uid, previous.conn)
        return previous

    def release_nowait(self, uid: int, conn: str) -> bool:
        if self._held.get(uid) == conn:
            del self._held[uid]
        if self.hub.owners.get(uid) == Owner(self.gateway_id, conn):
            del self.hub.owners[uid]
            return True
        return False

    def deliver_kick(self, uid: int, conn: str) -> None:
        """Another gateway took ``uid`` from ``conn`` of this one: tell the handler."""
        if self._held.get(uid) == conn:
            del self._held[uid]
        if self._handler is None:
            return
        try:
            self._handler(uid, conn)
        except Exception:  # one gateway's bug must not break another's login
            log.exception("kick handler failed for uid %d", uid)

    # ----------------------------------------------------------------- Registry protocol
    async def claim(self, uid: int, conn: str) -> Owner | None:
        return self.claim_nowait(uid, conn)

    async def release(self, uid: int, conn: str) -> bool:
        return self.release_nowait(uid, conn)

    async def owner(self, uid: int) -> Owner | None:
        return self.hub.owners.get(uid)

    async def refresh(self) -> list[int]:
        lost: list[int] = []
        owners = self.hub.owners
        for uid, conn in list(self._held.items()):
            current = owners.get(uid)
            if current is None:
                owners[uid] = Owner(self.gateway_id, conn)
            elif current != (self.gateway_id, conn):
                lost.append(uid)
                self.deliver_kick(uid, conn)
        return lost
