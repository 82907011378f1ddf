// The door: scan a code (a keyboard-wedge scanner types it and Enter into the field, or the camera
// reads it where the browser has BarcodeDetector), answer green or red over the whole screen, and
// go on checking offline with the event's public key, syncing the scans kept here when back online.
// The server's calls go to /door/scan and /door/batch on the page's session cookie (see
// ticketera.web.door for why the script never holds the staff key).

import { store } from "./door-store.js";
import { fill } from "./format.js";
import { pageData } from "./page-data.js";
import { readCode, verifyClaim } from "./ticket-code.js";

const data = pageData();
const text = data.messages;
// A retry while scans wait and the browser thinks it is online (a fetch failed behind a captive portal).
const SYNC_RETRY_MS = 15000;
const BATCH_SIZE = 1000;
// How often, online, the event's void and already-used tickets are read again for offline use; the
// next read asks only for what changed since the last one, less a margin for scans being written.
const KNOWN_REFRESH_MS = 30000;
const KNOWN_MARGIN_SECONDS = 60;
// Logging out waits this long at most for the scans to be sent: whatever is unanswered by then stays
// on the phone (a second upload of a scan the server did apply is recognised as the same scan).
const LOGOUT_SYNC_MS = 10000;
// The caches js/door-sw.js keeps the page and its files in.
const WORKER_CACHE_PREFIX = "ticketera-door-";

const eventChoice = document.getElementById("door-event");
const keyState = document.getElementById("door-key-state");
const doorName = document.getElementById("door-name");
const form = document.getElementById("door-scan");
const codeField = document.getElementById("door-code");
const countShown = document.getElementById("door-count");
const pendingShown = document.getElementById("door-pending");
const message = document.getElementById("door-message");
const banner = document.getElementById("door-offline");
const answer = document.getElementById("door-result");
const conflicts = document.getElementById("door-conflicts");
const conflictList = conflicts.querySelector("ul");

const clock = new Intl.DateTimeFormat(data.language === "es" ? "es-AR" : "en-GB", {
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZone: data.zone,
});

let offline = !navigator.onLine;
// The sync under way, if any: logging out waits for it rather than starting a second one.
let syncing = null;
let loggingOut = false;

const eventId = () => eventChoice.value;
const deviceId = () => doorName.value.trim() || "door";
const timeOf = (iso) => clock.format(new Date(iso));

function say(words) {
  message.textContent = words;
}

function showFigures() {
  const count = eventId() ? store.count(eventId()) : 0;
  const pending = store.pending().length;
  countShown.textContent = count;
  pendingShown.textContent = pending;
  document.getElementById("door-result-figures").textContent = fill(text.figures, { count, pending });
}

function setOffline(isOffline) {
  offline = isOffline;
  banner.hidden = !isOffline;
  banner.textContent = isOffline ? text.offline : "";
}

// -- the answer -------------------------------------------------------------------------------

function reasonOf(body, claim) {
  switch (body.result) {
    case "ok":
      return body.offline ? text.okOffline : "";
    case "already_checked_in":
      if (body.here) return fill(text.alreadyHere, { time: timeOf(body.at) });
      if (!body.at) return fill(text.alreadyNoDoor, { time: "–" });
      return body.device
        ? fill(text.already, { time: timeOf(body.at), door: body.device })
        : fill(text.alreadyNoDoor, { time: timeOf(body.at) });
    case "void":
      return text.void;
    default:
      if (body.words) return body.words;
      if (claim && String(claim.eventId) !== eventId()) return text.otherEvent;
      return text.invalid;
  }
}

function detailOf(body) {
  const ticket = body.ticket;
  if (!ticket) return "";
  return ticket.seat ? fill(text.seat, { section: ticket.section, seat: ticket.seat }) : ticket.section;
}

