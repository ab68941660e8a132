/**
 * roomstate.js: rebuilds a netbus room state from state-sync messages (docs/state-sync.md).
 *
 * The JavaScript twin of netbus/rooms/decoder.py. Plain ES module, no dependencies besides
 * netbus.js (for ProtocolError). It needs no schema of its own: every full state starts with the
 * schema table. Structs decode to plain objects, lists to Arrays and dicts to Maps (keys are
 * strings or numbers, as declared). Treat them as read-only: the next patch assumes the state
 * the server sent.
 *
 *     const room = new StateDecoder();
 *     room.onReset((state) => {
 *       room.onAdd(state.players, (player, uid) => {
 *         room.listen(player, "x", (x, previous) => draw(uid, player));
 *       });
 *     });
 *     room.apply(bodyBytes); // for each state message, in order
 *
 * Malformed input throws ProtocolError with kind "bad_state" and nothing else. A message is
 * applied op by op, so after an error the state is half-updated: the decoder refuses everything
 * but a new full state (RESET) from then on, and the client should ask for one (rejoin).
 * Callbacks fire after the message that caused them has been applied, in op order; an error
 * thrown by a callback propagates out of apply() and skips the remaining callbacks.
 */

import { ProtocolError } from "./netbus.js";

// Wire constants (docs/state-sync.md §1, netbus/rooms/wire.py).
const FLAG_RESET = 0x01;
const FLAG_END = 0x02;
const OP_SELECT = 0x80;
const OP_NULL = 0x81;
const OP_PUT = 0x82;
const OP_DEL = 0x83;
const OP_PUSH = 0x84;
const OP_INSERT = 0x85;
const OP_REPLACE = 0x86;
const OP_CLEAR = 0x87;
const OP_FIELDS = 0x88;
const OP_NEXT = 0x8f; // 0x90-0xbf: SELECT previous ref + 1 ... + 48
const NEXT_MAX = 48;
const OP_FIELDS_INLINE = 0xc0; // 0xc1-0xff: FIELDS with the mask of fields 0-5 inline
const T_BOOL = 1, T_INT = 2, T_F64 = 3, T_F32 = 4, T_STR = 5, T_STRUCT = 6, T_LIST = 7, T_DICT = 8;
const NULLABLE = 0x40;
const MAX_FIELDS = 128;
const MAX_TYPES = 256;
const MAX_NAME_BYTES = 64;
const MAX_STRING_BYTES = 4096;
const MAX_UVARINT = 2 ** 32 - 1;
const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const ZERO = { [T_BOOL]: false, [T_INT]: 0, [T_F64]: 0, [T_F32]: 0, [T_STR]: "" };

