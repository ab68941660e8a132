// Unit tests for netbus/roles/web/static/recovery.js: what the chat page does on
// SERVICE_AVAILABLE (issue 10 item 12). Run: node --test tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Stype } from "../../netbus/roles/web/static/netbus.js";
import { onServiceAvailable } from "../../netbus/roles/web/static/recovery.js";

const A = Stype.Auth;
const T = Stype.TalkRoom;
const page = (overrides = {}) => ({
  phase: "ready", room: "out", wantRoom: false, busy: false, banner: null, ...overrides,
});
const unavailable = (stype) => ({ kind: "unavailable", stype });
const NOTHING = { hideBanner: false, retryLogin: false, rejoin: false };

describe("onServiceAvailable", () => {
  it("a signed-in page clears its stale banner about the login service", () => {
    assert.deepEqual(onServiceAvailable(page({ banner: unavailable(A) }), A),
      { ...NOTHING, hideBanner: true });
  });

  it("a page whose login failed during the outage signs in again", () => {
    assert.deepEqual(onServiceAvailable(page({ phase: "failed", banner: unavailable(A) }), A),
      { hideBanner: true, retryLogin: true, rejoin: false });
    // whatever the banner says (a timeout, a dismissed banner): the login is retried
    for (const banner of [null, { kind: "timeout", stype: null }, { kind: "error", stype: null }]) {
      assert.deepEqual(onServiceAvailable(page({ phase: "failed", banner }), A),
        { hideBanner: false, retryLogin: true, rejoin: false });
    }
  });

  it("only a banner about the service that is back is cleared", () => {
    assert.deepEqual(onServiceAvailable(page({ banner: unavailable(T) }), A), NOTHING);
    assert.deepEqual(onServiceAvailable(page({ banner: unavailable(A) }), T), NOTHING);
    assert.deepEqual(onServiceAvailable(page({ banner: { kind: "relogin", stype: null } }), A), NOTHING);
    assert.deepEqual(onServiceAvailable(page({ banner: { kind: "rate-limited", stype: null } }), T), NOTHING);
  });

  it("the talkroom back re-enters the room the user was in", () => {
    const wasIn = { wantRoom: true, room: "out" };
    assert.deepEqual(onServiceAvailable(page({ ...wasIn, banner: unavailable(T) }), T),
      { hideBanner: true, retryLogin: false, rejoin: true });
    assert.equal(onServiceAvailable(page({ ...wasIn, busy: true }), T).rejoin, false);
    assert.equal(onServiceAvailable(page({ ...wasIn, room: "in" }), T).rejoin, false);
    assert.equal(onServiceAvailable(page({ ...wasIn, phase: "failed" }), T).rejoin, false);
    assert.equal(onServiceAvailable(page({ ...wasIn, phase: "kicked" }), T).rejoin, false);
    assert.equal(onServiceAvailable(page({ wantRoom: false }), T).rejoin, false);
  });

  it("pages that are not failed never sign in again on their own", () => {
    for (const phase of ["connecting", "logging-in", "ready", "reconnecting", "kicked"]) {
      assert.equal(onServiceAvailable(page({ phase }), A).retryLogin, false, phase);
    }
  });
});
