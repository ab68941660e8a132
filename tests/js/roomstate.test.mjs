// Unit tests for netbus/roles/web/static/roomstate.js (the room state decoder).
// Run: node --test tests/js/
//
// The golden vectors in tests/golden/state_sync.json are shared with the Python tests, which
// also check that the encoder produces them. Here: decoding, callbacks, and a fuzz loop that
// feeds corrupted messages and must see nothing but ProtocolError("bad_state").

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { ProtocolError } from "../../netbus/roles/web/static/netbus.js";
import { StateDecoder, toPlain } from "../../netbus/roles/web/static/roomstate.js";

const GOLDEN = JSON.parse(readFileSync(new URL("../golden/state_sync.json", import.meta.url), "utf8"));
const VECTORS = Object.fromEntries(GOLDEN.vectors.map((v) => [v.name, v]));
const unhex = (text) => new Uint8Array(Buffer.from(text.replace(/\s/g, ""), "hex"));

function decoderAfter(spec) {
  const decoder = new StateDecoder();
  if (spec !== null) {
    const [name, viewer, count] = spec;
    for (const message of VECTORS[name].viewers[viewer].slice(0, count)) decoder.apply(unhex(message));
  }
  return decoder;
}

const isBadState = (error) => error instanceof ProtocolError && error.kind === "bad_state";

describe("golden vectors", () => {
  for (const vector of GOLDEN.vectors) {
    it(`decodes ${vector.name}`, () => {
      for (const [viewer, messages] of Object.entries(vector.viewers)) {
        const decoder = new StateDecoder();
        const states = messages.map((message) => {
          decoder.apply(unhex(message));
          assert.equal(decoder.complete, true);
          return toPlain(decoder.state);
        });
        assert.deepEqual(states, vector.states[viewer]);
      }
    });
  }

  for (const vector of GOLDEN.malformed) {
    it(`rejects ${vector.name}`, () => {
      const decoder = decoderAfter(vector.after);
      assert.throws(() => decoder.apply(unhex(vector.hex)), isBadState);
      // Broken from now on: only a full state is accepted.
      assert.throws(() => decoder.apply(unhex("02 05")), /full state/);
      decoder.apply(unhex(VECTORS.scalars.viewers["0"][0]));
      assert.equal(decoder.state.n, -3);
    });
  }

  it("keeps int dict keys as numbers and str keys as strings", () => {
    const decoder = decoderAfter(["world", "0", 1]);
    assert.deepEqual([...decoder.state.players.keys()], [7]);
    assert.equal(decoder.seq, 0);
    decoder.apply(unhex(VECTORS.world.viewers["0"][1]).buffer); // an ArrayBuffer works too
    assert.equal(decoder.seq, 1);
    assert.equal(decoder.state.players.get(7).x, 1.5);
  });
});

describe("callbacks", () => {
  it("fire after each message with values and previous values", () => {
    const decoder = new StateDecoder();
    const events = [];
    decoder.onReset((state) => {
      events.push(["reset", toPlain(state).names.length]);
      decoder.onAdd(state.players, (item, key) => {
        events.push(["add", key, item.x]);
        decoder.listen(item, "x", (x, previous) => events.push(["x", key, x, previous]));
      });
      decoder.onRemove(state.players, (item, key) => events.push(["remove", key]));
      decoder.onAdd(state.names, (name, index) => events.push(["name+", index, name]), { immediate: false });
      decoder.onRemove(state.names, (name, index) => events.push(["name-", index, name]));
      decoder.onChange(state.names, (name, index, previous) => events.push(["name=", index, name, previous]));
      decoder.listen(state, "leader", (leader, previous) => events.push(["leader", leader === null, previous === null]));
    });
    decoder.onPatch((seq) => events.push(["patch", seq]));
    for (const message of VECTORS.world.viewers["0"]) decoder.apply(unhex(message));
    assert.deepEqual(events, [
      ["reset", 1], ["add", 7, 1], ["patch", 0],
      ["x", 7, 1.5, 1], ["patch", 1],
      ["add", 9, 0], ["remove", 7], ["name+", 1, "b"], ["name+", 0, "z"], ["name=", 1, "A", "a"], ["patch", 2],
      ["leader", false, true], ["name-", 0, "z"], ["patch", 3],
      ["leader", true, false], ["name-", 0, "A"], ["name-", 1, "b"], ["remove", 9], ["patch", 4],
    ]);
  });

  it("can be removed, and a callback error surfaces after the state is applied", () => {
    const decoder = decoderAfter(["world", "0", 1]);
    const seen = [];
    const player = decoder.state.players.get(7);
    const stop = decoder.listen(player, "x", (x) => seen.push(x));
    decoder.listen(player, "y", () => { throw new Error("boom"); });
    assert.throws(() => decoder.apply(unhex(VECTORS.world.viewers["0"][1])), /boom/);
    assert.equal(player.y, -2); // applied before callbacks ran
    assert.deepEqual(seen, [1.5]);
    stop();
    assert.throws(() => decoder.listen(player, "nope", () => {}), TypeError);
    assert.throws(() => decoder.onAdd({}, () => {}), TypeError);
  });
});

describe("fuzz", () => {
  // A small deterministic PRNG: failures reproduce.
  function rng(seed) {
    let state = seed >>> 0;
    return () => {
      state = (state * 1664525 + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
  }

  it("corrupted messages raise only ProtocolError(bad_state)", () => {
    const random = rng(12345);
    const sources = GOLDEN.vectors.flatMap((v) => Object.values(v.viewers).flat()).map(unhex);
    let failures = 0;
    for (let round = 0; round < 3000; round++) {
      const source = sources[Math.floor(random() * sources.length)];
      const bytes = Uint8Array.from(source);
      const mode = Math.floor(random() * 4);
      let data = bytes;
      if (mode === 0) data = bytes.subarray(0, Math.floor(random() * bytes.length));
      else if (mode === 1) bytes[Math.floor(random() * bytes.length)] ^= 1 << Math.floor(random() * 8);
      else if (mode === 2) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      else data = Uint8Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256));
      // Patches are tried on top of the vector's full state, full states on a fresh decoder.
      const decoder = source[0] & 1 ? new StateDecoder() : decoderAfter(["world", "0", 1]);
      try {
        decoder.apply(data);
      } catch (error) {
        if (!isBadState(error)) throw error;
        failures++;
      }
    }
    assert.ok(failures > 1000, `only ${failures} corrupted messages were rejected`);
  });

  it("bounds the number of nodes", () => {
    const decoder = new StateDecoder({ maxNodes: 3 });
    assert.throws(() => decoder.apply(unhex(VECTORS.world.viewers["0"][0])), isBadState);
  });
});
