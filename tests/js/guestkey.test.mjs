// Unit tests for netbus/roles/web/static/guestkey.js: the page's guest keys always pass the
// center's variety rule (docs/security.md "Guest keys"), and guessable stored keys are not
// kept. Run: node --test tests/js/

import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { describe, it } from "node:test";

import {
  KEY_ALPHABET,
  MIN_KEY_DISTINCT,
  newGuestKey,
  validGuestKey,
} from "../../netbus/roles/web/static/guestkey.js";

// The same cases as tests/e2e/test_login.py checks against the center.
const GUESSABLE = [
  "a".repeat(16),
  "a".repeat(64),
  "ab".repeat(8),
  "0000000000000000",
  "abcdefg".repeat(3),
  "1234567".repeat(9),
  "a".repeat(24) + "bcdefgh1",
];
const ACCEPTED = ["0123456789abcdefABCDEF_-ghijklmn", "a".repeat(8) + "bcdefgh1", "0123456789abcdef"];
const MALFORMED = ["", "a".repeat(15) + "!", "abcdefghijklmnopé", "abcdefgh ijklmnop", "x".repeat(65), null, 42];

describe("validGuestKey", () => {
  it("refuses guessable keys", () => {
    for (const key of GUESSABLE) assert.equal(validGuestKey(key), false, key);
  });
  it("accepts varied keys, exactly at the limits too", () => {
    assert.equal(MIN_KEY_DISTINCT, 8);
    for (const key of ACCEPTED) assert.equal(validGuestKey(key), true, key);
  });
  it("refuses malformed keys", () => {
    for (const key of MALFORMED) assert.equal(validGuestKey(key), false, String(key));
  });
});

describe("newGuestKey", () => {
  it("makes 32-character keys from the 64-symbol alphabet that pass the rule", () => {
    globalThis.crypto ??= webcrypto;
    const seen = new Set();
    for (let i = 0; i < 20000; i += 1) {
      const key = newGuestKey();
      assert.equal(key.length, 32);
      assert.ok([...key].every((ch) => KEY_ALPHABET.includes(ch)), key);
      assert.ok(validGuestKey(key), key);
      seen.add(key);
    }
    assert.equal(seen.size, 20000);
  });
  it("draws again when the random source gives a guessable key", () => {
    let calls = 0;
    const random = (bytes) => {
      calls += 1;
      if (calls === 1) return bytes.fill(0); // "AAAA…": refused
      for (let i = 0; i < bytes.length; i += 1) bytes[i] = i; // 32 different symbols
      return bytes;
    };
    const key = newGuestKey(random);
    assert.equal(calls, 2);
    assert.equal(key, KEY_ALPHABET.slice(0, 32));
  });
});
