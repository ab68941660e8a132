// Unit tests for netbus/roles/web/static/netbus.js (the browser client library).
// Run: node --test tests/js/
//
// The codec is checked against golden bytes from PROTOCOL.md and by round trips of every BUF
// layout; NetbusClient runs against FakeWebSocket, a test double injected via WebSocketImpl.
// Real browser-to-cluster tests live elsewhere.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import {
  AuthCmd,
  AuthStatus,
  CODECS,
  CodecRegistry,
  ConnectionClosedError,
  Direction,
  GatewayCmd,
  LocalProtocolError,
  LoginRequiredError,
  NetbusClient,
  ProtocolError,
  ProtoType,
  RequestTimeoutError,
  ServiceUnavailableError,
  Stype,
  TalkroomCmd,
  TalkroomStatus,
  decodeCmd,
  encodeCmd,
  packHeader,
  unpackHeader,
} from "../../netbus/roles/web/static/netbus.js";

const { JSON: P_JSON, BUF: P_BUF } = ProtoType;
const T = Stype.TalkRoom;
const TO_SERVER = { direction: Direction.TO_SERVER };
const TO_CLIENT = { direction: Direction.TO_CLIENT };

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text.replace(/[\s|]/g, ""), "hex"));
const concat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
const ascii = (text) => new Uint8Array(Buffer.from(text, "latin1"));
const utf8 = (text) => new Uint8Array(Buffer.from(text, "utf8"));

/** A header for hand-built packets. */
const header = (stype, ctype, proto, utag = 0) => packHeader(stype, ctype, utag, proto);
/** A u16-counted byte string. */
const counted = (bytes) => concat([bytes.length & 0xff, bytes.length >> 8], bytes);

const TRICKY = ["", "a", "\u007f", "遊客123456", "emoji 🎮👍🏽", "\ufeffleading BOM", "quote \" back\\slash \n\u0000"];
const KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz012_-9"; // 32 characters, guest-key alphabet

// ------------------------------------------------------------------------------ golden bytes

describe("golden vectors", () => {
  it("guest login example from PROTOCOL.md §3.2", () => {
    assert.equal(KEY.length, 32);
    const bytes = encodeCmd(Stype.Auth, AuthCmd.GUEST_LOGIN, KEY, P_JSON);
    const expected = concat(fromHex("02 00 | 01 00 | 00 00 00 00 | 01 00 | 28 00"), ascii(`{"0":"${KEY}"}`));
    assert.equal(hex(bytes), hex(expected));
    assert.equal(bytes.length, 12 + 0x28);
    assert.deepEqual(decodeCmd(bytes, TO_SERVER),
      { stype: 2, ctype: 1, utag: 0, protoType: 1, body: KEY });
  });

  it("header is little-endian u16 stype, u16 ctype, u32 utag, u16 proto_type", () => {
    const bytes = packHeader(0x1234, 0xfffe, 0xdeadbeef, P_BUF);
    assert.equal(hex(bytes), "3412feffefbeadde0200");
    assert.deepEqual(unpackHeader(bytes), { stype: 0x1234, ctype: 0xfffe, utag: 0xdeadbeef, protoType: 2 });
  });

  it("BUF Enter C->S: str uname, i16 usex", () => {
    const bytes = encodeCmd(T, TalkroomCmd.Enter, { uname: "é", usex: 1 }, P_BUF);
    assert.equal(hex(bytes), "0100010000000000" + "0200" + "0200c3a9" + "0100");
  });

  it("BUF status replies are i16 LE (negative codes too)", () => {
    const bytes = encodeCmd(T, TalkroomCmd.Enter, TalkroomStatus.IN_ROOM, P_BUF, TO_CLIENT);
    assert.equal(hex(bytes.subarray(10)), "9bff"); // -101
  });

  it("JSON heartbeat is {\"0\":null}", () => {
    const bytes = encodeCmd(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_JSON);
    assert.equal(hex(bytes), "00000100000000000100" + "0a00" + hex(ascii('{"0":null}')));
  });

  it("JSON strings are raw UTF-8, U+007F included (no escapes for non-ASCII)", () => {
    const bytes = encodeCmd(T, TalkroomCmd.SendMsg, "\u007f遊🎮", P_JSON);
    const text = `{"0":"\u007f遊🎮"}`;
    assert.equal(hex(bytes.subarray(10)), hex(counted(utf8(text))));
    assert.equal(bytes[10], utf8(text).length); // the count is UTF-8 bytes, not UTF-16 units
  });

  it("empty BUF bodies: Exit C->S and HEARTBEAT are a bare header", () => {
    assert.equal(encodeCmd(T, TalkroomCmd.Exit, null, P_BUF).length, 10);
    assert.equal(encodeCmd(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_BUF).length, 10);
    assert.equal(decodeCmd(encodeCmd(T, TalkroomCmd.Exit, null, P_BUF), TO_SERVER).body, null);
  });
});

// ------------------------------------------------- tests/golden/vectors.toml (shared vectors)

const GOLDEN = new URL("../golden/vectors.toml", import.meta.url);

/**
 * Just enough TOML for vectors.toml: [[array-of-tables]] headers, and key = value lines whose
 * value is a basic/literal string (single- or multi-line), an integer (decimal or 0x) or a
 * boolean. Anything else fails loudly rather than being misread.
 */
