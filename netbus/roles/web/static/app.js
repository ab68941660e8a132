// app.js: the talkroom chat page, built on netbus.js.
//
// Flow: connect to the gateway -> GUEST_LOGIN with a key kept in localStorage -> the lobby
// form enters the room -> chat. A dropped connection reconnects with backoff, logs in again
// and re-enters the room if the user was in it. RELOGIN (this account signed in elsewhere)
// never reconnects on its own. All user text goes into the DOM through textContent.

import {
  AuthStatus,
  ConnectionClosedError,
  LoginRequiredError,
  NetbusClient,
  ProtoType,
  RequestTimeoutError,
  ServiceUnavailableError,
  Stype,
  TalkroomStatus,
} from "./netbus.js";
import { newGuestKey, validGuestKey } from "./guestkey.js";
import { onServiceAvailable } from "./recovery.js";

// ---------------------------------------------------------------------------- configuration

const params = new URLSearchParams(location.search);
const GATEWAY_URL = resolveGatewayUrl();
// ?proto=buf sends talkroom commands as BUF (login is always JSON).
const TALK = { protoType: params.get("proto") === "buf" ? ProtoType.BUF : ProtoType.JSON };

const KEY_STORAGE = "netbus.guestKey";
const NAME_STORAGE = "netbus.uname";
const SEX_STORAGE = "netbus.usex";
const MAX_LINES = 500; // message lines kept in the DOM
const RECONNECT_MAX_MS = 30_000;

/**
 * window.NETBUS_CONFIG.gatewayUrl (from the web role's /config.js), else ws(s)://<host>:6081/ws.
 *
 * Never from this page's own URL: the guest key goes to whatever gateway the page uses, so a
 * link that could name the gateway (the old `?gw=`) could hand the key to anyone.
 * The CSP's connect-src (docs/security.md) enforces the same rule in the browser.
 */
