"""State classes and helpers shared by the rooms tests (not a test module).

The classes live at module level: layouts resolve annotations with the module's globals.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Annotated, Any

from hypothesis import HealthCheck, settings

from netbus.rooms import Schema, StateDecoder, StateEncoder, f32, owner_only
from netbus.rooms.containers import SyncDict, SyncList
from netbus.rooms.layout import PRIM, layout_of

#: Modest example counts keep the rooms suite within a few seconds.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Pos(Schema):
    x: f32 = 0.0
    y: f32 = 0.0


@dataclass
class Player(Schema):
    name: str = ""
    x: f32 = 0.0
    y: f32 = 0.0
    uid: int = 0
    score: int = 0
    secret: Annotated[str, owner_only("uid")] = ""


@dataclass
class Arena(Schema):
    players: dict[str, Player] = field(default_factory=dict)
    items: list[Pos] = field(default_factory=list)
    tick: int = 0
    title: str = ""
    winner: Player | None = None


@dataclass
class Item(Schema):
    n: int = 0
    tag: str = ""
    owner: int = 0
    secret: Annotated[int, owner_only("owner")] = 0
    tags: list[str] = field(default_factory=list)


@dataclass
class Box(Schema):
    """Every supported field type, for the fuzz tests."""

    f: f32 = 0.0
    d: float = 0.0
    b: bool = False
    s: str = ""
    maybe: int | None = None
    child: Item | None = None
    items: list[Item] = field(default_factory=list)
    by_name: dict[str, Item] = field(default_factory=dict)
    nums: dict[int, float] = field(default_factory=dict)
    flags: list[bool] = field(default_factory=list)
    owner: int = 0
    hidden: Annotated[list[Item], owner_only("owner")] = field(default_factory=list)


def f32_round(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def expected_view(obj: Any, viewer: Any) -> Any:
    """The state ``viewer`` should have decoded: hidden fields at the decoder's defaults."""
    if isinstance(obj, Schema):
        out: dict[str, Any] = {}
        for spec in layout_of(type(obj)).fields:
            value = obj.__dict__[spec.name]
            if spec.visible is not None and not spec.visible(viewer, obj):
                out[spec.name] = spec.zero if spec.kind == PRIM else None
                continue
            if spec.kind == PRIM and spec.desc.code.name == "F32" and value is not None:
                value = f32_round(value)
            elif spec.kind == PRIM and spec.desc.code.name == "F64" and value is not None:
                value = float(value)
            out[spec.name] = expected_view(value, viewer)
        return out
    if isinstance(obj, SyncList | list):
        return [expected_view(v, viewer) for v in obj]
    if isinstance(obj, SyncDict | dict):
        return {k: expected_view(v, viewer) for k, v in obj.items()}
    return obj


def sync(
    encoder: StateEncoder[Any], decoders: dict[Any, StateDecoder]
) -> list[tuple[tuple[Any, ...], tuple[bytes, ...]]]:
    """One patch, applied to each viewer's decoder; returns (viewers, messages) per delivery."""
    out = []
    for delivery in encoder.patch(list(decoders)):
        for viewer in delivery.viewers:
            for message in delivery.messages:
                decoders[viewer].apply(message)
        out.append((delivery.viewers, delivery.messages))
    return out


def joined(encoder: StateEncoder[Any], viewer: Any) -> StateDecoder:
    """A decoder that received ``viewer``'s full state."""
    decoder = StateDecoder()
    for message in encoder.full(viewer):
        decoder.apply(message)
    return decoder
