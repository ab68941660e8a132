// Codec registries in netbus.js built from service declarations, and REQUEST_FAILED.
// Run: node --test tests/js/
//
// The declaration is what `python -m netbus.service.declare` prints for a service; the Python
// suite (tests/service/test_codecs.py) checks that builtin_codecs.js is exactly that output.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  CODECS,
  CONTROL_CODECS,
  CodecRegistry,
  DECLARATION_FORMAT,
  Direction,
  GatewayCmd,
  LocalProtocolError,
  NetbusClient,
  ProtoType,
  ProtocolError,
  RequestFailedError,
  RequestStatus,
  decodeCmd,
  encodeCmd,
  layoutFromDescription,
} from "../../netbus/roles/web/static/netbus.js";
import { BUILTIN_DECLARATION } from "../../netbus/roles/web/static/builtin_codecs.js";

const { JSON: P_JSON, BUF: P_BUF } = ProtoType;
const C = { direction: Direction.TO_CLIENT };
const hex = (bytes) => Buffer.from(bytes).toString("hex");

/** What the Python echo example (docs/services.md) declares. */
const ECHO = {
  format: "netbus-codecs/1",
  layouts: [
    { stype: 16, ctype: 1, to_server: { fields: [["seq", "u32"], ["data", "str"]] },
      to_client: { fields: [["seq", "u32"], ["data", "str"]] } },
    { stype: 16, ctype: 2, to_client: { status: "code", ok: 0, fields: [["text", "str"]] } },
    { stype: 16, ctype: 3, to_client: { scalar: "u16" } },
  ],
};

describe("CodecRegistry.fromDeclaration", () => {
  it("reads the format the Python side writes", () => {
    assert.equal(DECLARATION_FORMAT, "netbus-codecs/1");
    assert.equal(BUILTIN_DECLARATION.format, DECLARATION_FORMAT);
    const codecs = CodecRegistry.fromDeclaration(ECHO);
    const bytes = encodeCmd(16, 1, { seq: 7, data: "hé" }, P_BUF, { codecs });
    assert.equal(hex(bytes), "10000100000000000200" + "07000000" + "0300" + "68c3a9");
    assert.deepEqual(decodeCmd(bytes, { direction: Direction.TO_SERVER, codecs }).body, { seq: 7, data: "hé" });
  });

  it("status layouts carry their fields only on the ok status", () => {
    const codecs = CodecRegistry.fromDeclaration(ECHO);
    const ok = encodeCmd(16, 2, { code: 0, text: "fine" }, P_BUF, { ...C, codecs });
    assert.equal(hex(ok.subarray(10)), "0000" + "0400" + hex(Buffer.from("fine")));
    const error = encodeCmd(16, 2, { code: -3, text: "ignored" }, P_BUF, { ...C, codecs });
    assert.equal(hex(error.subarray(10)), "fdff");
    assert.deepEqual(decodeCmd(error, { codecs }).body, { code: -3 });
    assert.throws(() => decodeCmd(new Uint8Array([...error, 0]), { codecs }),
      (e) => e instanceof ProtocolError && e.kind === "long_body");
  });

  it("always includes the control channel, REQUEST_FAILED among it", () => {
    const codecs = CodecRegistry.fromDeclaration(ECHO);
    assert.equal(codecs.size, CONTROL_CODECS.size + 4);
    const failed = { stype: 16, ctype: 1, status: RequestStatus.BAD_REQUEST };
    const bytes = encodeCmd(0, GatewayCmd.REQUEST_FAILED, failed, P_BUF, { ...C, codecs });
    assert.equal(hex(bytes.subarray(10)), "1000" + "0100" + "feff"); // u16, u16, i16
    assert.deepEqual(decodeCmd(bytes, { codecs }).body, failed);
  });

  it("registries are immutable; merge makes a new one", () => {
    const echo = CodecRegistry.fromDeclaration(ECHO);
    const both = CODECS.merge(echo);
    assert.equal(both.size, CODECS.size + 4);
    assert.equal(CODECS.layout(16, 1, Direction.TO_SERVER), undefined);
    assert.ok(both.layout(1, 1, Direction.TO_SERVER)); // the talkroom's, kept
    assert.ok(Object.isFrozen(CODECS));
    assert.equal(typeof CODECS.register, "undefined");
    assert.throws(() => { CODECS.extra = 1; }, TypeError);
  });

  it("the built-in declaration is the talkroom's and auth's", () => {
    const rows = BUILTIN_DECLARATION.layouts.map((r) => `${r.stype}:${r.ctype}`);
    assert.deepEqual(rows, ["1:1", "1:2", "1:3", "1:4", "1:5", "1:6", "2:2"]);
    const bytes = encodeCmd(1, 5, { 0: 1, 1: "遊客", 2: 1, 3: "hi 😀" }, P_BUF, C);
    assert.equal(hex(bytes.subarray(10)), "0100" + "0600e9818ae5aea2" + "0100" + "0700686920f09f9880");
  });

  const BAD = [
    null,
    { format: "other", layouts: [] },
    { format: "netbus-codecs/1" },
    { format: "netbus-codecs/1", layouts: [{ stype: 1 }] },
    { format: "netbus-codecs/1", layouts: [{ stype: 1, ctype: 70000 }] },
    { format: "netbus-codecs/1", layouts: [{ stype: 1, ctype: 1, to_server: {} }] },
    { format: "netbus-codecs/1", layouts: [{ stype: 1, ctype: 1, to_server: { scalar: "f64" } }] },
    { format: "netbus-codecs/1", layouts: [{ stype: 1, ctype: 1, to_server: { fields: [["a"]] } }] },
    { format: "netbus-codecs/1", layouts: [{ stype: 1, ctype: 1, to_client: { status: "0", fields: [] } }] },
  ];
  for (const doc of BAD) {
    it(`refuses ${JSON.stringify(doc)}`, () => {
      assert.throws(() => CodecRegistry.fromDeclaration(doc), TypeError);
    });
  }

  it("layoutFromDescription refuses unknown kinds in status fields", () => {
    assert.throws(() => layoutFromDescription({ status: "0", ok: 1, fields: [["a", "u8"]] }), TypeError);
    assert.throws(() => encodeCmd(16, 3, 70000, P_BUF, { ...C, codecs: CodecRegistry.fromDeclaration(ECHO) }),
      LocalProtocolError);
  });
});