function show(body, claim) {
  const ok = body.result === "ok";
  answer.dataset.result = body.result;
  answer.classList.toggle("door-ok", ok);
  answer.classList.toggle("door-refused", !ok);
  answer.hidden = false;
  document.getElementById("door-result-offline").hidden = !offline;
  document.getElementById("door-result-title").textContent = ok ? text.okTitle : text.refuseTitle;
  document.getElementById("door-result-reason").textContent = reasonOf(body, claim);
  document.getElementById("door-result-detail").textContent = ok ? detailOf(body) : "";
  if (ok) store.addCount(eventId());
  showFigures();
  codeField.value = "";
  codeField.focus();
}

function dismiss() {
  answer.hidden = true;
  codeField.focus();
}

// -- checking a code --------------------------------------------------------------------------

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": data.csrf },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { status: response.status, body: parsed };
}

async function checkOffline(code, claim, { networkDown = true } = {}) {
  if (networkDown) setOffline(true);
  if (!claim) return show({ result: "invalid" }, claim);
  if (String(claim.eventId) !== eventId()) return show({ result: "invalid" }, claim);
  const key = store.key(eventId());
  if (!key) return show({ result: "invalid", words: text.noKey }, claim);
  if (!(await verifyClaim(claim, key))) return show({ result: "invalid" }, claim);
  // What the server said before the network went: refunded, or let in at another door.
  const known = store.known(eventId());
  const serial = String(claim.serial);
  if (known.void[serial]) return show({ result: "void" }, claim);
  const before = store.seen(eventId(), code);
  if (before) return show({ result: "already_checked_in", at: before, here: true }, claim);
  const used = known.used[serial];
  if (used) return show({ result: "already_checked_in", at: used.at, device: used.door }, claim);
  const scannedAt = new Date().toISOString();
  // Kept before the green is shown: whatever happens to the tab next, the entry is on record.
  store.remember(eventId(), code, scannedAt);
  store.addPending({ eventId: eventId(), code, scannedAt, deviceId: deviceId() });
  return show({ result: "ok", offline: true }, claim);
}

async function check(raw) {
  const code = raw.trim();
  if (!code) return dismiss();
  if (!eventId()) {
    say(text.chooseEvent);
    eventChoice.focus();
    return;
  }
  const claim = readCode(code);
  if (!navigator.onLine) return checkOffline(code, claim);
  let answered;
  try {
    answered = await post(data.scanUrl, { code, eventId: Number(eventId()), deviceId: deviceId() });
  } catch {
    return checkOffline(code, claim);
  }
  const body = answered.body;
  if (body && typeof body.result === "string") {
    setOffline(false);
    if (body.result === "ok") store.remember(eventId(), code, new Date().toISOString());
    show(body, claim);
    sync();
    return;
  }
  if (answered.status === 401 || answered.status === 403) {
    // The door does not stop because the session ended: the code is checked here and kept.
    say(text.sessionEnded);
    return checkOffline(code, claim, { networkDown: false });
  }
  if (answered.status === 422) return show({ result: "invalid" }, claim);
  // A server in trouble is no reason to stop the line either.
  return checkOffline(code, claim);
}

// -- syncing what was scanned offline ---------------------------------------------------------

function showConflicts(sent, answered) {
  for (const conflict of answered.conflicts) {
    const scan = sent[conflict.index];
    const item = document.createElement("li");
    item.textContent = fill(text.conflict, {
      code: scan.code.slice(-6),
      time: timeOf(scan.scannedAt),
      reason: reasonOf(conflict, readCode(scan.code)),
    });
    conflictList.prepend(item);
  }
  if (answered.conflicts.length) {
    conflicts.hidden = false;
    // Told at once, not under the last answer: someone inside may have to be found.
    answer.hidden = true;
  }
}

function sync() {
  if (!syncing) syncing = sendPending().finally(() => (syncing = null));
  return syncing;
}