function parseVectorsToml(text) {
  const doc = {};
  let table = null;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const header = /^\[\[([A-Za-z0-9_.-]+)\]\]$/.exec(line);
    if (header) {
      table = {};
      (doc[header[1]] ??= []).push(table);
      continue;
    }
    const pair = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
    if (!pair || !table) throw new Error(`vectors.toml:${i + 1}: cannot parse ${JSON.stringify(line)}`);
    const [, key, rest] = pair;
    let value;
    const fence = rest.startsWith('"""') ? '"""' : rest.startsWith("'''") ? "'''" : null;
    if (fence) {
      // Multi-line string: a newline right after the opening fence is dropped (TOML rule).
      let body = rest.slice(3);
      const parts = [];
      while (!body.includes(fence)) {
        parts.push(body);
        i += 1;
        if (i >= lines.length) throw new Error(`vectors.toml: unterminated ${fence} string for ${key}`);
        body = lines[i];
      }
      parts.push(body.slice(0, body.indexOf(fence)));
      value = parts.join("\n").replace(/^\n/, "");
      if (fence === '"""' && value.includes("\\")) throw new Error(`vectors.toml: escapes in ${key} are not supported`);
    } else {
      const stripped = rest.replace(/\s+#.*$/, "");
      if (/^'[^']*'$/.test(stripped)) value = stripped.slice(1, -1);
      else if (/^"([^"\\]|\\.)*"$/.test(stripped)) value = JSON.parse(stripped);
      else if (/^(0x[0-9A-Fa-f_]+|[+-]?[0-9_]+)$/.test(stripped)) value = Number(stripped.replaceAll("_", ""));
      else if (stripped === "true" || stripped === "false") value = stripped === "true";
      else throw new Error(`vectors.toml:${i + 1}: unsupported value ${JSON.stringify(rest)}`);
    }
    table[key] = value;
  }
  return doc;
}

const DIRECTIONS = { to_server: Direction.TO_SERVER, to_client: Direction.TO_CLIENT };

