/**
 * netbus.js: a browser client for the netbus wire protocol, version 1, over WebSocket.
 *
 * Plain ES module with no dependencies and no build step. Runs in browsers and in Node >= 20
 * (tests inject a WebSocket test double; Node 20 has no global WebSocket).
 *
 * Wire format (PROTOCOL.md): one binary WebSocket message carries exactly one cmd_buf with no
 * length prefix:
 *
 *     u16 stype | u16 ctype | u32 utag | u16 proto_type | body        (all little-endian)
 *
 * proto_type 1 (JSON): the body is one string whose text is {"0": value}.
 * proto_type 2 (BUF):  fields packed in order, following the command's layout. Layouts come
 *                      from the services' own declarations (CodecRegistry.fromDeclaration;
 *                      `python -m netbus.service.declare pkg.mod:Service` prints one), never
 *                      transcribed by hand; CODECS holds the built-in services'.
 * A string is a u16 count of UTF-8 bytes, then those bytes.
 *
 * Errors:
 *
 *     NetbusError
 *     ├── ProtocolError            bytes from the peer break the contract (decodeCmd throws only this)
 *     ├── LocalProtocolError       our own value cannot go on the wire (a bug in the caller)
 *     ├── ServiceUnavailableError  the gateway says the request's service cannot be reached
 *     ├── LoginRequiredError       the gateway dropped the request because nobody is logged in
 *     ├── RequestFailedError       the service answered REQUEST_FAILED (unknown command, bad body…)
 *     ├── RequestTimeoutError      no reply arrived within timeoutMs
 *     └── ConnectionClosedError    the connection closed (or was never open) before a reply came
 *
 * The protocol has no request ids. A reply has the same (stype, ctype) as its request, and the
 * service answers one connection's requests in order, so NetbusClient matches replies to
 * requests FIFO per (stype, ctype). Pushes use ctypes that are never requested.
 */

import { BUILTIN_DECLARATION } from "./builtin_codecs.js";

// ------------------------------------------------------------------------------- constants

/** Body encodings (PROTOCOL.md §1). Any other proto_type is malformed. */
export const ProtoType = Object.freeze({ JSON: 1, BUF: 2 });

/** Service numbers. 0 is the gateway's own control channel, designed by netbus. */
export const Stype = Object.freeze({ Gateway: 0, TalkRoom: 1, Auth: 2 });

/** Talkroom commands, stype 1 (PROTOCOL.md §4.1). */
export const TalkroomCmd = Object.freeze({
  Enter: 1,
  Exit: 2,
  UserArrived: 3, // push
  UserExit: 4, // push
  SendMsg: 5,
  UserMsg: 6, // push
});

/** Auth commands, stype 2 (PROTOCOL.md §4.2). JSON only. */
export const AuthCmd = Object.freeze({
  GUEST_LOGIN: 1,
  RELOGIN: 2, // push: this account logged in elsewhere; the gateway closes this connection next
});

/** Gateway control commands, stype 0, designed by netbus (docs/protocol.md §7). */
export const GatewayCmd = Object.freeze({
  HEARTBEAT: 1, // client -> gateway, echoed back; JSON null / BUF empty
  SERVICE_UNAVAILABLE: 2, // gateway -> client: {stype, ctype} of a packet it could not deliver;
  //                         ctype 0: the service's last instance went down
  SHUTDOWN: 3, // gateway -> client: {reason}; the gateway is going away
  RATE_LIMITED: 4, // gateway -> client: {dropped} packets were dropped by the rate limit
  LOGIN_REQUIRED: 5, // gateway -> client: {stype, ctype} of a packet dropped before login
  SERVICE_AVAILABLE: 6, // gateway -> client: {stype, ctype: 0}: the service is back
  REQUEST_FAILED: 10, // gateway/service -> client: {stype, ctype, status}: a request not served
});

/** Why a request was answered with REQUEST_FAILED (docs/protocol.md §7.1). */
export const RequestStatus = Object.freeze({
  UNKNOWN_COMMAND: -1,
  BAD_REQUEST: -2,
  SERVER_ERROR: -3,
  SERVICE_BUSY: -4,
  NOT_ALLOWED: -5,
});

/** Talkroom status codes. */
export const TalkroomStatus = Object.freeze({
  OK: 1,
  INVALID_OPT: -100,
  IN_ROOM: -101,
  NOT_IN_ROOM: -102,
});

/** Auth status codes. */
export const AuthStatus = Object.freeze({
  OK: 1,
  SYSTEM_ERROR: -100,
  INVALID_PARAMS: -101,
  INVALID_OPT: -102,
  ILLEGAL_ACCOUNT: -103,
});

/** Which way a body travels; BUF layouts differ per direction. */
export const Direction = Object.freeze({ TO_SERVER: 0, TO_CLIENT: 1 });

export const HEADER_SIZE = 10;
/** The largest cmd_buf (what a u16 TCP frame length can carry; the same limit applies to WS). */
export const MAX_CMD_BUF = 65535 - 2;

/**
 * WebSocket close codes the gateway sends (docs/protocol.md §2.2): compare the `close`
 * event's `code` (or `ConnectionClosedError.code`) with these, never the reason text.
 * A connection this client gave up on itself (connect timeout, heartbeat silence) reports
 * 1006 (ABNORMAL): no close frame came.
 */