async function sendPending() {
  if (!navigator.onLine) return;
  const waiting = store.pending();
  if (!waiting.length) return;
  say(text.syncing);
  try {
    const byEvent = new Map();
    // By event (a batch names one) and at most BATCH_SIZE at a time (the API takes up to 5000).
    for (const scan of waiting) {
      const key = scan.eventId;
      const batches = byEvent.get(key) || [[]];
      if (batches[batches.length - 1].length >= BATCH_SIZE) batches.push([]);
      batches[batches.length - 1].push(scan);
      byEvent.set(key, batches);
    }
    let sentCount = 0;
    for (const [event, scans] of [...byEvent].flatMap(([key, batches]) => batches.map((b) => [key, b]))) {
      const answered = await post(data.batchUrl, {
        eventId: Number(event),
        scans: scans.map(({ code, scannedAt, deviceId: device }) => ({ code, scannedAt, deviceId: device })),
      });
      if (answered.status === 401 || answered.status === 403) {
        say(text.sessionEnded);
        return;
      }
      if (answered.status !== 200) throw new Error(`HTTP ${answered.status}`);
      store.dropPending(scans);
      showConflicts(scans, answered.body);
      sentCount += scans.length;
    }
    setOffline(false);
    say(fill(text.synced, { count: sentCount }));
  } catch {
    setOffline(!navigator.onLine);
    say(text.failed);
  } finally {
    showFigures();
  }
}

// -- the event and its key --------------------------------------------------------------------

async function loadKey() {
  const event = eventId();
  keyState.textContent = "";
  if (!event) return;
  try {
    const response = await fetch(data.keyUrl.replace("{id}", event), { headers: { Accept: "application/json" } });
    if (response.ok) {
      store.keepKey(event, (await response.json()).publicKey);
    } else if (response.status === 404 && !store.key(event)) {
      keyState.textContent = text.noKey;
      return;
    }
  } catch {
    // Offline already: the key kept on an earlier visit, if any, is the one to use.
  }
  keyState.textContent = store.key(event) ? text.keyKept : text.noKey;
}

// -- what the other doors and the refunds said, for offline ------------------------------------

function showKnown() {
  const element = document.getElementById("door-known");
  const known = eventId() ? store.known(eventId()) : null;
  element.textContent =
    known && known.asOf
      ? fill(text.known, {
          void: Object.keys(known.void).length,
          used: Object.keys(known.used).length,
          time: timeOf(known.asOf),
        })
      : "";
}

async function refreshKnown() {
  const event = eventId();
  showKnown(); // what was learnt before, also offline
  if (!event || !navigator.onLine) return;
  const asOf = store.known(event).asOf;
  const query = asOf
    ? `?since=${encodeURIComponent(new Date(Date.parse(asOf) - KNOWN_MARGIN_SECONDS * 1000).toISOString())}`
    : "";
  try {
    const response = await fetch(data.knownUrl.replace("{id}", event) + query, {
      headers: { Accept: "application/json", "X-CSRF-Token": data.csrf },
      credentials: "same-origin",
    });
    // Not once logging out has begun: what is learnt now would outlive the session.
    if (response.ok && event === eventId() && !loggingOut) store.learn(event, await response.json());
  } catch {
    // Offline: what was learnt before is what answers.
  }
  showKnown();
}

// -- logging out ------------------------------------------------------------------------------

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends what was scanned offline, then leaves on the phone nothing of the session but that. */
async function logOut(logoutForm) {
  // A scan being answered finishes first, then its sync, then one more for anything it missed.
  const sent = line.then(() => sync()).then(() => sync());
  // Unsendable scans (no network, a server in trouble) are kept, not dropped: they are the only
  // record that those tickets were used, and the next login sends them; dropping them would let
  // the same tickets in again at the other doors.
  await Promise.race([sent.catch(() => {}), pause(LOGOUT_SYNC_MS)]);
  store.forget();
  try {
    // The worker first, so that it cannot refill what is deleted next; the next login registers it
    // again, and so makes the page open offline again.
    if ("serviceWorker" in navigator) {
      for (const registration of await navigator.serviceWorker.getRegistrations()) {
        if (new URL(registration.scope).pathname === data.workerScope) await registration.unregister();
      }
    }
    if ("caches" in window) {
      for (const name of await caches.keys()) {
        if (name.startsWith(WORKER_CACHE_PREFIX)) await caches.delete(name);
      }
    }
  } catch {
    // A browser that refuses: the copy is only ever the scanning page of a session that is ending.
  }
  logoutForm.submit(); // does not fire "submit" again
}

