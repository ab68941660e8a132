"""Gateway routing facts: pre-login keys and the service instances behind each stype.

Pre-login keys. Before login a connection's packets carry ``0x80000000 | n`` as utag, with
``n`` a 31-bit counter that skips values still in use when it wraps. uids are limited to
``1 .. 2**31-1``, so the top bit alone tells a reply for a pre-login connection from one for a
user, and the two can never collide (docs/protocol.md, "utag").

Instances. A stype may have several addresses, and a route's policy picks one per user:

- ``"hash"``: rendezvous hashing over the instances that are up, so losing an instance moves
  only its users, and they come back to it when it returns;
- ``"primary"``: the first address (in config order) that is up, for everybody: the others
  are standbys. A service with one shared state (the talkroom's room) needs this; since all
  gateways share the config order, they all agree once their links agree.

When the set of live instances changes, `ServiceRoute.choose` over the old and the new set
tells the gateway which users moved (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from netbus.transport.upstream import Upstream

__all__ = ["PRELOGIN_BIT", "Policy", "PreloginKeys", "ServiceRoute", "is_prelogin"]

Policy = Literal["hash", "primary"]

PRELOGIN_BIT = 0x80000000
MAX_UID = PRELOGIN_BIT - 1


def is_prelogin(utag: int) -> bool:
    return utag >= PRELOGIN_BIT


class PreloginKeys:
    """Allocates pre-login utags, unique among live connections of this gateway."""

    def __init__(self) -> None:
        self._next = 0
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


def _weight(instance: str, utag: int) -> int:
    digest = hashlib.blake2b(f"{instance}/{utag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class ServiceRoute:
    """The upstream links of one stype and the choice of instance per user."""

    def __init__(
        self, name: str, stype: int, upstreams: Sequence[Upstream], *, policy: Policy = "hash"
    ) -> None:
        if policy not in ("hash", "primary"):
            raise ValueError(f"unknown routing policy {policy!r}")
        self.name = name
        self.stype = stype
        self.policy = policy
        self.upstreams = list(upstreams)
        self._single = self.upstreams[0] if len(self.upstreams) == 1 else None

    def pick(self, utag: int) -> Upstream | None:
        """The instance for ``utag`` among those up, or None if none is."""
        if self._single is not None:
            return self._single if self._single.is_up else None
        if self.policy == "primary":
            for upstream in self.upstreams:
                if upstream.is_up:
                    return upstream
            return None
        best: Upstream | None = None
        best_weight = -1
        for upstream in self.upstreams:
            if upstream.is_up:
                weight = _weight(upstream.name, utag)
                if weight > best_weight:
                    best, best_weight = upstream, weight
        return best

    def choose(self, utag: int, live: Sequence[Upstream]) -> Upstream | None:
        """What `pick` answers when exactly ``live`` (in config order) are up."""
        if not live:
            return None
        if self.policy == "primary" or len(live) == 1:
            return live[0]
        return max(live, key=lambda upstream: _weight(upstream.name, utag))

    @property
    def is_up(self) -> bool:
        return any(u.is_up for u in self.upstreams)
