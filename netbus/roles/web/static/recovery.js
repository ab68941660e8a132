// recovery.js: what the chat page does when the gateway says a service is back.
//
// The gateway sends SERVICE_AVAILABLE ({stype, ctype: 0}, docs/protocol.md §7) to every
// logged-in connection, and to a connection not logged in that used the service (a login
// refused during an auth outage). The page then:
//   - hides an "unavailable" banner about that service (and only about that one), so a
//     signed-in page does not keep a stale warning;
//   - signs in again if its last login failed and the login service is back (nothing else
//     would retry it: the connection itself is fine);
//   - re-enters the room if the talkroom is back and the user was in it.
// Kept free of the DOM so that tests/js can check every case.

import { Stype } from "./netbus.js";

/**
 * @param {{phase: string, room: string, wantRoom: boolean, busy: boolean,
 *          banner: {kind: string, stype: number|null}|null}} page  the page's state;
 *   `banner` is the visible banner, if any
 * @param {number} stype  the service that is back
 * @returns {{hideBanner: boolean, retryLogin: boolean, rejoin: boolean}}
 */
export function onServiceAvailable(page, stype) {
  const banner = page.banner;
  const retryLogin = page.phase === "failed" && stype === Stype.Auth;
  const aboutIt = banner !== null && banner.kind === "unavailable" && banner.stype === stype;
  return {
    hideBanner: aboutIt || (retryLogin && banner !== null && banner.kind === "unavailable"),
    retryLogin,
    rejoin: stype === Stype.TalkRoom && page.phase === "ready" && page.wantRoom
      && page.room === "out" && !page.busy,
  };
}