// -- the camera, where the browser can read QR codes ------------------------------------------

async function setUpCamera() {
  if (!("BarcodeDetector" in window)) return;
  let formats = [];
  try {
    formats = await window.BarcodeDetector.getSupportedFormats();
  } catch {
    return;
  }
  if (!formats.includes("qr_code") || !navigator.mediaDevices) return;
  const box = document.getElementById("door-camera");
  const toggle = document.getElementById("door-camera-toggle");
  const video = document.getElementById("door-video");
  const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  let stream = null;
  let lastCode = null;
  toggle.textContent = text.cameraStart;
  box.hidden = false;

  async function look() {
    if (!stream) return;
    try {
      const found = await detector.detect(video);
      const code = found.length ? found[0].rawValue : null;
      // One answer per ticket held up to the camera, not one per frame.
      if (code && code !== lastCode && answer.hidden) {
        lastCode = code;
        await enqueue(code);
      }
    } catch {
      // A frame that could not be read; the next one may.
    }
    if (stream) requestAnimationFrame(look);
  }

  answer.addEventListener("click", () => (lastCode = null));
  toggle.addEventListener("click", async () => {
    if (stream) {
      stream.getTracks().forEach((track) => track.stop());
      stream = null;
      video.hidden = true;
      toggle.textContent = text.cameraStart;
      codeField.focus();
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch {
      say(text.cameraDenied);
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    toggle.textContent = text.cameraStop;
    look();
  });
}

// -- wiring -----------------------------------------------------------------------------------

// One scan at a time, in the order they were made: a fast scanner never sees answers swap places.
let line = Promise.resolve();
function enqueue(code) {
  line = line.then(() => check(code)).catch(() => say(text.failed));
  return line;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = codeField.value;
  codeField.value = "";
  enqueue(code);
});
// The next scan starts with a keystroke in the field: the answer gets out of the way.
codeField.addEventListener("keydown", (event) => {
  if (!answer.hidden && event.key !== "Enter") answer.hidden = true;
});
answer.addEventListener("click", dismiss);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !answer.hidden) dismiss();
});
eventChoice.addEventListener("change", () => {
  store.chooseEvent(eventId());
  showFigures();
  loadKey();
  refreshKnown();
  codeField.focus();
});
doorName.addEventListener("change", () => store.nameDoor(doorName.value.trim()));
document.getElementById("door-logout").addEventListener("submit", (event) => {
  event.preventDefault();
  if (loggingOut) return; // a second tap while the first one's scans are being sent
  loggingOut = true;
  logOut(event.target);
});
window.addEventListener("online", () => {
  setOffline(false);
  sync();
  refreshKnown();
});
window.addEventListener("offline", () => setOffline(true));
setInterval(() => {
  if (store.pending().length) sync();
}, SYNC_RETRY_MS);
setInterval(refreshKnown, KNOWN_REFRESH_MS);

// What was chosen or typed before this script ran (a slow phone shows the form first) is kept as
// if chosen now: the listeners above were not there to hear it.
if (doorName.value.trim()) store.nameDoor(doorName.value.trim());
if (!store.doorName()) store.nameDoor(`door-${Math.random().toString(36).slice(2, 6)}`);
doorName.value = store.doorName();
const chosen = store.chosenEvent();
if (eventId()) store.chooseEvent(eventId());
else if (chosen && [...eventChoice.options].some((option) => option.value === chosen)) eventChoice.value = chosen;
setOffline(offline);
showFigures();
loadKey();
refreshKnown();
sync();
setUpCamera();
codeField.focus();
// Opens offline after this visit (js/door-sw.js); a browser without service workers simply needs
// the network to open the page, and still scans offline once it is open.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register(data.workerUrl, { scope: data.workerScope }).catch(() => {});
}