// ------------------------------------------------------------------------ REQUEST_FAILED

class FakeWebSocket {
  static last = null;

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.last = this;
  }

  send(data) { this.sent.push(data); }

  close() { this.readyState = 3; }

  open() {
    this.readyState = 1;
    this.onopen?.({ type: "open" });
  }

  push(stype, ctype, body, proto = P_JSON) {
    const bytes = encodeCmd(stype, ctype, body, proto, C);
    this.onmessage?.({ data: bytes.slice().buffer });
  }
}

describe("REQUEST_FAILED", () => {
  it("rejects the oldest pending request of that command with RequestFailedError", async () => {
    const client = new NetbusClient({ WebSocketImpl: FakeWebSocket, heartbeatMs: 0 });
    const seen = [];
    client.on("requestFailed", (detail) => seen.push(detail));
    const opening = client.connect("ws://gw.test/ws");
    const ws = FakeWebSocket.last;
    ws.open();
    await opening;
    const first = client.request(16, 1, { seq: 1 });
    const second = client.request(16, 1, { seq: 2 });
    ws.push(0, GatewayCmd.REQUEST_FAILED, { stype: 16, ctype: 1, status: RequestStatus.UNKNOWN_COMMAND });
    ws.push(16, 1, { seq: 2 });
    await assert.rejects(first, (e) => e instanceof RequestFailedError
      && e.stype === 16 && e.ctype === 1 && e.status === RequestStatus.UNKNOWN_COMMAND);
    assert.deepEqual(await second, { seq: 2 });
    assert.deepEqual(seen, [{ stype: 16, ctype: 1, status: -1 }]);
    client.close();
  });
});
