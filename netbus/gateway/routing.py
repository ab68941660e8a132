"""Gateway routing: pre-login keys, and which instance of a service each user goes to.

Pre-login keys. Before login a connection's packets carry ``PRELOGIN_BIT | n`` as utag, with
``n`` a 31-bit counter that skips values still in use when it wraps. uids are limited to
``1 .. MAX_UID``, so the top bit alone tells a reply for a pre-login connection from one for
a user, and the two can never collide (docs/protocol.md §8).

Instances. A stype may have several addresses, and a route's policy picks one per user among
the live ones (`choose`, a pure function of the utag and the live set):

- `Policy.HASH`: rendezvous hashing over the live instances, so losing an instance moves only
  its users, and they come back to it when it returns;
- `Policy.PRIMARY`: the first live instance in config order, for everybody: the others are
  standbys. A service with one shared state (one chat room) needs this; since all gateways
  share the config order, they all agree once their links agree.

A `Route` only remembers which of its instances are live (`Route.set_live`, told by the
gateway when a link opens or closes); it never asks a link. When the live set changes,
`choose` over the old and the new set tells which users moved (notices.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from netbus.protocol.header import MAX_UID, PRELOGIN_BIT

__all__ = ["Instance", "Policy", "PreloginKeys", "Route", "choose", "is_prelogin"]


def is_prelogin(utag: int) -> bool:
    """True for a pre-login connection key, False for a uid."""
    return utag >= PRELOGIN_BIT


class PreloginKeys:
    """Allocates pre-login utags, unique among live connections of this gateway.

    Args:
        start: the first counter value (``0 .. MAX_UID``; tests start near the wrap).
    """

    def __init__(self, start: int = 0) -> None:
        self._next = start & MAX_UID
        self._live: set[int] = set()

    def allocate(self) -> int:
        while True:
            key = PRELOGIN_BIT | self._next
            self._next = (self._next + 1) & MAX_UID
            if key not in self._live:
                self._live.add(key)
                return key

    def release(self, key: int) -> None:
        self._live.discard(key)

    def __len__(self) -> int:
        return len(self._live)


class Policy(StrEnum):
    """How a route spreads users over its live instances (config ``policy``)."""

    HASH = "hash"  #: rendezvous hashing on the utag: sticky, moves only the users of a lost one
    PRIMARY = "primary"  #: the first live instance in config order, for everybody


class Instance(Protocol):
    """What routing needs of a service instance: a name that is stable across gateways."""

    @property
    def name(self) -> str: ...


InstanceT = TypeVar("InstanceT", bound=Instance)


def _weight(instance: str, utag: int) -> int:
    digest = hashlib.blake2b(f"{instance}/{utag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def choose(policy: Policy, utag: int, live: Sequence[InstanceT]) -> InstanceT | None:
    """The instance ``utag`` goes to when exactly ``live`` (in config order) are up."""
    if not live:
        return None
    if policy is Policy.PRIMARY or len(live) == 1:
        return live[0]
    return max(live, key=lambda instance: _weight(instance.name, utag))


class Route(Generic[InstanceT]):
    """The instances of one stype (built from a `netbus.config.ServiceRoute`) and the live ones.

    Args:
        name: the service's name in the config (``[gateway.services.<name>]``).
        instances: every configured instance, in config order; none is live yet.
        policy: how users are spread over the live instances.
    """

    def __init__(
        self,
        name: str,
        stype: int,
        instances: Sequence[InstanceT],
        *,
        policy: Policy = Policy.HASH,
    ) -> None:
        self.name = name
        self.stype = stype
        self.policy = Policy(policy)
        self.instances: tuple[InstanceT, ...] = tuple(instances)
        #: the live instances, in config order
        self.live: tuple[InstanceT, ...] = ()
        self._first = self.policy is Policy.PRIMARY

    def pick(self, utag: int) -> InstanceT | None:
        """`choose` over the live set: the instance for ``utag``, or None if none is live."""
        live = self.live
        if not live:
            return None
        if self._first or len(live) == 1:
            return live[0]
        return max(live, key=lambda instance: _weight(instance.name, utag))

    def choose(self, utag: int, live: Sequence[InstanceT]) -> InstanceT | None:
        """What `pick` answers when exactly ``live`` (in config order) are up."""
        return choose(self.policy, utag, live)

    def set_live(
        self, instance: InstanceT, up: bool
    ) -> tuple[tuple[InstanceT, ...], tuple[InstanceT, ...]]:
        """Mark ``instance`` live or not; return the live sets before and after.

        Raises:
            ValueError: ``instance`` is not one of this route's instances.
        """
        if instance not in self.instances:
            raise ValueError(f"{instance!r} is not an instance of route {self.name!r}")
        before = self.live
        self.live = tuple(i for i in self.instances if (up if i is instance else i in before))
        return before, self.live
