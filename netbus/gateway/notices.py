"""Failover notices: who must hear what when a service's set of live instances changes.

A pure function of the users, the live sets before and after, and the route's choice of
instance (routing.py); the gateway sends what it returns. A logged-in user whose instance
changed hears it, so the client can re-enter: SERVICE_UNAVAILABLE when no instance is left,
SERVICE_AVAILABLE when one came back, both (in that order) when it moved to another instance,
whose state it must rebuild. The instance it left, if still live (fail-back), gets
USER_DISCONNECT: no ghosts. A connection not logged in that has used the service (a login in
flight on the lost link, or one refused during the outage) hears SERVICE_UNAVAILABLE when the
last instance goes and SERVICE_AVAILABLE when one is back, so a login page can recover
(docs/protocol.md §7, docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

__all__ = ["FailoverNotices", "User", "failover_notices"]


class User(Protocol):
    """What the notices need of a connection: its uid (0 before login) and the services it
    has used, with the proto_type it used last (``stype -> proto_type``)."""

    @property
    def uid(self) -> int: ...

    @property
    def protos(self) -> Mapping[int, int]: ...


UserT = TypeVar("UserT", bound=User)
InstanceT = TypeVar("InstanceT", bound=Hashable)


@dataclass(slots=True)
class FailoverNotices(Generic[UserT, InstanceT]):
    """What to send, in this order: disconnects first, then each user's notices in order."""

    #: ``(uid, instance)``: USER_DISCONNECT to an instance a user left that is still live
    disconnect: list[tuple[int, InstanceT]] = field(default_factory=list)
    #: users told SERVICE_UNAVAILABLE (ctype 0): their instance is gone
    unavailable: list[UserT] = field(default_factory=list)
    #: users told SERVICE_AVAILABLE (ctype 0), after any SERVICE_UNAVAILABLE of theirs
    available: list[UserT] = field(default_factory=list)


def failover_notices(
    stype: int,
    users: Iterable[UserT],
    before: Sequence[InstanceT],
    after: Sequence[InstanceT],
    choose: Callable[[int, Sequence[InstanceT]], InstanceT | None],
) -> FailoverNotices[UserT, InstanceT]:
    """The notices for service ``stype`` whose live instances went from ``before`` to ``after``.

    Args:
        users: every connection of the gateway.
        choose: the route's choice, ``choose(uid, live) -> instance or None``.
    """
    out: FailoverNotices[UserT, InstanceT] = FailoverNotices()
    for user in users:
        uid = user.uid
        if not uid:
            if stype in user.protos:  # e.g. a login in flight, or refused during the outage
                if before and not after:
                    out.unavailable.append(user)
                elif after and not before:
                    out.available.append(user)  # it may try again (a login page recovers)
            continue
        old, new = choose(uid, before), choose(uid, after)
        if old == new:
            continue
        if old is not None:
            if old in after:
                out.disconnect.append((uid, old))
            out.unavailable.append(user)
        if new is not None:
            out.available.append(user)
    return out
