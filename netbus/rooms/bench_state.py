"""Measure state sync on a showcase-like arena: bytes per patch and encode cost.

Run ``python -m netbus.rooms.bench_state [--ticks N]``. The arena: 8 players moving (x and y
change every tick) and 12 collectibles; every 10th tick a player picks one up (its score
changes, the item is removed) and a new one appears. Two variants of the same game: positions
as ``f32`` and as fixed-point ints (tenths of a unit, the showcase's choice when bandwidth
counts). Reports, per patch:

- bytes of the binary patch vs the whole state as JSON (what a naive server sends) and vs a
  JSON object of only the changed fields (a hand-written JSON delta);
- µs to encode a patch (mutations excluded), µs for the mutations themselves (tracking
  included), µs to decode it in Python, all CPU time of this process;
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

__all__ = ["Arena", "Collectible", "FixedArena", "FixedPlayer", "Player", "main", "run"]

PLAYERS = 8
ITEMS = 12
PICK_EVERY = 10
SCALE = 10  #: fixed-point positions: tenths of a unit


@dataclass
class Player(Schema):
    x: f32 = 0.0
    y: f32 = 0.0
    score: int = 0
    name: str = ""
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


@dataclass
class FixedPlayer(Schema):
    x: int = 0
    y: int = 0
    score: int = 0
    name: str = ""
    color: int = 0


@dataclass
class FixedCollectible(Schema):
    x: int = 0
    y: int = 0
    kind: str = "coin"


@dataclass
class FixedArena(Schema):
    players: dict[str, FixedPlayer] = field(default_factory=dict)
    items: dict[str, FixedCollectible] = field(default_factory=dict)


class _Game:
    """The simulation, over either variant: float positions kept apart from the state."""

    def __init__(self, fixed: bool, rng: random.Random) -> None:
        self.fixed = fixed
        self.rng = rng
        self.arena: Any = FixedArena() if fixed else Arena()
        self.pos: dict[str, tuple[float, float]] = {}
        for i in range(PLAYERS):
            uid = f"u{1000 + i}"
            self.pos[uid] = (rng.uniform(0, 800), rng.uniform(0, 600))
            cls: Any = FixedPlayer if fixed else Player
            self.arena.players[uid] = cls(*self._xy(*self.pos[uid]), 0, f"player{i}", i * 40503)
        for i in range(ITEMS):
            self.arena.items[f"c{i}"] = self._item("coin")

    def _xy(self, x: float, y: float) -> tuple[Any, Any]:
        return (round(x * SCALE), round(y * SCALE)) if self.fixed else (x, y)

    def _item(self, kind: str) -> Any:
        cls: Any = FixedCollectible if self.fixed else Collectible
        return cls(*self._xy(self.rng.uniform(0, 800), self.rng.uniform(0, 600)), kind)

    def step(self, tick: int, delta: dict[str, Any] | None) -> None:
        """One tick; ``delta`` (if given) collects the changed fields as a JSON delta would."""
        players = self.arena.players
        for i, (uid, p) in enumerate(players.items()):
            x, y = self.pos[uid]
            angle = tick * 0.05 + i
            x = min(800.0, max(0.0, x + 4.0 * math.cos(angle)))
            y = min(600.0, max(0.0, y + 4.0 * math.sin(angle)))
            self.pos[uid] = (x, y)
            p.x, p.y = self._xy(x, y)
        picked = new_key = picker = ""
        if tick % PICK_EVERY == 0:
            picked = next(iter(self.arena.items))
            del self.arena.items[picked]
            picker = f"u{1000 + tick // PICK_EVERY % PLAYERS}"
            players[picker].score += 1
            new_key = f"c{ITEMS + tick}"
            self.arena.items[new_key] = self._item("gem")
        if delta is None:
            return
        delta["players"] = {uid: {"x": p.x, "y": p.y} for uid, p in players.items()}
        if picked:
            delta["players"][picker]["score"] = players[picker].score
            item = self.arena.items[new_key]
            delta["items"] = {picked: None, new_key: {"x": item.x, "y": item.y, "kind": "gem"}}


def _string_bytes(tick: int) -> int:
    """Bytes of strings (length prefix included) in this tick's patch: item keys and kinds."""
    if tick % PICK_EVERY:
        return 0
    picked = f"c{tick // PICK_EVERY - 1}" if tick <= ITEMS * PICK_EVERY else f"c{tick}"
    return (1 + len(picked)) + (1 + len(f"c{ITEMS + tick}")) + (1 + len("gem"))