export const CloseCode = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, ABNORMAL: 1006, PROTOCOL_ERROR: 1008, TOO_BIG: 1009,
  RELOGIN: 4000, IDLE_TIMEOUT: 4001, RATE_LIMITED: 4002, SLOW_CONSUMER: 4003,
  LISTENER_FULL: 4004, TOO_MANY_PER_IP: 4005, HANDSHAKE_TIMEOUT: 4006, FRAME_TIMEOUT: 4008,
  INPUT_BUDGET: 4012, CONTROL_FLOOD: 4013,
});

// ---------------------------------------------------------------------------------- errors

/** Root of every error this module throws on purpose. */
export class NetbusError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The peer sent bytes that break the wire contract. `kind` is a short stable label
 * ("short_header", "bad_proto_type", "bad_json", "json_length", "bad_utf8", "short_body",
 * "long_body", "no_buf_layout", "too_long", "not_binary"), the same labels as the Python side.
 */
export class ProtocolError extends NetbusError {
  constructor(kind, detail = "") {
    super(detail ? `${kind}: ${detail}` : kind);
    this.kind = kind;
    this.detail = detail;
  }
}

/** Our own value cannot be put on the wire (wrong type, out of range, too long). */
export class LocalProtocolError extends NetbusError {}

/** The gateway reported that the service of a request cannot be reached. */
export class ServiceUnavailableError extends NetbusError {
  constructor(stype, ctype) {
    super(`service ${stype} is unavailable (command ${ctype})`);
    this.stype = stype;
    this.ctype = ctype;
  }
}

/** The gateway dropped a request for a service other than Auth that was sent before login. */
export class LoginRequiredError extends NetbusError {
  constructor(stype, ctype) {
    super(`log in before using service ${stype} (command ${ctype})`);
    this.stype = stype;
    this.ctype = ctype;
  }
}

/** The service answered REQUEST_FAILED; `status` is a RequestStatus value. */
export class RequestFailedError extends NetbusError {
  constructor(stype, ctype, status) {
    super(`request (${stype}, ${ctype}) failed with status ${status}`);
    this.stype = stype;
    this.ctype = ctype;
    this.status = status;
  }
}

/** No reply arrived within the request's timeout. */
export class RequestTimeoutError extends NetbusError {
  constructor(stype, ctype, timeoutMs) {
    super(`no reply to (${stype}, ${ctype}) within ${timeoutMs} ms`);
    this.stype = stype;
    this.ctype = ctype;
  }
}

/** The connection is not open, or closed before the reply arrived. */
export class ConnectionClosedError extends NetbusError {
  constructor(message = "connection closed", { code = 0, reason = "" } = {}) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

// ------------------------------------------------------------------------- strings, ints

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 throws instead of becoming U+FFFD. ignoreBOM: a leading U+FEFF is text,
// not a byte-order mark to strip, or strings starting with it would not round-trip.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// A lone surrogate has no UTF-8 form; TextEncoder would silently turn it into U+FFFD.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkWellFormed(text) {
  if (LONE_SURROGATE.test(text)) {
    throw new LocalProtocolError("string holds a lone surrogate and cannot be UTF-8");
  }
}

/** UTF-8 bytes of `text`, checked to fit a u16 count. */
function utf8(text) {
  if (typeof text !== "string") {
    throw new LocalProtocolError(`expected a string, got ${describe(text)}`);
  }
  checkWellFormed(text);
  const bytes = utf8Encoder.encode(text);
  if (bytes.length > 0xffff) {
    throw new LocalProtocolError(`string of ${bytes.length} UTF-8 bytes exceeds 65535`);
  }
  return bytes;
}

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

const INT_KINDS = {
  i16: { size: 2, min: -0x8000, max: 0x7fff, get: "getInt16", set: "setInt16" },
  u16: { size: 2, min: 0, max: 0xffff, get: "getUint16", set: "setUint16" },
  i32: { size: 4, min: -0x80000000, max: 0x7fffffff, get: "getInt32", set: "setInt32" },
  u32: { size: 4, min: 0, max: 0xffffffff, get: "getUint32", set: "setUint32" },
};
const FIELD_KINDS = new Set([...Object.keys(INT_KINDS), "str"]);

/** Builds a BUF body field by field (the original framework's proto_tools write side). */
export class Writer {
  #chunks = [];
  #length = 0;

