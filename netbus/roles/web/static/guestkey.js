// guestkey.js: the browser page's guest key: how it is made and which stored keys are kept.
//
// A key is 16–64 characters of A–Z a–z 0–9 _ - (docs/protocol.md §6.2) that also passes the
// center's variety rule (docs/security.md "Guest keys"): at least 8 different characters,
// none making up more than half the key. A random 32-character key fails that rule with
// probability below 1e-19; newGuestKey draws again if it ever does, so every key it returns
// is accepted.

export const KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"; // 64
export const KEY_LENGTH = 32;
export const MIN_KEY_DISTINCT = 8;
const KEY_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/** True if the center accepts `key` (format and variety rule). */
export function validGuestKey(key) {
  if (typeof key !== "string" || !KEY_PATTERN.test(key)) return false;
  const counts = new Map();
  for (const ch of key) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  return counts.size >= MIN_KEY_DISTINCT && 2 * Math.max(...counts.values()) <= key.length;
}

/**
 * A new random key: 32 characters, `byte & 63` picks one of 64 symbols without bias.
 * @param {(bytes: Uint8Array) => Uint8Array} [random] fills the array (crypto.getRandomValues)
 */
export function newGuestKey(random = (bytes) => crypto.getRandomValues(bytes)) {
  for (;;) {
    const bytes = random(new Uint8Array(KEY_LENGTH));
    const key = Array.from(bytes, (b) => KEY_ALPHABET[b & 63]).join("");
    if (validGuestKey(key)) return key;
  }
}
