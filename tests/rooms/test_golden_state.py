"""Golden state-sync vectors (tests/golden/state_sync.json), shared with the JS tests.

Both ways: the decoder turns the bytes into the documented states, and the encoder, driven
through the same scenario, produces exactly those bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest

from netbus.errors import ProtocolError
from netbus.rooms import Schema, StateDecoder, StateEncoder, f32, owner_only, to_plain

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "state_sync.json"
RAW = json.loads(GOLDEN.read_text(encoding="utf-8"))
VECTORS = {v["name"]: v for v in RAW["vectors"]}


def unhex(text: str) -> bytes:
    return bytes.fromhex(text)


def plain_keys(value: Any) -> Any:
    """JSON object keys are strings: stringify dict keys the same way."""
    if isinstance(value, dict):
        return {str(k): plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_keys(v) for v in value]
    return value


# ------------------------------------------------------------------------------ scenarios


@dataclass
class Counter(Schema):
    n: int = 0
    label: str = ""
    on: bool = False
    ratio: float = 0.0


@dataclass
class Pos(Schema):
    x: f32 = 0.0
    y: f32 = 0.0


@dataclass
class World(Schema):
    players: dict[int, Pos] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    leader: Pos | None = None


@dataclass
class Seat(Schema):
    uid: int = 0
    hand: Annotated[list[int], owner_only("uid")] = field(default_factory=list)


@dataclass
class Table(Schema):
    seats: list[Seat] = field(default_factory=list)
    pot: int = 0


def scalars() -> dict[int, list[bytes]]:
    encoder: StateEncoder[int] = StateEncoder(Counter(-3, "héllo", True, 0.5))
    return {0: encoder.full(0)}


def world() -> dict[int, list[bytes]]:
    w = World({7: Pos(1.0, 2.0)}, ["a"])
    encoder: StateEncoder[int] = StateEncoder(w)
    out = encoder.full(0)

    def step(change: Callable[[], object]) -> None:
        change()
        (delivery,) = encoder.patch([0])
        out.extend(delivery.messages)

    def m2() -> None:
        w.players[7].x = 1.5
        w.players[7].y = -2.0

    def m3() -> None:
        w.players[9] = Pos()
        del w.players[7]
        w.names.append("b")
        w.names.insert(0, "z")
        w.names[1] = "A"

    def m4() -> None:
        w.leader = Pos(3.0, 0.0)
        w.names.pop(0)

    def m5() -> None:
        w.leader = None
        w.names.clear()
        w.players.clear()

    for change in (m2, m3, m4, m5):
        step(change)
    return {0: out}


def views() -> dict[int, list[bytes]]:
    t = Table([Seat(1, [5]), Seat(2, [9])])
    encoder: StateEncoder[int] = StateEncoder(t)
    out = {1: encoder.full(1), 2: encoder.full(2)}
    t.pot = 10
    t.seats[0].hand.append(6)
    for delivery in encoder.patch([1, 2]):
        for viewer in delivery.viewers:
            out[viewer].extend(delivery.messages)
    return out


SCENARIOS = {"scalars": scalars, "world": world, "views": views}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_encoder_produces_the_vector(name: str) -> None:
    produced = SCENARIOS[name]()
    expected = VECTORS[name]["viewers"]
    assert {str(v): [m.hex(" ") for m in ms] for v, ms in produced.items()} == expected


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_decoder_rebuilds_the_states(name: str) -> None:
    vector = VECTORS[name]
    for viewer, messages in vector["viewers"].items():
        decoder = StateDecoder()
        states = []
        for message in messages:
            decoder.apply(unhex(message))
            assert decoder.complete
            states.append(plain_keys(to_plain(decoder.state)))
        assert states == vector["states"][viewer]


def _after(spec: list[Any] | None) -> StateDecoder:
    decoder = StateDecoder()
    if spec is not None:
        name, viewer, count = spec
        for message in VECTORS[name]["viewers"][viewer][:count]:
            decoder.apply(unhex(message))
    return decoder


@pytest.mark.parametrize("case", RAW["malformed"], ids=[c["name"] for c in RAW["malformed"]])
def test_malformed_messages_fail_cleanly(case: dict[str, Any]) -> None:
    decoder = _after(case["after"])
    with pytest.raises(ProtocolError) as info:
        decoder.apply(unhex(case["hex"]))
    assert info.value.kind == "bad_state"
    # Broken from now on: only a full state is accepted.
    with pytest.raises(ProtocolError, match="full state"):
        decoder.apply(bytes.fromhex("02 05"))
    decoder.apply(unhex(VECTORS["scalars"]["viewers"]["0"][0]))
    assert to_plain(decoder.state)["n"] == -3


def test_the_doc_shows_the_vectors() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "state-sync.md").read_text("utf-8")
    for message in VECTORS["world"]["viewers"]["0"][1:]:
        assert message in doc