export const DEFAULT_MAX_NODES = 2 ** 20;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Bounds-checked reads; every failure is ProtocolError("bad_state"). */
class StateReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  fail(detail) {
    return new ProtocolError("bad_state", `${detail} (offset ${this.pos})`);
  }

  get atEnd() { return this.pos >= this.bytes.length; }

  u8() {
    if (this.pos >= this.bytes.length) throw this.fail("truncated");
    return this.bytes[this.pos++];
  }

  /** The bytes of one LEB128 varint (at most maxBytes), checked canonical. */
  #varintBytes(maxBytes) {
    const start = this.pos;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= this.bytes.length) throw this.fail("truncated varint");
      const byte = this.bytes[this.pos++];
      if (byte < 0x80) {
        if (byte === 0 && i > 0) throw this.fail("overlong varint");
        return this.bytes.subarray(start, this.pos);
      }
    }
    throw this.fail("varint too long");
  }

  /** A ref, count, length or index: at most 5 bytes and 2**32 - 1. */
  uvarint() {
    const bytes = this.#varintBytes(5);
    let value = 0;
    for (let i = bytes.length - 1; i >= 0; i--) value = value * 128 + (bytes[i] & 0x7f);
    if (value > MAX_UVARINT) throw this.fail("uvarint out of range");
    return value;
  }

  /** A zigzag int: at most 8 bytes, |value| <= 2**53 - 1 (exact as a Number). */
  svarint() {
    const bytes = this.#varintBytes(8);
    let lo = 0; // bits 0..27
    let hi = 0; // bits 28..55
    for (let i = 0; i < bytes.length; i++) {
      const group = bytes[i] & 0x7f;
      if (i < 4) lo += group * 2 ** (7 * i);
      else hi += group * 2 ** (7 * (i - 4));
    }
    if (hi >= 2 ** 26) throw this.fail("int out of range");
    const half = hi * 2 ** 27 + Math.floor(lo / 2);
    const value = lo % 2 ? -(half + 1) : half;
    if (!Number.isSafeInteger(value)) throw this.fail("int out of range");
    return value;
  }

  /** A FIELDS mask as ascending field indexes: up to 19 bytes, not zero, all < nfields. */
  mask(nfields) {
    const bytes = this.#varintBytes(19);
    const indexes = [];
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 7; bit++) {
        if (bytes[i] & (1 << bit)) indexes.push(7 * i + bit);
      }
    }
    if (indexes.length === 0 || indexes[indexes.length - 1] >= nfields) {
      throw this.fail("bad field mask");
    }
    return indexes;
  }

  boolean() {
    const byte = this.u8();
    if (byte > 1) throw this.fail(`bool byte ${byte}`);
    return byte === 1;
  }

  f32() {
    if (this.pos + 4 > this.bytes.length) throw this.fail("truncated f32");
    const value = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return value;
  }

  f64() {
    if (this.pos + 8 > this.bytes.length) throw this.fail("truncated f64");
    const value = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return value;
  }

  string(limit = MAX_STRING_BYTES) {
    const size = this.uvarint();
    if (size > limit) throw this.fail(`string of ${size} bytes exceeds ${limit}`);
    if (this.pos + size > this.bytes.length) throw this.fail("truncated string");
    let text;
    try {
      text = utf8.decode(this.bytes.subarray(this.pos, this.pos + size));
    } catch {
      throw this.fail("invalid UTF-8");
    }
    this.pos += size;
    return text;
  }
}

/** Decoded state -> plain objects and arrays (Map keys become strings); for logs and tests. */
export function toPlain(value) {
  if (value instanceof Map) {
    const out = {};
    for (const [key, item] of value) out[String(key)] = toPlain(item);
    return out;
  }
  if (Array.isArray(value)) return value.map(toPlain);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [key, item] of Object.entries(value)) out[key] = toPlain(item);
    return out;
  }
  return value;
}

function discard(bucket, callback) {
  const at = bucket.indexOf(callback);
  if (at >= 0) bucket.splice(at, 1);
}

/** Applies state-sync messages in order; `state` is the rebuilt root (null before). */
export class StateDecoder {
  #types = [];
  #refs = new Map(); // ref -> node {ref, desc, type, value, listeners}
  #nodes = new WeakMap(); // decoded object -> node
  #broken = true;
  #resetting = false;
  #events = [];
  #onPatch = [];
  #onReset = [];

  constructor({ maxNodes = DEFAULT_MAX_NODES } = {}) {
    this.maxNodes = maxNodes;
    this.state = null;
    this.seq = 0;
    this.complete = false;
  }

  // ------------------------------------------------------------------------- callbacks

  /** callback(value, previous) whenever obj[field] changes. Returns an unsubscribe function. */
  listen(obj, field, callback) {
    const node = this.#nodeOf(obj, T_STRUCT);
    if (!node.type.names.includes(field)) {
      throw new TypeError(`${node.type.name} has no synced field ${field}`);
    }
    return this.#add(node, `.${field}`, callback);
  }

  /** callback(item, key) per item added to a list or dict (with immediate: also existing). */
  onAdd(coll, callback, { immediate = true } = {}) {
    const node = this.#nodeOf(coll, T_LIST, T_DICT);
    if (immediate) {
      const entries = coll instanceof Map ? [...coll] : coll.map((item, i) => [i, item]);
      for (const [key, item] of entries) callback(item, key);
    }
    return this.#add(node, "+", callback);
  }

