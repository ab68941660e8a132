"""Who owns what in a state tree, and which wire ids the encoder handed out.

Every struct, list and dict of a state is a *node*. A node sits in one place at a time
(``claim``/``release`` keep its one parent), and while its tree belongs to an encoder it is
*attached*: it has a ``ref`` (the wire id the decoder keys it by), a ``new`` flag (the client
has not seen it yet, so it travels whole) and a ``gate`` (the view rules on its path from the
root, see `netbus.rooms.layout.Visible`). Nodes implement three small hooks
(``_nb_bind``, ``_nb_unbind``, ``_nb_children``) so this module needs to know neither kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from netbus.rooms.layout import FieldSpec, ViewRule
from netbus.rooms.wire import MAX_UVARINT

__all__ = [
    "Gate",
    "Node",
    "Tracker",
    "attach",
    "claim",
    "detach",
    "field_gate",
    "release",
]

Gate = tuple[tuple[ViewRule, Any], ...]
"""(rule, obj) pairs that must all admit a viewer before it may see a node."""


class Tracker:
    """What one encoder knows of its state tree: wire ids handed out and the dirty nodes."""

    __slots__ = ("_next_ref", "dirty")

    def __init__(self) -> None:
        self.dirty: list[Any] = []  #: nodes changed since the last patch (may repeat)
        self._next_ref = 0

    def alloc(self) -> int:
        ref = self._next_ref
        if ref > MAX_UVARINT:
            raise OverflowError("state ran out of wire ids (2**32 nodes attached)")
        self._next_ref = ref + 1
        return ref


class Node(Protocol):
    """What `attach`, `detach`, `claim` and `release` need of a struct, list or dict."""

    _nb_tracker: Tracker | None
    _nb_parent: Any

    def _nb_bind(self, tracker: Tracker | None, ref: int, gate: Gate, new: bool) -> None: ...

    def _nb_children(self) -> Iterable[tuple[Any, Gate]]: ...


def field_gate(obj: Any, spec: FieldSpec) -> Gate:
    """The gate of what ``obj.<spec>`` holds: ``obj``'s own, plus the field's rule if any."""
    gate: Gate = obj._nb_gate
    return gate if spec.visible is None else (*gate, (spec.visible, obj))


def claim(child: Any, parent: Any, where: str) -> None:
    """Make ``parent`` the one owner of ``child``: an object sits in one place at a time."""
    if child._nb_parent is not None:
        raise ValueError(f"{where}: {type(child).__name__} is already in a state; remove it first")
    if child._nb_tracker is not None:
        raise ValueError(f"{where}: {type(child).__name__} is the root of a state")
    child._nb_parent = parent


def release(child: Any) -> None:
    """``child`` left its place: no parent, no wire ids (its own data stays intact)."""
    child._nb_parent = None
    if child._nb_tracker is not None:
        detach(child)


def attach(node: Any, tracker: Tracker, gate: Gate, *, new: bool = True) -> None:
    """Give ``node`` and everything under it wire ids in ``tracker``; ``new`` = send whole."""
    node._nb_bind(tracker, tracker.alloc(), gate, new)
    for child, child_gate in node._nb_children():
        attach(child, tracker, child_gate, new=new)


def detach(node: Any) -> None:
    """Forget the wire ids of ``node`` and everything under it (they left the state)."""
    node._nb_bind(None, -1, (), False)
    for child, _ in node._nb_children():
        detach(child)