def _plain(game: _Game) -> dict[str, Any]:
    """The server's state as plain data, f32 fields rounded as the wire rounds them."""

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return float(struct.unpack("<f", struct.pack("<f", value))[0])
        return value

    def obj(o: Any, names: tuple[str, ...]) -> dict[str, Any]:
        return {n: rounded(getattr(o, n)) for n in names}

    return {
        "players": {
            k: obj(p, ("x", "y", "score", "name", "color"))
            for k, p in game.arena.players.items()
        },
        "items": {k: obj(c, ("x", "y", "kind")) for k, c in game.arena.items.items()},
    }


def run(ticks: int, *, fixed: bool = False, seed: int = 7) -> dict[str, float]:
    """Simulate ``ticks`` ticks with one patch each; return averages per patch.

    Two passes over the same random stream: one timed (CPU time of this process, so other
    load on the machine inflates it less than wall time would), one that measures bytes.
    """
    clock = time.process_time
    game = _Game(fixed, random.Random(seed))
    encoder: StateEncoder[int] = StateEncoder(game.arena)
    viewers = list(range(PLAYERS))
    t_mutate = t_encode = 0.0
    for tick in range(1, ticks + 1):
        t0 = clock()
        game.step(tick, None)
        t1 = clock()
        encoder.patch(viewers)
        t2 = clock()
        t_mutate += t1 - t0
        t_encode += t2 - t1

    game = _Game(fixed, random.Random(seed))
    encoder = StateEncoder(game.arena)
    decoder = StateDecoder()
    full = encoder.full(1)
    for message in full:
        decoder.apply(message)
    full_json = len(orjson.dumps(to_plain(decoder.state)))
    sizes = json_full = json_delta = strings = 0
    t_decode = 0.0
    for tick in range(1, ticks + 1):
        delta: dict[str, Any] = {}
        strings += _string_bytes(tick)
        game.step(tick, delta)
        (delivery,) = encoder.patch(viewers)
        t0 = clock()
        for message in delivery.messages:
            decoder.apply(message)
        t_decode += clock() - t0
        sizes += sum(len(m) for m in delivery.messages)
        json_full += len(orjson.dumps(to_plain(decoder.state)))
        json_delta += len(orjson.dumps(delta))
    if to_plain(decoder.state) != _plain(game):  # pragma: no cover - a broken run
        raise RuntimeError("the decoder fell out of step with the encoder")
    fields = 2 * PLAYERS + 2 / PICK_EVERY  # x, y per player; score + item churn
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
    results = {}
    for name, fixed in (("f32", False), ("fixed", True)):
        runs = [run(args.ticks, fixed=fixed) for _ in range(args.repeat)]
        results[name] = {k: min(r[k] for r in runs) for k in runs[0]}
    print(f"{'':32} {'f32':>10} {'fixed':>10}")
    for key in results["f32"]:
        print(f"{key:32} {results['f32'][key]:10.2f} {results['fixed'][key]:10.2f}")
    for name, best in results.items():
        per_room = best["mutate_us"] + best["encode_us"]
        share = per_room * 20 * 200 / 1e4
        print(f"cpu share, 200 rooms at 20 Hz ({name}): {share:.1f} % of a core")
    print(f"empty loop ns/iteration: {_calibrate():.2f}")


if __name__ == "__main__":
    main()