  /** callback(item, key) per item removed from a list or dict. */
  onRemove(coll, callback) {
    return this.#add(this.#nodeOf(coll, T_LIST, T_DICT), "-", callback);
  }

  /** callback(item, key, previous) when a list index or dict key gets a new value. */
  onChange(coll, callback) {
    return this.#add(this.#nodeOf(coll, T_LIST, T_DICT), "=", callback);
  }

  /** callback(seq) after the last message of each patch. */
  onPatch(callback) {
    this.#onPatch.push(callback);
    return () => discard(this.#onPatch, callback);
  }

  /** callback(state) after a full state (join, resync): attach listeners here. */
  onReset(callback) {
    this.#onReset.push(callback);
    return () => discard(this.#onReset, callback);
  }

  #nodeOf(obj, ...codes) {
    const node = obj !== null && typeof obj === "object" ? this.#nodes.get(obj) : undefined;
    if (node === undefined || !codes.includes(node.desc.code)) {
      throw new TypeError("not a decoded state object of the right kind");
    }
    return node;
  }

  #add(node, key, callback) {
    node.listeners ??= new Map();
    let bucket = node.listeners.get(key);
    if (bucket === undefined) node.listeners.set(key, (bucket = []));
    bucket.push(callback);
    return () => discard(bucket, callback);
  }