  #int(kind, value) {
    const spec = INT_KINDS[kind];
    if (!Number.isInteger(value) || value < spec.min || value > spec.max) {
      throw new LocalProtocolError(`${kind} field needs an integer in ${spec.min}..${spec.max}, got ${String(value)}`);
    }
    const chunk = new Uint8Array(spec.size);
    new DataView(chunk.buffer)[spec.set](0, value, true);
    return this.bytes(chunk);
  }

  i16(value) { return this.#int("i16", value); }
  u16(value) { return this.#int("u16", value); }
  i32(value) { return this.#int("i32", value); }
  u32(value) { return this.#int("u32", value); }

  /** A u16 byte count, then the UTF-8 bytes. */
  str(value) {
    const data = utf8(value);
    this.u16(data.length);
    return this.bytes(data);
  }

  /** Raw bytes, appended as they are. */
  bytes(data) {
    this.#chunks.push(data);
    this.#length += data.length;
    return this;
  }

  get length() { return this.#length; }

  toBytes() {
    const out = new Uint8Array(this.#length);
    let pos = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, pos);
      pos += chunk.length;
    }
    return out;
  }
}

/** Reads BUF fields from `bytes` starting at `offset`; every read is bounds-checked. */
export class Reader {
  constructor(bytes, offset = HEADER_SIZE) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = offset;
  }

  #take(size) {
    if (this.pos + size > this.bytes.length) {
      throw new ProtocolError("short_body", `need ${size} bytes at offset ${this.pos}`);
    }
    const at = this.pos;
    this.pos += size;
    return at;
  }

  #int(kind) {
    const spec = INT_KINDS[kind];
    return this.view[spec.get](this.#take(spec.size), true);
  }

  i16() { return this.#int("i16"); }
  u16() { return this.#int("u16"); }
  i32() { return this.#int("i32"); }
  u32() { return this.#int("u32"); }

  str() {
    const size = this.u16();
    if (this.pos + size > this.bytes.length) {
      throw new ProtocolError("short_body", `string of ${size} bytes overruns the body`);
    }
    const at = this.#take(size);
    try {
      return utf8Decoder.decode(this.bytes.subarray(at, at + size));
    } catch {
      throw new ProtocolError("bad_utf8", `invalid UTF-8 in a string at offset ${at}`);
    }
  }

  get remaining() { return this.bytes.length - this.pos; }

  /** A BUF body that is too long is malformed (PROTOCOL.md §3.3). */
  expectEnd() {
    if (this.pos !== this.bytes.length) {
      throw new ProtocolError("long_body", `${this.bytes.length - this.pos} trailing bytes`);
    }
  }
}

// ------------------------------------------------------------------------------ BUF layouts

/**
 * A BUF body of named fields, decoded to (and encoded from) an object, like its JSON twin.
 * `fieldsLayout(["uname", "str"], ["usex", "i16"])` is talkroom Enter C->S.
 * With no fields it is the empty body, decoded to null (and encoded from anything).
 */
export function fieldsLayout(...fields) {
  for (const [name, kind] of fields) {
    if (!FIELD_KINDS.has(kind)) throw new TypeError(`unknown BUF field kind ${kind} for ${name}`);
  }
  return Object.freeze({
    encode(value, writer) {
      if (fields.length === 0) return;
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new LocalProtocolError(`BUF layout needs an object, got ${describe(value)}`);
      }
      for (const [name, kind] of fields) {
        if (!Object.hasOwn(value, name)) throw new LocalProtocolError(`BUF body is missing field ${name}`);
        writer[kind](value[name]);
      }
    },
    decode(reader) {
      if (fields.length === 0) {
        reader.expectEnd();
        return null;
      }
      const value = {};
      for (const [name, kind] of fields) value[name] = reader[kind]();
      reader.expectEnd();
      return value;
    },
  });
}

/** A BUF body of exactly one field, decoded to the bare value (a status, a message). */
export function scalarLayout(kind) {
  if (!FIELD_KINDS.has(kind)) throw new TypeError(`unknown BUF field kind ${kind}`);
  return Object.freeze({
    encode(value, writer) { writer[kind](value); },
    decode(reader) {
      const value = reader[kind]();
      reader.expectEnd();
      return value;
    },
  });
}

/**
 * A status reply carrying fields only on success: `i16 status` (under `statusKey`), then, when
 * the status equals `ok`, the named fields. Talkroom's SendMsg reply is
 * `statusLayout({ fields: [["1", "str"], ["2", "i16"], ["3", "str"]] })`.
 */
export function statusLayout({ statusKey = "0", ok = 1, fields = [] } = {}) {
  const tail = fieldsLayout(...fields);
  return Object.freeze({
    encode(value, writer) {
      if (value === null || typeof value !== "object" || !Object.hasOwn(value, statusKey)) {
        throw new LocalProtocolError(`status reply needs {"${statusKey}": status, ...}`);
      }
      writer.i16(value[statusKey]);
      if (value[statusKey] === ok && fields.length > 0) tail.encode(value, writer);
    },
    decode(reader) {
      const status = reader.i16();
      const value = { [statusKey]: status };
      if (status === ok) for (const [name, kind] of fields) value[name] = reader[kind]();
      reader.expectEnd();
      return value;
    },
  });
}

/**
 * The layout a JSON description stands for: `{"fields": [[name, kind], ...]}`,
 * `{"scalar": kind}` or `{"status": key, "ok": n, "fields": [...]}` (docs/services.md).
 * @throws {TypeError} an unknown form or field kind.
 */
export function layoutFromDescription(doc) {
  if (doc === null || typeof doc !== "object") throw new TypeError(`bad layout description ${describe(doc)}`);
  if (Object.hasOwn(doc, "scalar")) return scalarLayout(doc.scalar);
  const fields = doc.fields ?? [];
  if (!Array.isArray(fields) || !fields.every((f) => Array.isArray(f) && f.length === 2 && typeof f[0] === "string")) {
    throw new TypeError("'fields' is a list of [name, kind] pairs");
  }
  if (Object.hasOwn(doc, "status")) {
    if (!Number.isInteger(doc.ok)) throw new TypeError("a status layout needs an integer 'ok'");
    for (const [name, kind] of fields) {
      if (!FIELD_KINDS.has(kind)) throw new TypeError(`unknown BUF field kind ${kind} for ${name}`);
    }
    return statusLayout({ statusKey: String(doc.status), ok: doc.ok, fields });
  }
  if (Object.hasOwn(doc, "fields")) return fieldsLayout(...fields);
  throw new TypeError(`unknown layout description ${JSON.stringify(doc)}`);
}

/** The declaration format `CodecRegistry.fromDeclaration` reads (Python: DECLARATION_FORMAT). */
export const DECLARATION_FORMAT = "netbus-codecs/1";

/**
 * Immutable BUF layouts per (stype, ctype, direction). JSON needs none; a command with no layout
 * for a direction accepts JSON only there. Build one from the services' declaration with
 * `CodecRegistry.fromDeclaration(json)` (the control channel is always included) and combine
 * registries with `merge`; nothing ever changes a registry in place.
 */
export class CodecRegistry {
  #layouts;

  /** @param {Iterable<[string, object]>} [entries]  internal: use fromDeclaration or merge. */
  constructor(entries = []) {
    this.#layouts = new Map(entries);
    Object.freeze(this);
  }

  /**
   * The control channel's layouts plus those a declaration describes (what
   * `python -m netbus.service.declare` prints).
   * @throws {TypeError} not a netbus-codecs/1 declaration, or a malformed entry.
   */
  static fromDeclaration(doc) {
    if (doc === null || typeof doc !== "object" || doc.format !== DECLARATION_FORMAT) {
      throw new TypeError(`not a ${DECLARATION_FORMAT} declaration`);
    }
    if (!Array.isArray(doc.layouts)) throw new TypeError("'layouts' must be a list");
    const entries = [];
    for (const row of doc.layouts) {
      const { stype, ctype } = row ?? {};
      if (![stype, ctype].every((n) => Number.isInteger(n) && n >= 0 && n <= 0xffff)) {
        throw new TypeError(`bad stype/ctype in ${JSON.stringify(row)}`);
      }
      if (row.to_server) entries.push([layoutKey(stype, ctype, Direction.TO_SERVER), layoutFromDescription(row.to_server)]);
      if (row.to_client) entries.push([layoutKey(stype, ctype, Direction.TO_CLIENT), layoutFromDescription(row.to_client)]);
    }
    return CONTROL_CODECS.merge(new CodecRegistry(entries));
  }

  /**
   * Both registries' layouts in a new one (`other` wins where both have one).
   * @param {CodecRegistry} other
   */
  merge(other) {
    return new CodecRegistry([...this.#layouts, ...other.#layouts]);
  }

  /** The layout for one direction of a command, or undefined when it is JSON only. */
  layout(stype, ctype, direction) {
    return this.#layouts.get(layoutKey(stype, ctype, direction));
  }

  /** How many layouts this registry holds. */
  get size() { return this.#layouts.size; }
}

function layoutKey(stype, ctype, direction) {
  return `${stype}:${ctype}:${direction}`;
}

function controlCodecs() {
  const empty = fieldsLayout();
  const notice = fieldsLayout(["stype", "u16"], ["ctype", "u16"]);
  const g = Stype.Gateway;
  const c = Direction.TO_CLIENT;
  return new CodecRegistry([
    [layoutKey(g, GatewayCmd.HEARTBEAT, Direction.TO_SERVER), empty],
    [layoutKey(g, GatewayCmd.HEARTBEAT, c), empty],
    [layoutKey(g, GatewayCmd.SERVICE_UNAVAILABLE, c), notice],
    [layoutKey(g, GatewayCmd.LOGIN_REQUIRED, c), notice],
    [layoutKey(g, GatewayCmd.SERVICE_AVAILABLE, c), notice],
    [layoutKey(g, GatewayCmd.SHUTDOWN, c), fieldsLayout(["reason", "str"])],
    [layoutKey(g, GatewayCmd.RATE_LIMITED, c), fieldsLayout(["dropped", "u16"])],
    [layoutKey(g, GatewayCmd.REQUEST_FAILED, c), fieldsLayout(["stype", "u16"], ["ctype", "u16"], ["status", "i16"])],
  ]);
}

/** The gateway control channel's layouts (stype 0): part of every registry. */
export const CONTROL_CODECS = controlCodecs();

/**
 * The control channel plus the built-in services (talkroom, auth), from their declaration in
 * builtin_codecs.js, which the Python services generate (a test keeps the two identical).
 */
export const CODECS = CodecRegistry.fromDeclaration(BUILTIN_DECLARATION);

// --------------------------------------------------------------------------- header, bodies

/** The 10-byte header as a Uint8Array. */
export function packHeader(stype, ctype, utag, protoType) {
  const writer = new Writer().u16(stype).u16(ctype).u32(utag);
  if (protoType !== ProtoType.JSON && protoType !== ProtoType.BUF) {
    throw new LocalProtocolError(`unknown proto_type ${String(protoType)}`);
  }
  return writer.u16(protoType).toBytes();
}

/**
 * Parse and validate the header at the start of `bytes`.
 * @throws {ProtocolError} shorter than a header, or proto_type not 1 or 2.
 */
export function unpackHeader(bytes) {
  const data = asBytes(bytes);
  if (data.length < HEADER_SIZE) throw new ProtocolError("short_header", `${data.length} bytes`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const header = {
    stype: view.getUint16(0, true),
    ctype: view.getUint16(2, true),
    utag: view.getUint32(4, true),
    protoType: view.getUint16(8, true),
  };
  if (header.protoType !== ProtoType.JSON && header.protoType !== ProtoType.BUF) {
    throw new ProtocolError("bad_proto_type", String(header.protoType));
  }
  return header;
}

/** A proto_type 1 body: u16 count, then the UTF-8 text of {"0": value}. */
export function encodeJsonBody(value) {
  let text;
  try {
    // The replacer rejects lone surrogates anywhere in the value, keys included: they cannot
    // be UTF-8, and the server treats their JSON escapes as malformed.
    text = JSON.stringify({ 0: value === undefined ? null : value }, (key, v) => {
      checkWellFormed(key);
      if (typeof v === "string") checkWellFormed(v);
      return v;
    });
  } catch (err) {
    if (err instanceof LocalProtocolError) throw err;
    throw new LocalProtocolError(`value is not JSON-serialisable: ${err.message}`);
  }
  return new Writer().str(text).toBytes();
}

/**
 * JSON.parse is laxer than the server's parser in two ways that PROTOCOL.md forbids: it turns
 * numbers that overflow a double (1e400) into Infinity, and it accepts escaped lone
 * surrogates ("\ud800"), which have no UTF-8 form. Both make the packet malformed.
 */
function strictJsonReviver(key, value) {
  if (LONE_SURROGATE.test(key)) throw new ProtocolError("bad_json", "lone surrogate in an object key");
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new ProtocolError("bad_json", "number out of range");
  }
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw new ProtocolError("bad_json", "lone surrogate in a string");
  }
  return value;
}

/**
 * Decode a proto_type 1 body that fills `bytes` from `offset` to its end.
 * @throws {ProtocolError} wrong byte count, invalid UTF-8 or JSON, not an object, no key "0".
 */
export function decodeJsonBody(bytes, offset = HEADER_SIZE) {
  const data = asBytes(bytes);
  if (data.length - offset < 2) throw new ProtocolError("short_body", "JSON body without its length");
  const size = data[offset] | (data[offset + 1] << 8);
  if (offset + 2 + size !== data.length) {
    throw new ProtocolError("json_length", `count ${size} != ${data.length - offset - 2} bytes`);
  }
  let text;
  try {
    text = utf8Decoder.decode(data.subarray(offset + 2));
  } catch {
    throw new ProtocolError("bad_utf8", "JSON text is not valid UTF-8");
  }
  let doc;
  try {
    doc = JSON.parse(text, strictJsonReviver);
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw new ProtocolError("bad_json", err.message);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ProtocolError("bad_json", "top-level value is not an object");
  }
  if (!Object.hasOwn(doc, "0")) throw new ProtocolError("bad_json", 'object has no key "0"');
  return doc["0"];
}

/**
 * Build a whole cmd_buf (header + body) as a Uint8Array.
 *
 * @param {number} stype
 * @param {number} ctype
 * @param {*} body  JSON: any JSON value (undefined is sent as null). BUF: per the layout.
 * @param {number} [protoType=ProtoType.JSON]
 * @param {object} [options]
 * @param {number} [options.utag=0]  clients send 0
 * @param {number} [options.direction=Direction.TO_SERVER]  which BUF layout to use; a test
 *   server uses Direction.TO_CLIENT
 * @param {CodecRegistry} [options.codecs=CODECS]
 * @throws {LocalProtocolError} the body does not fit, has no BUF layout, or is too long.
 */
export function encodeCmd(stype, ctype, body, protoType = ProtoType.JSON,
  { utag = 0, direction = Direction.TO_SERVER, codecs = CODECS } = {}) {
  const header = packHeader(stype, ctype, utag, protoType);
  let payload;
  if (protoType === ProtoType.JSON) {
    payload = encodeJsonBody(body);
  } else {
    const layout = codecs.layout(stype, ctype, direction);
    if (!layout) throw new LocalProtocolError(`(${stype}, ${ctype}) has no BUF layout in this direction`);
    const writer = new Writer();
    layout.encode(body, writer);
    payload = writer.toBytes();
  }
  const size = HEADER_SIZE + payload.length;
  if (size > MAX_CMD_BUF) throw new LocalProtocolError(`cmd_buf of ${size} bytes exceeds ${MAX_CMD_BUF}`);
  const out = new Uint8Array(size);
  out.set(header, 0);
  out.set(payload, HEADER_SIZE);
  return out;
}

/**
 * Decode one cmd_buf (a whole WebSocket message).
 *
 * @param {ArrayBuffer|ArrayBufferView} bytes
 * @param {object} [options]
 * @param {number} [options.direction=Direction.TO_CLIENT]  BUF layouts of what a client
 *   receives; a test server decodes with Direction.TO_SERVER
 * @param {CodecRegistry} [options.codecs=CODECS]
 * @returns {{stype: number, ctype: number, utag: number, protoType: number, body: *}}
 * @throws {ProtocolError} for any malformed input, and only that.
 */
export function decodeCmd(bytes, { direction = Direction.TO_CLIENT, codecs = CODECS } = {}) {
  const data = asBytes(bytes);
  if (data.length > MAX_CMD_BUF) throw new ProtocolError("too_long", `${data.length} bytes`);
  const { stype, ctype, utag, protoType } = unpackHeader(data);
  let body;
  if (protoType === ProtoType.JSON) {
    body = decodeJsonBody(data, HEADER_SIZE);
  } else {
    const layout = codecs.layout(stype, ctype, direction);
    if (!layout) throw new ProtocolError("no_buf_layout", `(${stype}, ${ctype}) accepts JSON only`);
    body = layout.decode(new Reader(data, HEADER_SIZE));
  }
  return { stype, ctype, utag, protoType, body };
}

/** View any binary input as a Uint8Array without copying. */
function asBytes(input) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new ProtocolError("not_binary", `expected binary data, got ${describe(input)}`);
}

// ------------------------------------------------------------------------------- the client

const DEFAULTS = Object.freeze({
  protoType: ProtoType.JSON, // for requests that do not say
  timeoutMs: 10_000, // per request; 0 waits forever
  connectTimeoutMs: 10_000,
  heartbeatMs: 20_000, // HEARTBEAT period while connected; 0 turns heartbeats off
});

// A push with its event name and the detail handed to listeners.
const PUSHES = new Map([
  [`${Stype.TalkRoom}:${TalkroomCmd.UserArrived}`, ["userArrived", userDetail]],
  [`${Stype.TalkRoom}:${TalkroomCmd.UserExit}`, ["userExit", userDetail]],
  [`${Stype.TalkRoom}:${TalkroomCmd.UserMsg}`,
    ["userMsg", (b) => ({ uname: b?.["0"], usex: b?.["1"], msg: b?.["2"] })]],
  [`${Stype.Auth}:${AuthCmd.RELOGIN}`, ["relogin", () => null]],
  [`${Stype.Gateway}:${GatewayCmd.HEARTBEAT}`, ["heartbeat", () => null]],
  [`${Stype.Gateway}:${GatewayCmd.SERVICE_UNAVAILABLE}`, ["unavailable", noticeDetail]],
  [`${Stype.Gateway}:${GatewayCmd.LOGIN_REQUIRED}`, ["loginRequired", noticeDetail]],
  [`${Stype.Gateway}:${GatewayCmd.SERVICE_AVAILABLE}`, ["available", noticeDetail]],
  [`${Stype.Gateway}:${GatewayCmd.SHUTDOWN}`, ["shutdown", (b) => ({ reason: b?.reason ?? "" })]],
  [`${Stype.Gateway}:${GatewayCmd.RATE_LIMITED}`, ["rateLimited", (b) => ({ dropped: b?.dropped ?? 0 })]],
  [`${Stype.Gateway}:${GatewayCmd.REQUEST_FAILED}`,
    ["requestFailed", (b) => ({ stype: b?.stype, ctype: b?.ctype, status: b?.status })]],
]);

function noticeDetail(body) {
  return { stype: body?.stype, ctype: body?.ctype };
}

function userDetail(body) {
  return { uname: body?.uname, usex: body?.usex };
}

function cmdKey(stype, ctype) {
  return `${stype}:${ctype}`;
}

function makeEvent(type, detail) {
  if (typeof CustomEvent === "function") return new CustomEvent(type, { detail });
  const event = new Event(type);
  event.detail = detail;
  return event;
}

/**
 * One WebSocket connection to a netbus gateway.
 *
 * Events (EventTarget, `event.detail`; or `client.on(type, detail => ...)`):
 *
 * | type          | detail                                  | when |
 * |---------------|-----------------------------------------|------|
 * | `userArrived` | `{uname, usex}`                         | talkroom push |
 * | `userExit`    | `{uname, usex}`                         | talkroom push |
 * | `userMsg`     | `{uname, usex, msg}`                    | talkroom push |
 * | `relogin`     | `null`                                  | kicked: logged in elsewhere; close follows |
 * | `unavailable` | `{stype, ctype}`                        | gateway could not deliver a packet (ctype 0: the service is down) |
 * | `available`   | `{stype, ctype}`                        | a service that was down is back |
 * | `loginRequired` | `{stype, ctype}`                      | a packet was dropped: not logged in |
 * | `shutdown`    | `{reason}`                              | the gateway is going away |
 * | `rateLimited` | `{dropped}`                             | the gateway dropped packets |
 * | `requestFailed` | `{stype, ctype, status}`              | a request was answered REQUEST_FAILED (its promise rejects with RequestFailedError) |
 * | `heartbeat`   | `null`                                  | a HEARTBEAT echo arrived |
 * | `message`     | `{stype, ctype, utag, protoType, body}` | every decoded packet, before the others |
 * | `protocolError` | `{error}`                             | a malformed message was dropped |
 * | `close`       | `{code, reason, wasClean, kicked, byClient}` | an open connection ended |
 *
 * `close` fires once per connection that opened; a connect() that fails only rejects.
 * After a close, connect() may be called again; listeners stay attached.
 */
export class NetbusClient extends EventTarget {
  #options;
  #ws = null;
  #state = "idle"; // idle | connecting | open | closed
  #url = "";
  #pending = new Map(); // cmdKey -> [{resolve, reject, timer, stype, ctype}] in send order
  #heartbeatTimer = null;
  #lastReceived = 0;
  #echoSeen = false; // the gateway has echoed a heartbeat: silence now means a dead link
  #kicked = false;
  #connectSettle = null; // {resolve, reject, timer} while connecting

  /**
   * @param {object} [options]
   * @param {Function} [options.WebSocketImpl=globalThis.WebSocket]  constructor(url)
   * @param {number} [options.protoType=ProtoType.JSON]  default for requests
   * @param {number} [options.timeoutMs=10000]  default request timeout; 0 = none
   * @param {number} [options.connectTimeoutMs=10000]
   * @param {number} [options.heartbeatMs=20000]  0 = no heartbeats
   * @param {CodecRegistry} [options.codecs=CODECS]
   */
  constructor(options = {}) {
    super();
    this.#options = { ...DEFAULTS, WebSocketImpl: globalThis.WebSocket, codecs: CODECS, ...options };
    /** The last successful GUEST_LOGIN reply on this connection, or null. */
    this.account = null;
  }

  /** "idle" (never connected), "connecting", "open" or "closed". */
  get state() { return this.#state; }
  get url() { return this.#url; }
  get connected() { return this.#state === "open"; }

  /** Subscribe to an event with a callback that gets the detail; returns an unsubscribe function. */
  on(type, callback) {
    const listener = (event) => callback(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * Open the WebSocket. Resolves once it is open; rejects with ConnectionClosedError if it
   * closes first or takes longer than connectTimeoutMs.
   */
  connect(url) {
    if (this.#state === "connecting" || this.#state === "open") {
      return Promise.reject(new LocalProtocolError(`connect() while ${this.#state}`));
    }
    const Impl = this.#options.WebSocketImpl;
    if (typeof Impl !== "function") {
      return Promise.reject(new LocalProtocolError("no WebSocket implementation available"));
    }
    let ws;
    try {
      ws = new Impl(url);
    } catch (err) {
      return Promise.reject(new ConnectionClosedError(`cannot open ${url}: ${err.message}`));
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#url = url;
    this.#state = "connecting";
    this.#kicked = false;
    this.#echoSeen = false;
    this.account = null;

    // Every handler checks that its socket is still the current one, so a late event from an
    // abandoned socket never touches the next connection.
    ws.onopen = () => { if (ws === this.#ws) this.#onOpen(); };
    ws.onmessage = (event) => { if (ws === this.#ws) this.#onMessage(event.data); };
    ws.onclose = (event) => {
      if (ws === this.#ws) {
        this.#teardown({ code: event?.code ?? 1006, reason: event?.reason ?? "", wasClean: Boolean(event?.wasClean) });
      }
    };
    // Browsers give no details on error; a close event always follows, so wait for that.
    ws.onerror = () => {};

    return new Promise((resolve, reject) => {
      const timer = this.#options.connectTimeoutMs > 0
        ? setTimeout(() => { if (ws === this.#ws) this.#abandon("connect timeout"); }, this.#options.connectTimeoutMs)
        : null;
      this.#connectSettle = { resolve, reject, timer };
    });
  }

  /**
   * Send a request and resolve with the reply body (decoded; JSON value or BUF object).
   *
   * @param {number} stype
   * @param {number} ctype
   * @param {*} body
   * @param {{protoType?: number, timeoutMs?: number}} [options]
   * @returns {Promise<*>} rejects with ServiceUnavailableError, RequestFailedError,
   *   RequestTimeoutError, ConnectionClosedError or LocalProtocolError.
   */
  request(stype, ctype, body, { protoType = this.#options.protoType, timeoutMs = this.#options.timeoutMs } = {}) {
    let data;
    try {
      data = this.#encode(stype, ctype, body, protoType);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const entry = { stype, ctype, resolve, reject, timer: null };
      const key = cmdKey(stype, ctype);
      // A request that timed out leaves the queue. If its reply arrives later it is matched to
      // the next request of the same command: without request ids there is no way to tell.
      // Leaving a placeholder instead would shift every later reply by one if the reply is
      // lost, which is worse.
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.#removePending(key, entry);
          reject(new RequestTimeoutError(stype, ctype, timeoutMs));
        }, timeoutMs);
      }
      const queue = this.#pending.get(key);
      if (queue) queue.push(entry);
      else this.#pending.set(key, [entry]);
      try {
        this.#ws.send(data);
      } catch (err) {
        clearTimeout(entry.timer);
        this.#removePending(key, entry);
        reject(new ConnectionClosedError(`send failed: ${err.message}`));
      }
    });
  }

  /**
   * Send a packet that expects no reply.
   * @throws {ConnectionClosedError|LocalProtocolError}
   */
  send(stype, ctype, body, { protoType = this.#options.protoType } = {}) {
    const data = this.#encode(stype, ctype, body, protoType); // throws when not open
    this.#ws.send(data);
  }

  /** Send one HEARTBEAT (also sent every heartbeatMs while connected). */
  heartbeat() {
    const protoType = this.#options.protoType;
    this.send(Stype.Gateway, GatewayCmd.HEARTBEAT, null, { protoType });
  }

  /**
   * GUEST_LOGIN with `key`. Resolves with the reply object: check `reply.status`
   * (AuthStatus.OK = 1, then uid, unick, usex, uface, uvip, guest_key are set).
   */
  async guestLogin(key, { timeoutMs } = {}) {
    const reply = await this.request(Stype.Auth, AuthCmd.GUEST_LOGIN, key, { protoType: ProtoType.JSON, timeoutMs });
    if (reply && reply.status === AuthStatus.OK) this.account = reply;
    return reply;
  }

  /** Talkroom Enter. Resolves with the status (TalkroomStatus). */
  enter(uname, usex, options = {}) {
    return this.request(Stype.TalkRoom, TalkroomCmd.Enter, { uname, usex }, options);
  }

  /** Talkroom Exit. Resolves with the status (TalkroomStatus). */
  exit(options = {}) {
    return this.request(Stype.TalkRoom, TalkroomCmd.Exit, null, options);
  }

  /**
   * Talkroom SendMsg. Resolves with the reply: `{"0": 1, "1": uname, "2": usex, "3": msg}` on
   * OK, `{"0": status}` otherwise.
   */
  sendMsg(msg, options = {}) {
    return this.request(Stype.TalkRoom, TalkroomCmd.SendMsg, msg, options);
  }

  /** Close the connection now; pending requests reject with ConnectionClosedError. Idempotent. */
  close(code = 1000, reason = "") {
    if (!this.#ws) return;
    const ws = this.#ws;
    this.#teardown({ code, reason, wasClean: true, byClient: true });
    try {
      ws.close(code, reason);
    } catch {
      ws.close(); // a code outside 1000/3000-4999 throws in browsers
    }
  }

  // ----------------------------------------------------------------------------- internals

  #encode(stype, ctype, body, protoType) {
    if (this.#state !== "open") throw new ConnectionClosedError(`not connected (${this.#state})`);
    return encodeCmd(stype, ctype, body, protoType, { codecs: this.#options.codecs });
  }

  #onOpen() {
    this.#state = "open";
    this.#lastReceived = Date.now();
    const period = this.#options.heartbeatMs;
    if (period > 0) this.#heartbeatTimer = setInterval(() => this.#onHeartbeatTick(period), period);
    const settle = this.#connectSettle;
    this.#connectSettle = null;
    if (settle) {
      clearTimeout(settle.timer);
      settle.resolve();
    }
  }

  #onHeartbeatTick(period) {
    // Only once the gateway has shown that it echoes heartbeats does silence mean the link is
    // dead: browsers can take minutes to notice a vanished peer on their own.
    if (this.#echoSeen && Date.now() - this.#lastReceived > 2.5 * period) {
      this.#abandon("heartbeat timeout");
      return;
    }
    try {
      this.heartbeat();
    } catch { /* closing */ }
  }

  #onMessage(data) {
    let packet;
    try {
      if (typeof data === "string") throw new ProtocolError("not_binary", "text message");
      packet = decodeCmd(data, { codecs: this.#options.codecs });
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.#emit("protocolError", { error: err });
      return;
    }
    this.#lastReceived = Date.now();
    const { stype, ctype, body } = packet;
    if (stype === Stype.Gateway && ctype === GatewayCmd.HEARTBEAT) this.#echoSeen = true;
    if (stype === Stype.Auth && ctype === AuthCmd.RELOGIN) this.#kicked = true;
    this.#emit("message", packet);

    const key = cmdKey(stype, ctype);
    const queue = this.#pending.get(key);
    if (queue && queue.length > 0) {
      const entry = queue.shift();
      if (queue.length === 0) this.#pending.delete(key);
      clearTimeout(entry.timer);
      entry.resolve(body);
      return;
    }
    const push = PUSHES.get(key);
    if (!push) return; // an unmatched reply (its request timed out): nothing to do
    const [type, toDetail] = push;
    const detail = toDetail(body);
    if (type === "unavailable") {
      if (detail.ctype === 0) this.#failService(detail.stype);
      else this.#failOldest(detail.stype, detail.ctype, new ServiceUnavailableError(detail.stype, detail.ctype));
    } else if (type === "loginRequired") {
      this.#failOldest(detail.stype, detail.ctype, new LoginRequiredError(detail.stype, detail.ctype));
    } else if (type === "requestFailed") {
      this.#failOldest(detail.stype, detail.ctype, new RequestFailedError(detail.stype, detail.ctype, detail.status));
    }
    this.#emit(type, detail);
  }

  /**
   * The gateway dropped one packet of (stype, ctype) and says so instead of a reply. Replies
   * come in request order, so that packet is the oldest pending request of the command.
   */
  #failOldest(stype, ctype, error) {
    const key = cmdKey(stype, ctype);
    const queue = this.#pending.get(key);
    if (!queue) return; // a fire-and-forget send()
    const entry = queue.shift();
    if (queue.length === 0) this.#pending.delete(key);
    clearTimeout(entry.timer);
    entry.reject(error);
  }

  /** The service's last instance went down: nothing pending for it will be answered. */
  #failService(stype) {
    for (const [key, queue] of [...this.#pending]) {
      if (queue[0].stype !== stype) continue;
      this.#pending.delete(key);
      for (const entry of queue) {
        clearTimeout(entry.timer);
        entry.reject(new ServiceUnavailableError(stype, entry.ctype));
      }
    }
  }

  #removePending(key, entry) {
    const queue = this.#pending.get(key);
    if (!queue) return;
    const at = queue.indexOf(entry);
    if (at >= 0) queue.splice(at, 1);
    if (queue.length === 0) this.#pending.delete(key);
  }

  /**
   * Give up on the current socket without waiting for its close handshake (which can take
   * minutes on a dead link): tear down now, then ask the socket to close.
   */
  #abandon(reason) {
    const ws = this.#ws;
    this.#teardown({ code: CloseCode.ABNORMAL, reason, wasClean: false });
    try {
      ws.close(CloseCode.NORMAL, reason); // not 4000: that code means "relogin" (server)
    } catch { /* already closing */ }
  }

  /** End the current connection once: stop timers, fail pending requests, emit close. */
  #teardown({ code, reason, wasClean, byClient = false }) {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    const wasOpen = this.#state === "open";
    this.#state = "closed";
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = null;

    const error = new ConnectionClosedError(
      byClient ? "connection closed by the client" : `connection closed (${code}${reason ? ` ${reason}` : ""})`,
      { code, reason },
    );
    const settle = this.#connectSettle;
    this.#connectSettle = null;
    if (settle) {
      clearTimeout(settle.timer);
      settle.reject(error);
    }
    const pending = [...this.#pending.values()].flat();
    this.#pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    if (wasOpen) this.#emit("close", { code, reason, wasClean, kicked: this.#kicked, byClient });
  }

  #emit(type, detail) {
    this.dispatchEvent(makeEvent(type, detail));
  }
}