describe("shared golden vectors (tests/golden/vectors.toml)", { skip: !existsSync(GOLDEN) && "file missing" }, () => {
  const golden = existsSync(GOLDEN) ? parseVectorsToml(readFileSync(GOLDEN, "utf8")) : {};

  it("the file holds vectors and malformed cases", () => {
    assert.ok((golden.vector ?? []).length > 10);
    assert.ok((golden.malformed ?? []).length > 10);
  });

  for (const v of golden.vector ?? []) {
    it(`decode and re-encode ${v.name}`, () => {
      const bytes = fromHex(v.hex);
      const direction = DIRECTIONS[v.direction];
      assert.notEqual(direction, undefined, `unknown direction ${v.direction}`);
      const packet = decodeCmd(bytes, { direction });
      assert.deepEqual(packet, {
        stype: v.stype, ctype: v.ctype, utag: v.utag, protoType: v.proto_type, body: JSON.parse(v.value),
      });
      const again = encodeCmd(v.stype, v.ctype, packet.body, v.proto_type, { utag: v.utag, direction });
      assert.equal(hex(again), hex(bytes));
    });
  }

  for (const m of golden.malformed ?? []) {
    it(`reject ${m.name} (${m.kind})`, () => {
      assert.throws(() => decodeCmd(fromHex(m.hex), { direction: DIRECTIONS[m.direction] }), (err) => {
        assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${err}`);
        assert.equal(err.kind, m.kind);
        return true;
      });
    });
  }
});

// ------------------------------------------------------------------------------ round trips

/** Encode then decode in the given direction; return the body. */
function roundTrip(stype, ctype, body, proto, direction) {
  const bytes = encodeCmd(stype, ctype, body, proto, { direction });
  const packet = decodeCmd(bytes, { direction });
  assert.equal(packet.stype, stype);
  assert.equal(packet.ctype, ctype);
  assert.equal(packet.utag, 0);
  assert.equal(packet.protoType, proto);
  return packet.body;
}

describe("BUF layouts round-trip", () => {
  const S = Direction.TO_SERVER;
  const C = Direction.TO_CLIENT;

  for (const text of TRICKY.filter(Boolean)) {
    it(`talkroom layouts with ${JSON.stringify(text)}`, () => {
      const user = { uname: text, usex: 1 };
      assert.deepEqual(roundTrip(T, TalkroomCmd.Enter, user, P_BUF, S), user);
      assert.deepEqual(roundTrip(T, TalkroomCmd.UserArrived, user, P_BUF, C), user);
      assert.deepEqual(roundTrip(T, TalkroomCmd.UserExit, { uname: text, usex: 0 }, P_BUF, C),
        { uname: text, usex: 0 });
      assert.equal(roundTrip(T, TalkroomCmd.SendMsg, text, P_BUF, S), text);
      const ok = { 0: 1, 1: text, 2: 1, 3: text + "!" };
      assert.deepEqual(roundTrip(T, TalkroomCmd.SendMsg, ok, P_BUF, C), ok);
      const push = { 0: text, 1: 0, 2: "msg " + text };
      assert.deepEqual(roundTrip(T, TalkroomCmd.UserMsg, push, P_BUF, C), push);
    });
  }

  it("Enter / Exit status replies", () => {
    for (const status of Object.values(TalkroomStatus)) {
      assert.equal(roundTrip(T, TalkroomCmd.Enter, status, P_BUF, C), status);
      assert.equal(roundTrip(T, TalkroomCmd.Exit, status, P_BUF, C), status);
    }
    assert.equal(roundTrip(T, TalkroomCmd.Exit, null, P_BUF, S), null);
  });

  it("SendMsg error reply is the status alone", () => {
    const bytes = encodeCmd(T, TalkroomCmd.SendMsg, { 0: -100 }, P_BUF, TO_CLIENT);
    assert.equal(bytes.length, 12);
    assert.deepEqual(decodeCmd(bytes).body, { 0: -100 });
  });

  it("empty strings and extreme integers", () => {
    assert.deepEqual(roundTrip(T, TalkroomCmd.UserArrived, { uname: "", usex: -32768 }, P_BUF, C),
      { uname: "", usex: -32768 });
    assert.deepEqual(roundTrip(T, TalkroomCmd.UserExit, { uname: "", usex: 32767 }, P_BUF, C),
      { uname: "", usex: 32767 });
  });

  it("a string of 65535 UTF-8 bytes fits", () => {
    const long = "x".repeat(65535 - 12); // cmd_buf = 10 header + 2 count + text <= 65533
    assert.throws(() => encodeCmd(T, TalkroomCmd.SendMsg, long, P_BUF), LocalProtocolError);
    const fits = "x".repeat(65533 - 12);
    assert.equal(roundTrip(T, TalkroomCmd.SendMsg, fits, P_BUF, S), fits);
  });

  it("gateway control channel", () => {
    assert.equal(roundTrip(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_BUF, C), null);
    assert.equal(roundTrip(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_BUF, S), null);
    assert.deepEqual(roundTrip(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE, { stype: 1, ctype: 65535 }, P_BUF, C),
      { stype: 1, ctype: 65535 });
    assert.deepEqual(roundTrip(Stype.Gateway, GatewayCmd.SHUTDOWN, { reason: "維護 🔧" }, P_BUF, C),
      { reason: "維護 🔧" });
    assert.deepEqual(roundTrip(Stype.Gateway, GatewayCmd.RATE_LIMITED, { dropped: 7 }, P_BUF, C), { dropped: 7 });
    for (const ctype of [GatewayCmd.LOGIN_REQUIRED, GatewayCmd.SERVICE_AVAILABLE]) {
      assert.deepEqual(roundTrip(Stype.Gateway, ctype, { stype: 1, ctype: 0 }, P_BUF, C), { stype: 1, ctype: 0 });
    }
    assert.equal(roundTrip(Stype.Auth, AuthCmd.RELOGIN, null, P_BUF, C), null);
  });

  it("BUF SERVICE_UNAVAILABLE bytes are u16 stype, u16 ctype", () => {
    const bytes = encodeCmd(0, 2, { stype: 1, ctype: 5 }, P_BUF, TO_CLIENT);
    assert.equal(hex(bytes), "00000200000000000200" + "0100" + "0500");
  });

  it("a registry for another service comes from its declaration; CODECS is untouched", () => {
    const declaration = { format: "netbus-codecs/1", layouts: [
      { stype: 9, ctype: 1, to_client: { fields: [["uname", "str"], ["usex", "i16"]] } },
    ] };
    const codecs = CODECS.merge(CodecRegistry.fromDeclaration(declaration));
    const bytes = encodeCmd(9, 1, { uname: "x", usex: 0 }, P_BUF, { direction: Direction.TO_CLIENT, codecs });
    assert.deepEqual(decodeCmd(bytes, { codecs }).body, { uname: "x", usex: 0 });
    assert.throws(() => decodeCmd(bytes), (e) => e instanceof ProtocolError && e.kind === "no_buf_layout");
  });
});

describe("JSON bodies round-trip", () => {
  const values = [
    null, 0, -100, 1.5, true, "", KEY, ...TRICKY,
    { uname: "遊客000001", usex: 0 },
    { status: 1, uid: 42, unick: "遊客🎮\u007f", usex: 1, uface: 0, uvip: 0, guest_key: KEY },
    { 0: 1, 1: "名字", 2: 0, 3: "hi 👋" },
    [1, "two", { three: [null] }],
  ];
  for (const value of values) {
    it(JSON.stringify(value), () => {
      assert.deepEqual(roundTrip(T, TalkroomCmd.SendMsg, value, P_JSON, Direction.TO_CLIENT), value);
      assert.deepEqual(roundTrip(T, TalkroomCmd.SendMsg, value, P_JSON, Direction.TO_SERVER), value);
    });
  }

  it("undefined is sent as null", () => {
    assert.equal(roundTrip(T, TalkroomCmd.Exit, undefined, P_JSON, Direction.TO_SERVER), null);
  });

  it("JSON works for commands that have no BUF layout", () => {
    const reply = { status: AuthStatus.ILLEGAL_ACCOUNT };
    assert.deepEqual(roundTrip(Stype.Auth, AuthCmd.GUEST_LOGIN, reply, P_JSON, Direction.TO_CLIENT), reply);
  });
});

// ------------------------------------------------------------------------------- malformed

function assertMalformed(bytes, kind) {
  assert.throws(() => decodeCmd(bytes), (err) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${err}`);
    if (kind) assert.equal(err.kind, kind);
    return true;
  });
}

const jsonPacket = (bodyBytes) => concat(header(T, TalkroomCmd.UserMsg, P_JSON), bodyBytes);

describe("malformed input throws ProtocolError", () => {
  it("short header (0..9 bytes)", () => {
    const full = encodeCmd(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_BUF);
    for (let n = 0; n < 10; n += 1) assertMalformed(full.subarray(0, n), "short_header");
  });

  it("proto_type other than 1 or 2", () => {
    for (const proto of [0, 3, 0x100, 0xffff]) {
      const bytes = concat(fromHex("0000010000000000"), [proto & 0xff, proto >> 8], counted(ascii('{"0":null}')));
      assertMalformed(bytes, "bad_proto_type");
    }
  });

  it("JSON body without its count", () => {
    assertMalformed(header(T, 1, P_JSON), "short_body");
    assertMalformed(concat(header(T, 1, P_JSON), [5]), "short_body");
  });

  it("JSON count mismatch (too small, too large)", () => {
    const text = ascii('{"0":1}');
    assertMalformed(jsonPacket(concat([text.length - 1, 0], text)), "json_length");
    assertMalformed(jsonPacket(concat([text.length + 1, 0], text)), "json_length");
    assertMalformed(jsonPacket(concat(counted(text), [0x20])), "json_length");
  });

  it("invalid JSON", () => {
    for (const text of ["", "{", '{"0":}', "{'0':1}", '{"0":NaN}', '{"0":1}x', "undefined", '{"0":Infinity}']) {
      assertMalformed(jsonPacket(counted(ascii(text))), "bad_json");
    }
  });

  it("JSON that JSON.parse accepts but the contract does not", () => {
    for (const text of ['{"0":1e400}', '{"0":[-1e999]}', '{"0":"\\ud800"}', '{"0":{"\\udc00":1}}', '{"0":"a\\udfff"}']) {
      assertMalformed(jsonPacket(counted(ascii(text))), "bad_json");
    }
    // an escaped surrogate *pair* is fine
    assert.equal(decodeCmd(jsonPacket(counted(ascii('{"0":"\\ud83c\\udfae"}')))).body, "🎮");
  });

  it("top-level value that is not an object", () => {
    for (const text of ["null", "1", '"0"', "[1]", "true"]) {
      assertMalformed(jsonPacket(counted(ascii(text))), "bad_json");
    }
  });

  it('object without key "0"', () => {
    for (const text of ["{}", '{"1":1}', '{"00":1}', '{" 0":1}']) {
      assertMalformed(jsonPacket(counted(ascii(text))), "bad_json");
    }
  });

  const BAD_UTF8 = [
    [0xff],
    [0xc0, 0x80], // overlong NUL
    [0xed, 0xa0, 0x80], // an encoded surrogate
    [0xe6, 0x88], // truncated sequence
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  ];

  it("invalid UTF-8 in JSON text", () => {
    for (const bad of BAD_UTF8) {
      assertMalformed(jsonPacket(counted(concat(ascii('{"0":"'), bad, ascii('"}')))), "bad_utf8");
    }
  });

  it("invalid UTF-8 in BUF strings", () => {
    for (const bad of BAD_UTF8) {
      const body = concat(counted(bad), [0, 0], counted(ascii("m")));
      assertMalformed(concat(header(T, TalkroomCmd.UserMsg, P_BUF), body), "bad_utf8");
    }
  });

  it("BUF body too short", () => {
    const full = encodeCmd(T, TalkroomCmd.UserMsg, { 0: "ab", 1: 1, 2: "cd" }, P_BUF, TO_CLIENT);
    for (let n = 10; n < full.length; n += 1) assertMalformed(full.subarray(0, n), "short_body");
    assertMalformed(concat(header(T, TalkroomCmd.Enter, P_BUF), [1]), "short_body");
    assertMalformed(concat(header(T, TalkroomCmd.Enter, P_BUF)), "short_body");
    // a string count that runs past the end
    assertMalformed(concat(header(T, TalkroomCmd.UserArrived, P_BUF), [9, 0], ascii("abc")), "short_body");
  });

  it("BUF body too long", () => {
    const cases = [
      encodeCmd(T, TalkroomCmd.Enter, 1, P_BUF, TO_CLIENT),
      encodeCmd(T, TalkroomCmd.SendMsg, { 0: -100 }, P_BUF, TO_CLIENT),
      encodeCmd(T, TalkroomCmd.SendMsg, { 0: 1, 1: "a", 2: 0, 3: "b" }, P_BUF, TO_CLIENT),
      encodeCmd(T, TalkroomCmd.UserArrived, { uname: "a", usex: 0 }, P_BUF, TO_CLIENT),
      encodeCmd(Stype.Gateway, GatewayCmd.HEARTBEAT, null, P_BUF, TO_CLIENT),
      encodeCmd(Stype.Gateway, GatewayCmd.RATE_LIMITED, { dropped: 1 }, P_BUF, TO_CLIENT),
    ];
    for (const good of cases) {
      decodeCmd(good); // sanity: the untouched packet decodes
      assertMalformed(concat(good, [0]), "long_body");
    }
  });

  it("BUF where the command has no layout (auth is JSON only)", () => {
    assertMalformed(concat(header(Stype.Auth, AuthCmd.GUEST_LOGIN, P_BUF), counted(ascii(KEY))), "no_buf_layout");
    assertMalformed(concat(header(77, 1, P_BUF)), "no_buf_layout");
  });

  it("non-binary input and oversize messages", () => {
    assertMalformed("0200010000000000", "not_binary");
    assertMalformed(null, "not_binary");
    assertMalformed(new Uint8Array(65534), "too_long");
  });

  it("accepts ArrayBuffer, Buffer and views at an offset", () => {
    const bytes = encodeCmd(T, TalkroomCmd.Enter, 1, P_BUF, TO_CLIENT);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    assert.equal(decodeCmd(padded.subarray(3)).body, 1);
    assert.equal(decodeCmd(new DataView(padded.buffer, 3)).body, 1);
    assert.equal(decodeCmd(bytes.slice().buffer).body, 1);
    assert.equal(decodeCmd(Buffer.from(bytes)).body, 1);
  });
});

describe("encoding misuse throws LocalProtocolError", () => {
  const bad = [
    ["i16 out of range", () => encodeCmd(T, TalkroomCmd.Enter, { uname: "a", usex: 40000 }, P_BUF)],
    ["non-integer", () => encodeCmd(T, TalkroomCmd.Enter, { uname: "a", usex: 0.5 }, P_BUF)],
    ["missing field", () => encodeCmd(T, TalkroomCmd.Enter, { uname: "a" }, P_BUF)],
    ["string field not a string", () => encodeCmd(T, TalkroomCmd.SendMsg, 12, P_BUF)],
    ["lone surrogate in BUF", () => encodeCmd(T, TalkroomCmd.SendMsg, "a\ud800", P_BUF)],
    ["lone surrogate in JSON", () => encodeCmd(T, TalkroomCmd.SendMsg, { m: ["\udc00"] }, P_JSON)],
    ["lone surrogate in a JSON key", () => encodeCmd(T, TalkroomCmd.SendMsg, { "\ud800": 1 }, P_JSON)],
    ["BigInt in JSON", () => encodeCmd(T, TalkroomCmd.SendMsg, 1n, P_JSON)],
    ["no BUF layout", () => encodeCmd(Stype.Auth, AuthCmd.GUEST_LOGIN, KEY, P_BUF)],
    ["server-only layout", () => encodeCmd(T, TalkroomCmd.UserMsg, { 0: "a", 1: 0, 2: "b" }, P_BUF)],
    ["proto_type 3", () => encodeCmd(T, TalkroomCmd.SendMsg, "x", 3)],
    ["stype out of range", () => encodeCmd(65536, 1, null, P_JSON)],
    ["cmd_buf too long", () => encodeCmd(T, TalkroomCmd.SendMsg, "x".repeat(65530), P_JSON)],
  ];
  for (const [name, fn] of bad) it(name, () => assert.throws(fn, LocalProtocolError));
});

// ------------------------------------------------------------------------------ the client

/** A test double for the browser WebSocket: records what is sent, lets the test play server. */
class FakeWebSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.instances.push(this);
  }

  static last() {
    return FakeWebSocket.instances.at(-1);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    assert.ok(data instanceof Uint8Array, "the client sends binary data");
    this.sent.push(new Uint8Array(data));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // --- the server side, driven by tests

  open() {
    this.readyState = 1;
    this.onopen?.({ type: "open" });
  }

  /** Deliver bytes as the browser would with binaryType "arraybuffer". */
  receive(bytes) {
    const copy = bytes.slice();
    this.onmessage?.({ data: this.binaryType === "arraybuffer" ? copy.buffer : new Blob([copy]) });
  }

  /** Deliver one S->C command. */
  push(stype, ctype, body, proto = P_JSON) {
    this.receive(encodeCmd(stype, ctype, body, proto, TO_CLIENT));
  }

  receiveText(text) {
    this.onmessage?.({ data: text });
  }

  drop(code = 1006, reason = "", wasClean = false) {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean });
  }

  /** The client's packets, decoded with the C->S layouts. */
  packets() {
    return this.sent.map((bytes) => decodeCmd(bytes, TO_SERVER));
  }
}