function resolveGatewayUrl() {
  const configured = window.NETBUS_CONFIG?.gatewayUrl;
  if (typeof configured === "string" && configured.trim() !== "") {
    const url = toWebSocketUrl(configured.trim());
    if (url) return url;
    console.warn(`netbus: ignoring invalid gateway URL ${JSON.stringify(configured)}`);
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.hostname || "localhost"}:6081/ws`;
}

/** Accept ws(s):// URLs, http(s):// (mapped to ws(s)://) and paths relative to this page. */
function toWebSocketUrl(text) {
  try {
    const url = new URL(text, location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    else if (url.protocol === "https:") url.protocol = "wss:";
    return url.protocol === "ws:" || url.protocol === "wss:" ? url.href : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------- storage, key

// localStorage can throw (privacy modes, disabled storage): then nothing persists.
const storage = {
  get(name) {
    try { return localStorage.getItem(name); } catch { return null; }
  },
  set(name, value) {
    try { localStorage.setItem(name, value); } catch { /* not persisted */ }
  },
};

/** The stored key, or a new one when there is none (or one the center would refuse). */
function loadGuestKey() {
  let key = storage.get(KEY_STORAGE);
  if (!validGuestKey(key)) {
    key = newGuestKey();
    storage.set(KEY_STORAGE, key);
  }
  return key;
}

// ---------------------------------------------------------------------------------- the DOM

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  status: byTestId("status"),
  account: byTestId("account"),
  unick: byTestId("unick"),
  uid: byTestId("uid"),
  banner: byTestId("banner"),
  bannerText: byTestId("banner-text"),
  bannerAction: byTestId("banner-action"),
  bannerDismiss: byTestId("banner-dismiss"),
  lobby: byTestId("lobby"),
  enterForm: byTestId("enter-form"),
  enterName: byTestId("enter-name"),
  enterSex: byTestId("enter-sex"),
  enterError: byTestId("enter-error"),
  enterBtn: byTestId("enter-btn"),
  room: byTestId("room"),
  roomName: byTestId("room-name"),
  exitBtn: byTestId("exit-btn"),
  members: byTestId("members"),
  memberCount: byTestId("member-count"),
  messages: byTestId("messages"),
  composer: byTestId("composer"),
  msgInput: byTestId("msg-input"),
  sendBtn: byTestId("send-btn"),
  gatewayUrl: byTestId("gateway-url"),
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

// -------------------------------------------------------------------------------- the state

const app = {
  key: loadGuestKey(),
  account: null,
  phase: "connecting", // connecting | logging-in | ready | reconnecting | kicked | failed
  room: "out", // out | entering | in (what the server knows)
  wantRoom: false, // the user is in the room, or was when the connection dropped
  uname: "",
  usex: 0,
  members: [], // [{uname, usex, self}]
  busy: false, // an Enter / Exit is in flight
  everConnected: false,
  kicked: false,
  retries: 0,
  reconnectTimer: null,
  countdownTimer: null,
  shutdownReason: null,
  bannerTimer: null,
  bannerAction: null,
  autoLoginAt: 0, // when LOGIN_REQUIRED last made us sign in again
};

const client = new NetbusClient();
// For debugging from the console and for browser tests; not an API.
window.netbusApp = { client, app };

const STATUS_TEXT = {
  connecting: "Connecting…",
  "logging-in": "Signing in…",
  ready: "Online",
  "in-room": "In the room",
  reconnecting: "Reconnecting…",
  kicked: "Signed in elsewhere",
  failed: "Not signed in",
};

/** Bring every control in line with `app`. Cheap; called after each change. */
function render() {
  const state = app.phase === "ready" && app.room === "in" ? "in-room" : app.phase;
  ui.status.dataset.state = state;
  ui.status.textContent = STATUS_TEXT[state];

  const view = app.wantRoom || app.room === "in" ? "room" : "lobby";
  document.body.dataset.view = view;
  ui.lobby.hidden = view !== "lobby";
  ui.room.hidden = view !== "room";

  const ready = app.phase === "ready";
  ui.enterBtn.disabled = !ready || app.room !== "out" || app.busy;
  ui.enterBtn.textContent = app.room === "entering" ? "Entering…" : "Enter";
  const inRoom = ready && app.room === "in";
  ui.msgInput.disabled = !inRoom;
  ui.sendBtn.disabled = !inRoom;
  // Exit also works while the room is unreachable: it just stops the automatic re-entry.
  ui.exitBtn.disabled = view !== "room" || app.busy;
  ui.roomName.textContent = app.uname;

  ui.account.hidden = !app.account;
  ui.unick.textContent = app.account ? String(app.account.unick ?? "") : "";
  ui.uid.textContent = app.account ? String(app.account.uid ?? "") : "";
  renderMembers();
}

function setPhase(phase) {
  app.phase = phase;
  render();
}

function renderMembers() {
  const items = app.members.map((m) => {
    const li = document.createElement("li");
    li.className = m.self ? "member member-self" : "member";
    li.dataset.testid = "member";
    li.dataset.uname = m.uname;
    li.dataset.usex = String(m.usex);
    li.dataset.self = String(m.self);
    li.append(sexBadge(m.usex));
    const name = document.createElement("span");
    name.className = "member-name";
    name.textContent = m.uname;
    li.append(name);
    return li;
  });
  ui.members.replaceChildren(...items);
  ui.memberCount.textContent = String(app.members.length);
}

function sexBadge(usex) {
  const badge = document.createElement("span");
  badge.className = `sex sex-${usex === 1 ? "f" : "m"}`;
  badge.textContent = usex === 1 ? "♀" : "♂";
  badge.title = usex === 1 ? "female" : "male";
  return badge;
}

// -------------------------------------------------------------------------------- messages

/**
 * Append a line to the message list.
 * kind "chat": {uname, usex, text, own}; kind "system": {text, event}.
 */
function addLine({ kind, text, uname, usex, own = false, event }) {
  const list = ui.messages;
  const stick = own || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const now = new Date();

  const li = document.createElement("li");
  li.className = `msg msg-${kind}${own ? " msg-own" : ""}`;
  li.dataset.testid = "message";
  li.dataset.kind = kind;
  if (kind === "chat") {
    li.dataset.own = String(own);
    li.dataset.uname = uname;
  }
  if (event) li.dataset.event = event;

  const time = document.createElement("time");
  time.dataset.testid = "message-time";
  time.dateTime = now.toISOString();
  time.title = now.toLocaleString();
  time.textContent = timeFormat.format(now);
  li.append(time);

  if (kind === "chat") {
    const author = document.createElement("span");
    author.className = "msg-author";
    author.dataset.testid = "message-author";
    author.append(sexBadge(usex), document.createTextNode(uname));
    li.append(author);
  }
  const body = document.createElement("span");
  body.className = "msg-text";
  body.dataset.testid = "message-text";
  body.textContent = text;
  li.append(body);

  list.append(li);
  while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

const systemLine = (text, event = "info") => addLine({ kind: "system", text, event });

// ---------------------------------------------------------------------------------- banner

/**
 * Show the banner. kind: relogin | reconnecting | unavailable | timeout | shutdown |
 * rate-limited | login-failed | error. The relogin banner stays until the user acts on it.
 */
/** Show the banner; `stype` names the service an "unavailable" banner is about. */
function showBanner(kind, text, { action = null, actionLabel = "Retry", dismissible = true, autoHideMs = 0, stype = null } = {}) {
  if (ui.banner.dataset.kind === "relogin" && !ui.banner.hidden && kind !== "relogin") return;
  clearTimeout(app.bannerTimer);
  ui.banner.dataset.kind = kind;
  ui.banner.dataset.stype = stype === null ? "" : String(stype);
  ui.bannerText.textContent = text;
  app.bannerAction = action;
  ui.bannerAction.hidden = !action;
  ui.bannerAction.textContent = actionLabel;
  ui.bannerDismiss.hidden = !dismissible;
  ui.banner.hidden = false;
  if (autoHideMs > 0) app.bannerTimer = setTimeout(() => hideBanner(kind), autoHideMs);
}

/** Hide the banner if it shows one of `kinds` (any kind when none are given). */
function hideBanner(...kinds) {
  if (kinds.length > 0 && !kinds.includes(ui.banner.dataset.kind)) return;
  clearTimeout(app.bannerTimer);
  ui.banner.hidden = true;
  ui.banner.dataset.kind = "";
  ui.banner.dataset.stype = "";
  app.bannerAction = null;
}

/** The visible banner as recovery.js sees it, or null. */
function visibleBanner() {
  if (ui.banner.hidden) return null;
  const stype = ui.banner.dataset.stype;
  return { kind: ui.banner.dataset.kind, stype: stype === "" ? null : Number(stype) };
}

ui.bannerAction.addEventListener("click", () => {
  const action = app.bannerAction;
  hideBanner();
  action?.();
});
ui.bannerDismiss.addEventListener("click", () => hideBanner());

function serviceName(stype) {
  if (stype === Stype.TalkRoom) return "talkroom";
  if (stype === Stype.Auth) return "login service";
  return `service ${stype}`;
}

/** Report a failed request; `retry` repeats it. A closed connection is reported elsewhere. */
function requestFailed(err, { what, retry }) {
  if (err instanceof ConnectionClosedError) return; // the close handler shows "reconnecting"
  if (err instanceof ServiceUnavailableError) {
    showBanner("unavailable", `The ${serviceName(err.stype)} is unavailable right now, so we could not ${what}. Try again in a moment.`, { action: retry, stype: err.stype });
  } else if (err instanceof LoginRequiredError) {
    // The gateway no longer counts this connection as logged in: sign in again (which also
    // re-enters the room if the user was in it), but not in a loop.
    if (Date.now() - app.autoLoginAt > 10_000) {
      app.autoLoginAt = Date.now();
      showBanner("error", `You were signed out, so we could not ${what}. Signing in again…`);
      login();
    } else {
      showBanner("error", `The server says this page is not signed in, so we could not ${what}.`, { action: retryLogin });
    }
  } else if (err instanceof RequestTimeoutError) {
    showBanner("timeout", `The server did not answer in time, so we could not ${what}.`, { action: retry });
  } else {
    console.error(err);
    showBanner("error", `Could not ${what}: ${err.message}`, { action: retry });
  }
}

// ------------------------------------------------------------------ connection and login

async function connectAndLogin() {
  clearReconnectTimers();
  if (client.state === "connecting" || client.state === "open") return; // already on it
  setPhase(app.everConnected ? "reconnecting" : "connecting");
  try {
    await client.connect(GATEWAY_URL);
  } catch (err) {
    if (!(err instanceof ConnectionClosedError)) console.error(err);
    scheduleReconnect();
    return;
  }
  app.everConnected = true;
  app.shutdownReason = null;
  await login();
}

async function login() {
  setPhase("logging-in");
  let reply;
  try {
    reply = await client.guestLogin(app.key);
  } catch (err) {
    if (err instanceof ConnectionClosedError) return;
    setPhase("failed");
    requestFailed(err, { what: "sign in", retry: retryLogin });
    return;
  }
  if (reply?.status !== AuthStatus.OK) {
    app.account = null;
    setPhase("failed");
    showBanner("login-failed", loginFailureText(reply?.status), { action: retryLogin });
    return;
  }
  app.account = reply;
  app.retries = 0;
  hideBanner("reconnecting", "shutdown", "unavailable", "timeout", "login-failed", "error");
  setPhase("ready");
  if (app.wantRoom && app.uname) await enterRoom({ rejoin: true });
}

function loginFailureText(status) {
  switch (status) {
    case AuthStatus.ILLEGAL_ACCOUNT: return "This account has been disabled.";
    case AuthStatus.INVALID_PARAMS: return "The server refused this guest key.";
    case AuthStatus.SYSTEM_ERROR: return "The login service had an internal error.";
    default: return `Sign-in failed (code ${String(status)}).`;
  }
}

function retryLogin() {
  if (client.connected) login();
  else connectAndLogin();
}

function clearReconnectTimers() {
  clearTimeout(app.reconnectTimer);
  clearInterval(app.countdownTimer);
  app.reconnectTimer = app.countdownTimer = null;
}

/** Reconnect after 1, 2, 4 … 30 s (±25 % jitter), with a countdown in the banner. */
function scheduleReconnect() {
  if (app.kicked) return;
  clearReconnectTimers();
  const base = Math.min(RECONNECT_MAX_MS, 1000 * 2 ** Math.min(app.retries, 5));
  const delay = base * (0.75 + Math.random() * 0.5);
  app.retries += 1;
  setPhase("reconnecting");
  const due = Date.now() + delay;
  const lead = app.shutdownReason !== null
    ? `The server is restarting${app.shutdownReason ? ` (${app.shutdownReason})` : ""}.`
    : app.everConnected ? "Connection lost." : `Cannot reach the server at ${GATEWAY_URL}.`;
  const tick = () => {
    const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    showBanner("reconnecting", `${lead} Reconnecting in ${seconds} s…`,
      { action: connectAndLogin, actionLabel: "Reconnect now", dismissible: false });
  };
  tick();
  app.countdownTimer = setInterval(tick, 1000);
  app.reconnectTimer = setTimeout(connectAndLogin, delay);
}

function onKicked() {
  if (app.kicked) return;
  app.kicked = true;
  clearReconnectTimers();
  setPhase("kicked");
  showBanner("relogin",
    "This account signed in from another tab or device, so this page was disconnected.",
    { action: takeOver, actionLabel: "Use this page instead", dismissible: false });
}

/** The user chose to continue here after a RELOGIN kick: log in again (kicking the other). */
function takeOver() {
  app.kicked = false;
  app.retries = 0;
  hideBanner();
  if (client.state === "open") client.close(); // the gateway has not closed the old link yet
  connectAndLogin();
}

client.on("relogin", onKicked);

client.on("close", (info) => {
  const wasInRoom = app.room === "in";
  app.room = "out";
  app.members = [];
  app.busy = false;
  if (info.byClient) {
    render();
    return;
  }
  if (info.kicked || app.kicked) {
    if (wasInRoom) systemLine("Disconnected: this account signed in elsewhere.", "disconnected");
    onKicked();
    render();
    return;
  }
  if (wasInRoom) systemLine("Connection lost.", "disconnected");
  scheduleReconnect();
});

client.on("shutdown", ({ reason }) => {
  app.shutdownReason = reason;
  showBanner("shutdown", `The server is shutting down${reason ? `: ${reason}` : ""}. Reconnecting shortly…`,
    { dismissible: false });
});

client.on("unavailable", ({ stype, ctype }) => {
  if (stype === Stype.TalkRoom && ctype === 0 && app.room === "in") {
    // The talkroom's last instance went down, and with it the room: we are out. When the
    // gateway says it is back (the "available" event) we enter again.
    app.room = "out";
    app.members = [];
    systemLine("The talkroom went down.", "service-down");
    render();
    showBanner("unavailable", "The talkroom is down. You will be back in the room as soon as it returns.",
      { action: () => enterRoom({ rejoin: true }), stype });
    return;
  }
  // A pending request's own handler replaces this with a banner that can retry it.
  if (ui.banner.dataset.kind === "unavailable" && !ui.banner.hidden) return;
  showBanner("unavailable", `The ${serviceName(stype)} is unavailable right now.`, { stype });
});

// SERVICE_AVAILABLE: clear a banner about that service, sign in again after a failed login,
// re-enter the room (recovery.js decides).
client.on("available", ({ stype }) => {
  const todo = onServiceAvailable({
    phase: app.phase, room: app.room, wantRoom: app.wantRoom, busy: app.busy, banner: visibleBanner(),
  }, stype);
  if (todo.hideBanner) hideBanner("unavailable");
  if (todo.retryLogin) retryLogin();
  if (todo.rejoin) enterRoom({ rejoin: true });
});

client.on("rateLimited", ({ dropped }) => {
  showBanner("rate-limited",
    `You are sending too fast: ${dropped} message${dropped === 1 ? " was" : "s were"} dropped.`,
    { autoHideMs: 6000 });
});

// ------------------------------------------------------------------------------------ room

function addMember(member) {
  app.members.push(member);
}

function removeMember(uname, usex) {
  // Names are not unique: remove someone else's entry before our own.
  let at = app.members.findIndex((m) => !m.self && m.uname === uname && m.usex === usex);
  if (at < 0) at = app.members.findIndex((m) => m.uname === uname && m.usex === usex);
  if (at >= 0) app.members.splice(at, 1);
}

/**
 * Enter the room and wait until the members already there have been listed.
 *
 * The talkroom replies OK and then pushes one UserArrived per member already in the room.
 * Nothing marks the end of that list, so a second Enter goes out right behind the first:
 * the service answers it (IN_ROOM, which changes nothing) after those pushes, so every
 * UserArrived before its reply lists someone who was already there, and every one after it
 * is a real arrival. Resolves with the status of the first Enter.
 */
async function enterAndList() {
  const first = client.enter(app.uname, app.usex, TALK);
  const barrier = client.enter(app.uname, app.usex, TALK);
  barrier.catch(() => {}); // its outcome matters only as a marker
  const status = await first;
  if (status === TalkroomStatus.OK) await barrier.catch(() => {});
  return status;
}

function entered(note) {
  app.room = "in";
  app.wantRoom = true;
  app.members.unshift({ uname: app.uname, usex: app.usex, self: true });
  systemLine(note, "entered");
  hideBanner("unavailable", "timeout", "error");
}

async function enterRoom({ rejoin = false } = {}) {
  app.room = "entering";
  app.busy = true;
  app.members = [];
  ui.enterError.hidden = true;
  render();
  let status;
  try {
    status = await enterAndList();
    if (status === TalkroomStatus.IN_ROOM) {
      // The room still holds this account (say, from the connection we just lost): leave and
      // enter again, so that we get the current member list.
      await client.exit(TALK);
      app.members = [];
      status = await enterAndList();
    }
  } catch (err) {
    // wantRoom stays as it was: a rejoin that failed is tried again after a reconnect, when
    // the talkroom is back, or from the banner's Retry.
    app.room = "out";
    app.busy = false;
    app.members = [];
    requestFailed(err, { what: "enter the room", retry: () => enterRoom({ rejoin }) });
    render();
    return;
  }
  app.busy = false;
  if (status === TalkroomStatus.OK) {
    entered(rejoin ? `You are back in the room as ${app.uname}.` : `You entered the room as ${app.uname}.`);
    render();
    ui.msgInput.focus();
    return;
  }
  app.room = "out";
  app.wantRoom = false;
  app.members = [];
  render();
  showFormError(status === TalkroomStatus.INVALID_OPT
    ? "The server refused this name or sex. Use 1–32 characters."
    : `Could not enter the room (code ${status}).`);
}

async function exitRoom() {
  const wasIn = app.room === "in";
  app.wantRoom = false;
  app.busy = true;
  render();
  try {
    if (wasIn) await client.exit(TALK);
  } catch (err) {
    // Whatever went wrong, the user wants out; an unavailable talkroom has dropped us anyway.
    if (!(err instanceof ConnectionClosedError)) console.warn("exit failed:", err);
  }
  app.busy = false;
  app.room = "out";
  app.members = [];
  systemLine("You left the room.", "left");
  hideBanner("unavailable", "timeout"); // nothing left to retry
  render();
  ui.enterName.focus();
}

async function sendMessage(text, { retried = false } = {}) {
  let reply;
  try {
    reply = await client.sendMsg(text, TALK);
  } catch (err) {
    restoreDraft(text);
    requestFailed(err, { what: "send your message", retry: () => sendMessage(text) });
    return;
  }
  const status = reply?.["0"];
  if (status === TalkroomStatus.OK) {
    addLine({ kind: "chat", uname: String(reply["1"]), usex: reply["2"], text: String(reply["3"]), own: true });
    return;
  }
  // INVALID_OPT means either "not in the room" (the talkroom restarted and forgot us) or an
  // invalid message (too long). Entering again tells the two apart.
  if (status === TalkroomStatus.INVALID_OPT && !retried && (await quietRejoin())) {
    await sendMessage(text, { retried: true });
    return;
  }
  restoreDraft(text);
  systemLine(`Your message was not sent: the server refused it (code ${String(status)}).`, "error");
}

/** Enter again without leaving; true if we had been dropped from the room and are back. */
async function quietRejoin() {
  const before = app.members;
  app.members = [];
  app.room = "entering";
  let status;
  try {
    status = await enterAndList();
  } catch {
    status = null;
  }
  if (status === TalkroomStatus.OK) {
    entered(`The talkroom had restarted; you are back in the room as ${app.uname}.`);
    render();
    return true;
  }
  if (client.connected) {
    // Still in the room: keep the list we had, plus anyone who arrived meanwhile.
    app.room = "in";
    app.members = before.concat(app.members);
  }
  render();
  return false;
}

function restoreDraft(text) {
  if (ui.msgInput.value === "") ui.msgInput.value = text;
}

function showFormError(text) {
  ui.enterError.textContent = text;
  ui.enterError.hidden = false;
}

client.on("userArrived", ({ uname, usex }) => {
  if (app.room === "out" || typeof uname !== "string") return;
  addMember({ uname, usex, self: false });
  // While entering, arrivals list who is already here (see enterAndList).
  if (app.room === "in") systemLine(`${uname} joined.`, "arrived");
  render();
});

client.on("userExit", ({ uname, usex }) => {
  if (app.room === "out" || typeof uname !== "string") return;
  removeMember(uname, usex);
  systemLine(`${uname} left.`, "departed");
  render();
});

client.on("userMsg", ({ uname, usex, msg }) => {
  if (app.room === "out") return;
  addLine({ kind: "chat", uname: String(uname), usex, text: String(msg), own: false });
});

// ---------------------------------------------------------------------------------- inputs

/** 1–32 characters (code points, as the server counts them) after trimming. */
function validName(name) {
  const length = [...name].length;
  return length >= 1 && length <= 32;
}

ui.enterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (ui.enterBtn.disabled) return;
  const name = ui.enterName.value.trim();
  if (!validName(name)) {
    showFormError("Choose a name of 1 to 32 characters.");
    ui.enterName.focus();
    return;
  }
  app.uname = name;
  app.usex = ui.enterSex.value === "1" ? 1 : 0;
  storage.set(NAME_STORAGE, app.uname);
  storage.set(SEX_STORAGE, String(app.usex));
  enterRoom();
});

ui.enterName.addEventListener("input", () => {
  ui.enterError.hidden = true;
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.msgInput.value;
  if (ui.sendBtn.disabled || text.trim() === "") return;
  ui.msgInput.value = "";
  sendMessage(text);
});

ui.exitBtn.addEventListener("click", () => {
  if (!ui.exitBtn.disabled) exitRoom();
});

// Back online: do not wait for the backoff timer.
window.addEventListener("online", () => {
  if (app.reconnectTimer) connectAndLogin();
});

// Leave cleanly so the gateway does not wait for a timeout; a page restored from the
// back/forward cache connects again.
window.addEventListener("pagehide", () => client.close());
window.addEventListener("pageshow", (event) => {
  if (event.persisted && !app.kicked) connectAndLogin();
});

// ------------------------------------------------------------------------------------ start

ui.gatewayUrl.textContent = GATEWAY_URL;
ui.enterName.value = storage.get(NAME_STORAGE) ?? "";
ui.enterSex.value = storage.get(SEX_STORAGE) === "1" ? "1" : "0";
render();
connectAndLogin();
