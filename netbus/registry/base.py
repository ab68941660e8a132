"""Who is logged in where: the `Registry` protocol of the in-process and Redis registries.

A registry maps each uid to its one owner, ``"<gateway_id>:<conn_id>"``, for the whole cluster.
Every gateway holds one registry object, which knows that gateway's id:

- `Registry.claim` makes a connection of this gateway the owner of a uid and returns the owner
  it replaced. If that owner is a connection on **another** gateway, the registry tells that
  gateway (its kick handler is called with ``(uid, conn_id)``); an owner on this same gateway
  is returned to the caller, which kicks it itself.
- `Registry.release` removes the entry only if the connection still owns it
  (compare-and-delete), so a late release can never undo a newer login.
- `Registry.refresh` re-checks every claim this gateway holds and reports the ones another
  connection took over through the kick handler. Redis runs it periodically (it also renews
  the lease): that is what repairs a kick lost in transit.

Kick handlers are plain callbacks, called on the event loop: they must not block. A handler
can be called for a connection that is already gone, or whose claim is still in flight; the
gateway sorts that out (docs/scaling.md, "ordering").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

__all__ = ["KickHandler", "Owner", "Registry"]

#: ``handler(uid, conn_id)``: this gateway's connection ``conn_id`` no longer owns ``uid``
KickHandler = Callable[[int, str], None]


class Owner(NamedTuple):
    """The connection that owns a uid: a gateway id and that gateway's connection id."""

    gateway: str
    conn: str

    def __str__(self) -> str:
        return f"{self.gateway}:{self.conn}"

    @classmethod
    def parse(cls, value: str | bytes | None) -> Owner | None:
        """``"gw1:ab12.7"`` -> ``Owner("gw1", "ab12.7")``; None for None or a malformed value.

        Gateway ids cannot contain ``:`` (config pattern), so the first colon splits.
        """
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        gateway, sep, conn = text.partition(":")
        if not sep or not gateway or not conn:
            return None
        return cls(gateway, conn)


class Registry(Protocol):
    """Cluster-wide uid ownership (STYLE.md §2.9). See the module docstring."""

    #: this gateway's id; the ``<gateway_id>`` of the owners it claims
    gateway_id: str

    def set_kick_handler(self, handler: KickHandler) -> None:
        """Where kicks for this gateway's connections go (set once, before `start`)."""
        ...

    async def start(self) -> None:
        """Start background work (kick delivery, lease refresh). Never fails on an outage."""
        ...

    async def close(self) -> None:
        """Stop background work and release what this gateway still holds (best effort)."""
        ...

    async def claim(self, uid: int, conn: str) -> Owner | None:
        """Make ``(this gateway, conn)`` the owner of ``uid``; return the owner it replaced.

        Returns None when nobody (or this very connection) owned it. A replaced owner on
        another gateway has been sent a kick; one on this gateway is the caller's to kick.

        Raises:
            RegistryUnavailable: the backend failed; the claim may or may not have landed.
        """
        ...

    async def release(self, uid: int, conn: str) -> bool:
        """Forget ``uid`` if ``conn`` of this gateway still owns it; True if it was removed.

        Raises:
            RegistryUnavailable: the backend failed (the entry then expires with its lease).
        """
        ...

    async def owner(self, uid: int) -> Owner | None:
        """The current owner of ``uid``, if any.

        Raises:
            RegistryUnavailable: the backend failed.
        """
        ...

    async def refresh(self) -> list[int]:
        """Re-check (and renew) every claim held here; kick and return the uids lost.

        A claim whose entry vanished (a Redis restart without persistence) is re-created.

        Raises:
            RegistryUnavailable: the backend failed; nothing was kicked.
        """
        ...

    @property
    def held(self) -> Mapping[int, str]:
        """uid -> conn of the claims this gateway currently holds (read-only view)."""
        ...