/** A connected client and its socket. */
async function connected(options = {}) {
  const client = new NetbusClient({ WebSocketImpl: FakeWebSocket, heartbeatMs: 0, ...options });
  const opening = client.connect("ws://gw.test:6081/ws");
  const ws = FakeWebSocket.last();
  ws.open();
  await opening;
  return { client, ws };
}

/** Collect the details of the named events. */
function record(client, ...types) {
  const seen = [];
  for (const type of types) client.on(type, (detail) => seen.push([type, detail]));
  return seen;
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("NetbusClient", () => {
  it("connect opens a binary WebSocket and resolves on open", async () => {
    const { client, ws } = await connected();
    assert.equal(ws.url, "ws://gw.test:6081/ws");
    assert.equal(ws.binaryType, "arraybuffer");
    assert.equal(client.state, "open");
    assert.equal(client.connected, true);
    await assert.rejects(client.connect("ws://again"), LocalProtocolError);
  });

  it("connect rejects when the socket closes before opening, with no close event", async () => {
    const client = new NetbusClient({ WebSocketImpl: FakeWebSocket });
    const seen = record(client, "close");
    const opening = client.connect("ws://nowhere/ws");
    FakeWebSocket.last().drop(1006);
    await assert.rejects(opening, ConnectionClosedError);
    assert.equal(client.state, "closed");
    assert.deepEqual(seen, []);
  });

  it("connect rejects after connectTimeoutMs", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const client = new NetbusClient({ WebSocketImpl: FakeWebSocket, connectTimeoutMs: 500 });
    const opening = client.connect("ws://slow/ws");
    const ws = FakeWebSocket.last();
    t.mock.timers.tick(500);
    await assert.rejects(opening, ConnectionClosedError);
    assert.deepEqual(ws.closedWith, { code: 1000, reason: "connect timeout" });
    ws.open(); // late: must not revive the client
    assert.equal(client.state, "closed");
  });

  it("without a WebSocket implementation, connect rejects", async () => {
    const client = new NetbusClient({ WebSocketImpl: undefined });
    await assert.rejects(client.connect("ws://x"), LocalProtocolError);
  });

  it("guestLogin sends the golden packet and resolves with the reply", async () => {
    const { client, ws } = await connected();
    const login = client.guestLogin(KEY);
    assert.equal(hex(ws.sent[0]), hex(encodeCmd(2, 1, KEY, P_JSON)));
    const reply = { status: 1, uid: 7, unick: "遊客123456", usex: 0, uface: 0, uvip: 0, guest_key: KEY };
    ws.push(Stype.Auth, AuthCmd.GUEST_LOGIN, reply);
    assert.deepEqual(await login, reply);
    assert.deepEqual(client.account, reply);
  });

  it("a failed login resolves with the status object and leaves account null", async () => {
    const { client, ws } = await connected();
    const login = client.guestLogin("bad key");
    ws.push(Stype.Auth, AuthCmd.GUEST_LOGIN, { status: AuthStatus.INVALID_PARAMS });
    assert.deepEqual(await login, { status: -101 });
    assert.equal(client.account, null);
  });

  it("matches replies FIFO per (stype, ctype), with pushes in between", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "userMsg", "userArrived");
    const first = client.sendMsg("one");
    const enter = client.enter("ann", 1);
    const second = client.sendMsg("two");
    assert.deepEqual(ws.packets().map((p) => [p.ctype, p.body]),
      [[5, "one"], [1, { uname: "ann", usex: 1 }], [5, "two"]]);

    ws.push(T, TalkroomCmd.UserMsg, { 0: "bob", 1: 0, 2: "hi" });
    ws.push(T, TalkroomCmd.SendMsg, { 0: 1, 1: "ann", 2: 1, 3: "one" });
    ws.push(T, TalkroomCmd.UserArrived, { uname: "bob", usex: 0 });
    ws.push(T, TalkroomCmd.SendMsg, { 0: 1, 1: "ann", 2: 1, 3: "two" });
    ws.push(T, TalkroomCmd.Enter, TalkroomStatus.OK);

    assert.deepEqual(await first, { 0: 1, 1: "ann", 2: 1, 3: "one" });
    assert.deepEqual(await second, { 0: 1, 1: "ann", 2: 1, 3: "two" });
    assert.equal(await enter, TalkroomStatus.OK);
    assert.deepEqual(seen, [
      ["userMsg", { uname: "bob", usex: 0, msg: "hi" }],
      ["userArrived", { uname: "bob", usex: 0 }],
    ]);
  });

  it("speaks BUF when asked, per request or by default", async () => {
    const { client, ws } = await connected({ protoType: P_BUF });
    const enter = client.enter("zoë", 0);
    const exit = client.exit({ protoType: P_JSON });
    const [enterPacket, exitPacket] = ws.packets();
    assert.equal(enterPacket.protoType, P_BUF);
    assert.deepEqual(enterPacket.body, { uname: "zoë", usex: 0 });
    assert.equal(exitPacket.protoType, P_JSON);
    ws.push(T, TalkroomCmd.Enter, TalkroomStatus.IN_ROOM, P_BUF);
    ws.push(T, TalkroomCmd.Exit, TalkroomStatus.NOT_IN_ROOM, P_JSON);
    assert.equal(await enter, -101);
    assert.equal(await exit, -102);

    const send = client.sendMsg("🎮");
    ws.push(T, TalkroomCmd.SendMsg, { 0: 1, 1: "zoë", 2: 0, 3: "🎮" }, P_BUF);
    assert.deepEqual(await send, { 0: 1, 1: "zoë", 2: 0, 3: "🎮" });
    const refused = client.sendMsg("x");
    ws.push(T, TalkroomCmd.SendMsg, { 0: -100 }, P_BUF);
    assert.deepEqual(await refused, { 0: -100 });
  });

  it("login is always JSON, even with a BUF default", async () => {
    const { client, ws } = await connected({ protoType: P_BUF });
    client.guestLogin(KEY).catch(() => {});
    assert.equal(ws.packets()[0].protoType, P_JSON);
    client.close();
  });

  it("dispatches talkroom pushes in both encodings, to EventTarget and on() listeners", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "userArrived", "userExit", "userMsg");
    const viaEventTarget = [];
    client.addEventListener("userExit", (event) => viaEventTarget.push(event.detail));
    ws.push(T, TalkroomCmd.UserArrived, { uname: "遊客", usex: 1 }, P_BUF);
    ws.push(T, TalkroomCmd.UserExit, { uname: "遊客", usex: 1 }, P_JSON);
    ws.push(T, TalkroomCmd.UserMsg, { 0: "a\u007f", 1: 0, 2: "👍" }, P_BUF);
    assert.deepEqual(seen, [
      ["userArrived", { uname: "遊客", usex: 1 }],
      ["userExit", { uname: "遊客", usex: 1 }],
      ["userMsg", { uname: "a\u007f", usex: 0, msg: "👍" }],
    ]);
    assert.deepEqual(viaEventTarget, [{ uname: "遊客", usex: 1 }]);
  });

  it("on() returns an unsubscribe function", async () => {
    const { client, ws } = await connected();
    const seen = [];
    const off = client.on("userArrived", (d) => seen.push(d.uname));
    ws.push(T, TalkroomCmd.UserArrived, { uname: "a", usex: 0 });
    off();
    ws.push(T, TalkroomCmd.UserArrived, { uname: "b", usex: 0 });
    assert.deepEqual(seen, ["a"]);
  });

  it("every packet is also a message event", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "message");
    ws.push(T, TalkroomCmd.UserArrived, { uname: "a", usex: 0 }, P_BUF);
    assert.deepEqual(seen, [["message", { stype: 1, ctype: 3, utag: 0, protoType: 2, body: { uname: "a", usex: 0 } }]]);
  });

  it("RELOGIN: relogin event, then close with kicked: true", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "relogin", "close");
    const pending = client.sendMsg("lost");
    ws.push(Stype.Auth, AuthCmd.RELOGIN, null);
    ws.drop(1000, "relogin", true);
    await assert.rejects(pending, ConnectionClosedError);
    assert.deepEqual(seen, [
      ["relogin", null],
      ["close", { code: 1000, reason: "relogin", wasClean: true, kicked: true, byClient: false }],
    ]);
  });

  it("SERVICE_UNAVAILABLE rejects the oldest pending request of that command", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "unavailable");
    const login = client.guestLogin(KEY);
    const a = client.sendMsg("a");
    const b = client.sendMsg("b");
    ws.push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE, { stype: 1, ctype: 5 });
    await assert.rejects(a, (err) => err instanceof ServiceUnavailableError && err.stype === 1 && err.ctype === 5);
    ws.push(T, TalkroomCmd.SendMsg, { 0: 1, 1: "u", 2: 0, 3: "b" });
    assert.deepEqual(await b, { 0: 1, 1: "u", 2: 0, 3: "b" }, "b still gets its reply");
    ws.push(Stype.Auth, AuthCmd.GUEST_LOGIN, { status: 1 });
    assert.deepEqual(await login, { status: 1 }, "other services are untouched");
    assert.deepEqual(seen, [["unavailable", { stype: 1, ctype: 5 }]]);
  });

  it("SERVICE_UNAVAILABLE with ctype 0 (service down) fails everything pending for that service", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "unavailable");
    const exit = client.exit();
    const enter = client.enter("x", 0);
    const send = client.sendMsg("y");
    const login = client.guestLogin(KEY);
    ws.push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE, { stype: 1, ctype: 0 }, P_BUF);
    for (const [p, ctype] of [[exit, 2], [enter, 1], [send, 5]]) {
      await assert.rejects(p, (err) => err instanceof ServiceUnavailableError && err.stype === 1 && err.ctype === ctype);
    }
    ws.push(Stype.Auth, AuthCmd.GUEST_LOGIN, { status: 1 });
    assert.deepEqual(await login, { status: 1 }, "other services are untouched");
    assert.deepEqual(seen, [["unavailable", { stype: 1, ctype: 0 }]]);
  });

  it("SERVICE_UNAVAILABLE naming a command with nothing pending fails nothing", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "unavailable");
    const enter = client.enter("x", 0);
    client.send(T, TalkroomCmd.SendMsg, "fire and forget");
    ws.push(Stype.Gateway, GatewayCmd.SERVICE_UNAVAILABLE, { stype: 1, ctype: 5 });
    ws.push(T, TalkroomCmd.Enter, 1);
    assert.equal(await enter, 1);
    assert.deepEqual(seen, [["unavailable", { stype: 1, ctype: 5 }]]);
  });

  it("LOGIN_REQUIRED rejects the oldest pending request of that command", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "loginRequired");
    const first = client.enter("x", 0);
    const second = client.enter("y", 1);
    ws.push(Stype.Gateway, GatewayCmd.LOGIN_REQUIRED, { stype: 1, ctype: 1 });
    await assert.rejects(first, (err) => err instanceof LoginRequiredError && err.stype === 1 && err.ctype === 1);
    ws.push(Stype.Gateway, GatewayCmd.LOGIN_REQUIRED, { stype: 1, ctype: 1 }, P_BUF);
    await assert.rejects(second, LoginRequiredError);
    assert.equal(seen.length, 2);
  });

  it("SERVICE_AVAILABLE becomes an available event", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "available");
    ws.push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE, { stype: 1, ctype: 0 }, P_BUF);
    ws.push(Stype.Gateway, GatewayCmd.SERVICE_AVAILABLE, { stype: 2, ctype: 0 });
    assert.deepEqual(seen, [["available", { stype: 1, ctype: 0 }], ["available", { stype: 2, ctype: 0 }]]);
  });

  it("shutdown and rate-limit notices become events", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "shutdown", "rateLimited");
    ws.push(Stype.Gateway, GatewayCmd.SHUTDOWN, { reason: "maintenance" });
    ws.push(Stype.Gateway, GatewayCmd.RATE_LIMITED, { dropped: 3 }, P_BUF);
    assert.deepEqual(seen, [["shutdown", { reason: "maintenance" }], ["rateLimited", { dropped: 3 }]]);
  });

  it("a request times out with RequestTimeoutError; a late reply is dropped quietly", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { client, ws } = await connected({ timeoutMs: 1000 });
    const slow = client.enter("x", 0);
    t.mock.timers.tick(999);
    const fast = client.exit({ timeoutMs: 0 }); // 0: no timeout
    t.mock.timers.tick(1);
    await assert.rejects(slow, RequestTimeoutError);
    ws.push(T, TalkroomCmd.Enter, 1); // late reply, nothing waits for it
    ws.push(T, TalkroomCmd.Exit, 1);
    assert.equal(await fast, 1);
    assert.equal(client.state, "open");
  });

  it("a malformed message is dropped with a protocolError event; the client keeps working", async () => {
    const { client, ws } = await connected();
    const seen = [];
    client.on("protocolError", ({ error }) => seen.push(error.kind));
    const enter = client.enter("x", 0);
    ws.receive(fromHex("0100"));
    ws.receive(fromHex("0100 0100 00000000 0300 0100")); // proto_type 3
    ws.receive(concat(header(T, TalkroomCmd.Enter, P_JSON), counted(ascii("[1]"))));
    ws.receiveText("hello");
    ws.push(T, TalkroomCmd.Enter, 1);
    assert.equal(await enter, 1);
    assert.deepEqual(seen, ["short_header", "bad_proto_type", "bad_json", "not_binary"]);
  });

  it("the server closing rejects every pending request and emits close once", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "close");
    const pending = [client.enter("x", 0), client.sendMsg("y"), client.guestLogin(KEY)];
    ws.drop(1006);
    for (const p of pending) await assert.rejects(p, ConnectionClosedError);
    ws.drop(1006); // a second close event from the same socket is ignored
    assert.deepEqual(seen, [["close", { code: 1006, reason: "", wasClean: false, kicked: false, byClient: false }]]);
    await assert.rejects(client.sendMsg("after"), ConnectionClosedError);
    assert.throws(() => client.send(T, TalkroomCmd.SendMsg, "after"), ConnectionClosedError);
  });

  it("close() fails pending requests, closes the socket and is idempotent", async () => {
    const { client, ws } = await connected();
    const seen = record(client, "close");
    const pending = client.exit();
    client.close();
    client.close();
    await assert.rejects(pending, ConnectionClosedError);
    assert.deepEqual(ws.closedWith, { code: 1000, reason: "" });
    assert.equal(seen.length, 1);
    assert.equal(seen[0][1].byClient, true);
  });

  it("reconnects on the same instance; events of the old socket are ignored", async () => {
    const { client, ws: old } = await connected();
    const seen = record(client, "userArrived");
    old.drop(1006);
    const opening = client.connect("ws://gw.test:6081/ws");
    const fresh = FakeWebSocket.last();
    assert.notEqual(fresh, old);
    fresh.open();
    await opening;
    old.onmessage?.({ data: encodeCmd(T, 3, { uname: "ghost", usex: 0 }, P_JSON, TO_CLIENT).buffer });
    fresh.push(T, TalkroomCmd.UserArrived, { uname: "real", usex: 0 });
    assert.deepEqual(seen, [["userArrived", { uname: "real", usex: 0 }]]);
  });

  it("sends HEARTBEAT every heartbeatMs while connected, and stops after close", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"] });
    const { client, ws } = await connected({ heartbeatMs: 20_000 });
    t.mock.timers.tick(19_999);
    assert.equal(ws.sent.length, 0);
    t.mock.timers.tick(1);
    t.mock.timers.tick(20_000);
    assert.deepEqual(ws.packets().map((p) => [p.stype, p.ctype, p.body]), [[0, 1, null], [0, 1, null]]);
    const seen = record(client, "heartbeat");
    ws.push(Stype.Gateway, GatewayCmd.HEARTBEAT, null); // the echo is not a push to anyone
    assert.deepEqual(seen, [["heartbeat", null]]);
    client.close();
    t.mock.timers.tick(60_000);
    assert.equal(ws.sent.length, 2);
  });

  it("default heartbeat period is 20 s", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"] });
    const client = new NetbusClient({ WebSocketImpl: FakeWebSocket });
    const opening = client.connect("ws://x/ws");
    const ws = FakeWebSocket.last();
    ws.open();
    await opening;
    t.mock.timers.tick(20_000);
    assert.equal(ws.packets()[0].ctype, GatewayCmd.HEARTBEAT);
    client.close();
  });

  it("once the gateway has echoed a heartbeat, silence closes the link (code 1006)", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"] });
    const { client, ws } = await connected({ heartbeatMs: 1000 });
    const seen = record(client, "close");
    t.mock.timers.tick(1000);
    ws.push(Stype.Gateway, GatewayCmd.HEARTBEAT, null);
    t.mock.timers.tick(2000);
    assert.deepEqual(seen, []);
    t.mock.timers.tick(1000);
    assert.equal(seen.length, 1);
    assert.equal(seen[0][1].code, 1006); // not 4000, the server's "relogin"
    assert.equal(ws.closedWith.code, 1000);
  });

  it("a gateway that never echoes heartbeats is not timed out", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"] });
    const { client } = await connected({ heartbeatMs: 1000 });
    t.mock.timers.tick(60_000);
    assert.equal(client.state, "open");
    client.close();
  });

  it("send() is fire-and-forget", async () => {
    const { client, ws } = await connected();
    client.send(T, TalkroomCmd.Exit, null, { protoType: P_BUF });
    assert.equal(hex(ws.sent[0]), "01000200000000000200");
    await flush();
  });

  it("encoding errors reject the request and send nothing", async () => {
    const { client, ws } = await connected();
    await assert.rejects(client.enter("x", 70000, { protoType: P_BUF }), LocalProtocolError);
    await assert.rejects(client.sendMsg("\ud800"), LocalProtocolError);
    await assert.rejects(client.request(Stype.Auth, 1, KEY, { protoType: P_BUF }), LocalProtocolError);
    assert.equal(ws.sent.length, 0);
  });
});