  #event(node, key, ...args) {
    const bucket = node.listeners?.get(key);
    if (bucket !== undefined && bucket.length > 0) this.#events.push([bucket, args]);
  }

  // ----------------------------------------------------------------------------- apply

  /** Apply one message (a state message's body: Uint8Array or ArrayBuffer). */
  apply(bytes) {
    if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
    const reader = new StateReader(bytes);
    this.#events = [];
    let flags, seq;
    try {
      flags = reader.u8();
      if (flags & ~(FLAG_RESET | FLAG_END)) throw reader.fail(`unknown flags ${flags}`);
      seq = reader.uvarint();
      if (flags & FLAG_RESET) this.#beginReset(reader);
      else if (this.#broken) throw reader.fail("no state to patch: a full state must come first");
      this.#ops(reader);
    } catch (error) {
      this.#broken = true;
      this.#events = [];
      if (error instanceof ProtocolError) throw error;
      if (error instanceof RangeError) throw new ProtocolError("bad_state", String(error.message));
      throw error;
    }
    this.seq = seq;
    this.complete = Boolean(flags & FLAG_END);
    const events = this.#events;
    this.#events = [];
    for (const [bucket, args] of events) {
      for (const callback of [...bucket]) callback(...args);
    }
    if (this.complete) {
      if (this.#resetting) {
        this.#resetting = false;
        for (const callback of [...this.#onReset]) callback(this.state);
      }
      for (const callback of [...this.#onPatch]) callback(seq);
    }
  }

  // ------------------------------------------------------------------------ full state

  #beginReset(reader) {
    this.#types = this.#schema(reader);
    this.#refs = new Map();
    this.#resetting = true;
    this.#broken = false;
    this.state = this.#create(reader, 0, { code: T_STRUCT, nullable: false, struct: 0 });
  }

  #schema(reader) {
    const count = reader.uvarint();
    if (count < 1 || count > MAX_TYPES) throw reader.fail(`${count} types in the schema table`);
    const types = [];
    for (let t = 0; t < count; t++) {
      const name = this.#name(reader);
      const nfields = reader.uvarint();
      if (nfields > MAX_FIELDS) throw reader.fail(`${nfields} fields in type ${name}`);
      const names = [];
      const descs = [];
      for (let f = 0; f < nfields; f++) {
        const field = this.#name(reader);
        if (names.includes(field)) throw reader.fail(`duplicate field ${field} in type ${name}`);
        names.push(field);
        descs.push(this.#type(reader, count, true));
      }
      const defaults = descs.map((d) => (d.nullable || !(d.code in ZERO) ? null : ZERO[d.code]));
      types.push({ name, names, descs, defaults });
    }
    return types;
  }

  #name(reader) {
    const name = reader.string(MAX_NAME_BYTES);
    if (!NAME.test(name)) throw reader.fail(`bad name ${JSON.stringify(name)}`);
    return name;
  }

  #type(reader, ntypes, top) {
    const head = reader.u8();
    const code = head & 0x3f;
    const nullable = Boolean(head & NULLABLE);
    if (head & 0x80 || code < T_BOOL || code > T_DICT) throw reader.fail(`bad type byte ${head}`);
    if (code === T_LIST || code === T_DICT) {
      if (nullable || !top) throw reader.fail("a list or dict cannot be nullable or an element");
      let key = 0;
      if (code === T_DICT) {
        key = reader.u8();
        if (key !== T_INT && key !== T_STR) throw reader.fail(`bad dict key type ${key}`);
      }
      return { code, nullable: false, elem: this.#type(reader, ntypes, false), key };
    }
    if (nullable && !top) throw reader.fail("list and dict elements cannot be nullable");
    if (code === T_STRUCT) {
      const struct = reader.uvarint();
      if (struct >= ntypes) throw reader.fail(`struct type ${struct} out of range`);
      return { code, nullable, struct };
    }
    return { code, nullable };
  }

  // ------------------------------------------------------------------------------- ops

  #create(reader, ref, desc) {
    if (this.#refs.has(ref)) throw reader.fail(`node ${ref} already exists`);
    if (this.#refs.size >= this.maxNodes) throw reader.fail(`more than ${this.maxNodes} nodes`);
    let value;
    let type = null;
    if (desc.code === T_STRUCT) {
      type = this.#types[desc.struct];
      value = {};
      type.names.forEach((name, i) => { value[name] = type.defaults[i]; });
    } else if (desc.code === T_LIST) {
      value = [];
    } else {
      value = new Map();
    }
    const node = { ref, desc, type, value, listeners: null };
    this.#refs.set(ref, node);
    this.#nodes.set(value, node);
    return value;
  }

  /** Forget a removed subtree's nodes (iteratively: depth is the server's choice). */
  #free(value) {
    const stack = [value];
    while (stack.length > 0) {
      const item = stack.pop();
      if (item === null || typeof item !== "object") continue;
      const node = this.#nodes.get(item);
      if (node === undefined) continue;
      this.#refs.delete(node.ref);
      // Loops, not push(...spread): a big collection would overflow the argument limit.
      const children = item instanceof Map ? item.values() : Array.isArray(item) ? item : Object.values(item);
      for (const child of children) stack.push(child);
    }
  }

  #value(reader, desc) {
    switch (desc.code) {
      case T_F32: return reader.f32();
      case T_INT: return reader.svarint();
      case T_STR: return reader.string();
      case T_F64: return reader.f64();
      case T_BOOL: return reader.boolean();
      default: return this.#create(reader, reader.uvarint(), desc);
    }
  }

  #key(reader, desc) {
    return desc.key === T_STR ? reader.string() : reader.svarint();
  }

  #ops(reader) {
    let node = null;
    while (!reader.atEnd) {
      const op = reader.u8();
      if (op === OP_SELECT || (op > OP_NEXT && op <= OP_NEXT + NEXT_MAX)) {
        let ref;
        if (op === OP_SELECT) ref = reader.uvarint();
        else if (node === null) throw reader.fail("NEXT before any SELECT");
        else ref = node.ref + op - OP_NEXT;
        node = this.#refs.get(ref) ?? null;
        if (node === null) throw reader.fail(`SELECT of unknown node ${ref}`);
        continue;
      }
      if (node === null) throw reader.fail(`op ${op} before any SELECT`);
      if (node.desc.code === T_STRUCT) this.#structOp(reader, node, op);
      else if (node.desc.code === T_LIST) this.#listOp(reader, node, op);
      else this.#dictOp(reader, node, op);
    }
  }

  #structOp(reader, node, op) {
    const type = node.type;
    const count = type.descs.length;
    if (op < 0x80) {
      if (op >= count) throw reader.fail(`SET of field ${op}; ${type.name} has ${count}`);
      this.#set(node, op, this.#value(reader, type.descs[op]));
    } else if (op === OP_FIELDS || op > OP_FIELDS_INLINE) {
      let indexes;
      if (op === OP_FIELDS) {
        indexes = reader.mask(count);
      } else {
        indexes = [0, 1, 2, 3, 4, 5].filter((bit) => op & (1 << bit));
        if (indexes[indexes.length - 1] >= count) throw reader.fail(`FIELDS of ${op & 0x3f}; ${type.name} has ${count} fields`);
      }
      for (const index of indexes) {
        this.#set(node, index, this.#value(reader, type.descs[index]));
      }
    } else if (op === OP_NULL) {
      const index = reader.uvarint();
      if (index >= count || !type.descs[index].nullable) {
        throw reader.fail(`NULL of field ${index}, not a nullable field`);
      }
      this.#set(node, index, null);
    } else {
      throw reader.fail(`op ${op} on a struct`);
    }
  }

  #set(node, index, value) {
    const name = node.type.names[index];
    const previous = node.value[name];
    node.value[name] = value;
    this.#free(previous);
    this.#event(node, `.${name}`, value, previous);
  }

  #listOp(reader, node, op) {
    const items = node.value;
    const elem = node.desc.elem;
    if (op === OP_PUSH) {
      items.push(this.#value(reader, elem));
      this.#event(node, "+", items[items.length - 1], items.length - 1);
    } else if (op === OP_INSERT) {
      const index = reader.uvarint();
      if (index > items.length) throw reader.fail(`INSERT at ${index} in a list of ${items.length}`);
      const value = this.#value(reader, elem);
      items.splice(index, 0, value);
      this.#event(node, "+", value, index);
    } else if (op === OP_REPLACE || op === OP_DEL) {
      const index = reader.uvarint();
      if (index >= items.length) throw reader.fail(`index ${index} in a list of ${items.length}`);
      const previous = items[index];
      if (op === OP_DEL) {
        items.splice(index, 1);
        this.#free(previous);
        this.#event(node, "-", previous, index);
        return;
      }
      const value = this.#value(reader, elem);
      items[index] = value;
      this.#free(previous);
      this.#event(node, "=", value, index, previous);
    } else if (op === OP_CLEAR) {
      const removed = items.splice(0, items.length);
      removed.forEach((previous, index) => {
        this.#free(previous);
        this.#event(node, "-", previous, index);
      });
    } else {
      throw reader.fail(`op ${op} on a list`);
    }
  }

  #dictOp(reader, node, op) {
    const items = node.value;
    const elem = node.desc.elem;
    if (op === OP_PUT) {
      const key = this.#key(reader, node.desc);
      const value = this.#value(reader, elem);
      if (items.has(key)) {
        const previous = items.get(key);
        items.set(key, value);
        this.#free(previous);
        this.#event(node, "=", value, key, previous);
      } else {
        items.set(key, value);
        this.#event(node, "+", value, key);
      }
    } else if (op === OP_DEL) {
      const key = this.#key(reader, node.desc);
      if (!items.has(key)) throw reader.fail(`DEL of missing key ${JSON.stringify(key)}`);
      const previous = items.get(key);
      items.delete(key);
      this.#free(previous);
      this.#event(node, "-", previous, key);
    } else if (op === OP_CLEAR) {
      const removed = [...items];
      items.clear();
      for (const [key, previous] of removed) {
        this.#free(previous);
        this.#event(node, "-", previous, key);
      }
    } else {
      throw reader.fail(`op ${op} on a dict`);
    }
  }
}
