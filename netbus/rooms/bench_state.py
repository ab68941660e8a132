"""Measure state sync on a showcase-like arena: bytes per patch and encode cost.

Run ``python -m netbus.rooms.bench_state [--ticks N]``. The arena: 8 players moving (x, y
change every tick), a tick counter, 12 collectibles; every 10th tick a player picks one up
(its score changes, the item is removed) and a new one appears. Reports, per patch:

- bytes of the binary patch vs the whole state as JSON (what a naive server sends) and vs a
  JSON object of only the changed fields (a hand-written JSON delta);
- µs to encode a patch (mutations excluded), µs for the mutations themselves (tracking
  cost), µs to decode it in Python;
- how many patch bytes are strings (to judge string deduplication).

Numbers, not asserts: docs/state-sync.md records them with the machine they came from.
"""

from __future__ import annotations

import argparse
import math
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from netbus.rooms.decoder import StateDecoder, to_plain
from netbus.rooms.encoder import StateEncoder
from netbus.rooms.layout import f32
from netbus.rooms.schema import Schema

__all__ = ["Arena", "Collectible", "Player", "main", "run"]

PLAYERS = 8
ITEMS = 12
PICK_EVERY = 10


@dataclass
class Player(Schema):
    name: str = ""
    x: f32 = 0.0
    y: f32 = 0.0
    score: int = 0
    color: int = 0


@dataclass
class Collectible(Schema):
    x: f32 = 0.0
    y: f32 = 0.0
    kind: str = "coin"


@dataclass
class Arena(Schema):
    players: dict[str, Player] = field(default_factory=dict)
    items: dict[str, Collectible] = field(default_factory=dict)
    tick: int = 0


def _arena(rng: random.Random) -> Arena:
    arena = Arena()
    for i in range(PLAYERS):
        arena.players[f"u{1000 + i}"] = Player(
            f"player{i}", rng.uniform(0, 800), rng.uniform(0, 600), 0, rng.randrange(1 << 24)
        )
    for i in range(ITEMS):
        arena.items[f"c{i}"] = Collectible(rng.uniform(0, 800), rng.uniform(0, 600))
    return arena


def _step(arena: Arena, tick: int, rng: random.Random, delta: dict[str, Any] | None) -> None:
    """One simulation tick; ``delta`` (if given) collects the changed fields as JSON would."""
    arena.tick = tick
    for i, p in enumerate(arena.players.values()):
        angle = tick * 0.05 + i
        p.x = min(800.0, max(0.0, p.x + 4.0 * math.cos(angle)))
        p.y = min(600.0, max(0.0, p.y + 4.0 * math.sin(angle)))
    picked = new_key = ""
    if tick % PICK_EVERY == 0:
        picked = next(iter(arena.items))
        del arena.items[picked]
        picker = f"u{1000 + tick // PICK_EVERY % PLAYERS}"
        arena.players[picker].score += 1
        new_key = f"c{ITEMS + tick}"
        arena.items[new_key] = Collectible(rng.uniform(0, 800), rng.uniform(0, 600), "gem")
    if delta is None:
        return
    delta["tick"] = tick
    delta["players"] = {uid: {"x": p.x, "y": p.y} for uid, p in arena.players.items()}
    if picked:
        delta["players"][picker]["score"] = arena.players[picker].score
        item = arena.items[new_key]
        delta["items"] = {picked: None, new_key: {"x": item.x, "y": item.y, "kind": item.kind}}


def _string_bytes(arena: Arena, tick: int) -> int:
    """Bytes of strings (length prefix included) in this tick's patch: new item keys + kinds."""
    if tick % PICK_EVERY:
        return 0
    key = f"c{ITEMS + tick}"
    old = 1 + len(next(iter(arena.items)))  # the DEL key (approximate: same size class)
    return old + (1 + len(key)) + (1 + len("gem"))


def run(ticks: int, seed: int = 7) -> dict[str, float]:
    """Simulate ``ticks`` ticks with one patch each; return averages per patch.

    Two passes over the same random stream: one timed (CPU time of this process, so other
    load on the machine inflates it less than wall time would), one that measures bytes.
    """
    rng = random.Random(seed)
    arena = _arena(rng)
    encoder: StateEncoder[int] = StateEncoder(arena)
    viewers = list(range(PLAYERS))
    t_mutate = t_encode = 0.0
    clock = time.process_time
    for tick in range(1, ticks + 1):
        t0 = clock()
        _step(arena, tick, rng, None)
        t1 = clock()
        encoder.patch(viewers)
        t2 = clock()
        t_mutate += t1 - t0
        t_encode += t2 - t1

    rng = random.Random(seed)
    arena = _arena(rng)
    encoder = StateEncoder(arena)
    decoder = StateDecoder()
    full = encoder.full(1)
    for message in full:
        decoder.apply(message)
    full_json = len(orjson.dumps(to_plain(decoder.state)))
    sizes = json_full = json_delta = strings = 0
    t_decode = 0.0
    for tick in range(1, ticks + 1):
        delta: dict[str, Any] = {}
        strings += _string_bytes(arena, tick)
        _step(arena, tick, rng, delta)
        (delivery,) = encoder.patch(viewers)
        t0 = clock()
        for message in delivery.messages:
            decoder.apply(message)
        t_decode += clock() - t0
        sizes += sum(len(m) for m in delivery.messages)
        json_full += len(orjson.dumps(to_plain(decoder.state)))
        json_delta += len(orjson.dumps(delta))
    if to_plain(decoder.state) != _plain(arena):  # pragma: no cover - a broken run
        raise RuntimeError("the decoder fell out of step with the encoder")
    fields = 2 * PLAYERS + 1 + 2 / PICK_EVERY  # x, y per player, tick, score + item churn
    return {
        "full_state_bytes": sum(len(m) for m in full),
        "full_state_json_bytes": full_json,
        "patch_bytes": sizes / ticks,
        "patch_json_full_bytes": json_full / ticks,
        "patch_json_delta_bytes": json_delta / ticks,
        "string_bytes_per_patch": strings / ticks,
        "mutate_us": t_mutate / ticks * 1e6,
        "encode_us": t_encode / ticks * 1e6,
        "decode_us": t_decode / ticks * 1e6,
        "changed_fields": fields,
        "track_and_encode_us_per_field": (t_mutate + t_encode) / ticks / fields * 1e6,
    }


def _plain(arena: Arena) -> dict[str, Any]:
    """The server's state as plain data, f32 fields rounded as the wire rounds them."""

    def f32_round(x: float) -> float:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])

    def player(p: Player) -> dict[str, Any]:
        return {
            "name": p.name,
            "x": f32_round(p.x),
            "y": f32_round(p.y),
            "score": p.score,
            "color": p.color,
        }

    return {
        "players": {k: player(p) for k, p in arena.players.items()},
        "items": {
            k: {"x": f32_round(c.x), "y": f32_round(c.y), "kind": c.kind}
            for k, c in arena.items.items()
        },
        "tick": arena.tick,
    }


def _calibrate() -> float:
    """ns per iteration of an empty Python loop: scale the µs above by this machine's speed."""
    t0 = time.process_time()
    for _ in range(1_000_000):
        pass
    return (time.process_time() - t0) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for timings")
    args = parser.parse_args(argv)
    runs = [run(args.ticks) for _ in range(args.repeat)]
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    for key, value in best.items():
        print(f"{key:32} {value:10.2f}")
    print(f"{'empty loop ns/iteration':32} {_calibrate():10.2f}")
    per_room = best["mutate_us"] + best["encode_us"]
    print(f"{'cpu share, 200 rooms at 20 Hz':32} {per_room * 20 * 200 / 1e4:9.1f} %")


if __name__ == "__main__":
    main()
