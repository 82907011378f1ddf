// The waiting room: join (or get one's place back with the token this browser kept), then follow the
// place live over server-sent events, falling back to polling; move on to the seats when admitted.

import { ApiError, api } from "./api.js";
import { fill } from "./format.js";
import { anonymousId, keepAccess, keepQueueToken, queueToken } from "./line.js";
import { pageData } from "./page-data.js";

const data = pageData();
const eventId = data.eventId;
const text = data.messages;
const POLL_SECONDS = 3; // when an answer gives no pace of its own (an error, an older server)
const WATCH_SECONDS = 5; // how often, at most, the event itself is read: sold out, paused, cancelled

const position = document.querySelector('[data-testid="queue-position"]');
const ahead = document.querySelector('[data-testid="queue-ahead"]');
const eta = document.querySelector('[data-testid="queue-eta"]');
const progress = document.getElementById("queue-progress");
const message = document.getElementById("queue-message");
const actions = document.getElementById("queue-actions");
const figures = document.getElementById("queue-figures");

let firstPosition = null;
let stream = null;
let pollTimer = null;
let watchTimer = null;
let finished = false;
let lastStatus = null;
let eventNote = null; // what the event itself says now (sales paused, sold out for now), if anything

function say(words) {
  if (message.textContent !== words) message.textContent = words;
  // A line that does not move for a reason the fan should know about stands out.
  message.classList.toggle("queue-note", [text.linePaused, text.paused, text.soldOutForNow].includes(words));
}

/** The line's own words: paused by the organizer, before the sale, or waiting; the event's come first. */
function lineWords() {
  if (eventNote) return eventNote;
  if (lastStatus && lastStatus.paused) return text.linePaused;
  return lastStatus && lastStatus.preQueue ? text.preQueue : text.waiting;
}

function etaText(seconds) {
  if (seconds === null || seconds === undefined) return text.etaUnknown;
  if (seconds < 60) return text.etaSoon;
  return fill(text.etaMinutes, { minutes: Math.ceil(seconds / 60) });
}

/**
 * The line's pace for this place (the answer's checkAgainSeconds): soon near the front, up to a
 * minute far back. A stadium's line is 200,000 pages: on one clock for all they would cost more
 * than the sale itself.
 */
const pace = (status) => (status && status.checkAgainSeconds) || POLL_SECONDS;

function stopFollowing() {
  if (stream) stream.close();
  stream = null;
  clearTimeout(pollTimer);
}

function finish(words, { rejoin = false, admitted = false } = {}) {
  finished = true;
  stopFollowing();
  clearTimeout(watchTimer);
  say(words);
  if (!admitted) {
    // A place in a line that no longer leads anywhere: no figures, only where to go next.
    figures.hidden = true;
    document.getElementById("queue-rejoin").hidden = !rejoin;
    actions.hidden = false;
  }
}

function show(status) {
  lastStatus = status;
  if (status.status === "admitted" && status.accessToken) {
    keepAccess(eventId, status.accessToken, status.accessExpiresAt);
    progress.value = 100;
    progress.textContent = "100%";
    finish(text.admitted, { admitted: true });
    window.location.assign(data.buyUrl);
    return;
  }
  if (status.status === "expired") {
    keepQueueToken(eventId, null);
    finish(text.expired, { rejoin: true });
    return;
  }
  position.textContent = status.position ?? "–";
  ahead.textContent = status.ahead ?? "–";
  // Paused, the API gives no estimate: say why instead of "calculating".
  eta.textContent = status.paused ? text.etaPaused : etaText(status.etaSeconds);
  figures.dataset.paused = String(Boolean(status.paused));
  if (typeof status.position === "number") {
    if (firstPosition === null || status.position > firstPosition) firstPosition = status.position;
    const done = Math.round((100 * (firstPosition - status.position)) / firstPosition);
    progress.value = done;
    progress.textContent = `${done}%`;
  }
  if (!finished) say(lineWords());
}

function retryLater(seconds, words, again) {
  say(words);
  pollTimer = setTimeout(again, seconds * 1000);
}

async function join() {
  const token = queueToken(eventId);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const { body } = await api(`/api/queue/${eventId}/join`, {
      method: "POST",
      headers,
      body: { userInfo: { anonymousId: anonymousId() } },
    });
    keepQueueToken(eventId, body.queueToken);
    show(body);
    if (!finished) follow();
  } catch (error) {
    if (!(error instanceof ApiError)) return retryLater(5, text.offline, join);
    if (error.code === "invalid_token" && token) {
      // A token this server no longer accepts (another event's, or keys rotated): a new place.
      keepQueueToken(eventId, null);
      return join();
    }
    if (error.code === "queue_full") return retryLater(error.retryAfter || 10, text.full, join);
    if (error.code === "event_cancelled" || error.status === 404) return finish(text.cancelled);
    return retryLater(error.retryAfter || 5, text.error, join);
  }
}

function follow() {
  if (!("EventSource" in window)) return poll();
  const token = encodeURIComponent(queueToken(eventId));
  stream = new EventSource(`/api/queue/${eventId}/stream?token=${token}`);
  stream.addEventListener("status", (event) => show(JSON.parse(event.data)));
  stream.onerror = () => {
    // The stream ends by itself once admitted; otherwise a proxy or the network cut it: poll instead.
    if (stream) stream.close();
    stream = null;
    if (!finished) poll();
  };
}

async function poll() {
  clearTimeout(pollTimer);
  if (finished) return;
  try {
    const { body } = await api(`/api/queue/${eventId}/status`, {
      headers: { Authorization: `Bearer ${queueToken(eventId)}` },
    });
    show(body);
    if (!finished) pollTimer = setTimeout(poll, pace(body) * 1000);
  } catch (error) {
    if (error instanceof ApiError && (error.code === "not_in_queue" || error.code === "invalid_token")) {
      return join();
    }
    const wait = (error instanceof ApiError && error.retryAfter) || POLL_SECONDS;
    retryLater(wait, error instanceof ApiError ? text.error : text.offline, poll);
  }
}

/** The line says nothing of the event itself: read it too, and tell at once when it sold out or closed. */
async function watchEvent() {
  if (finished) return;
  // Far back in line, the event is read as seldom as the place (a sell-out there is news a minute late).
  watchTimer = setTimeout(watchEvent, Math.max(WATCH_SECONDS, pace(lastStatus)) * 1000);
  try {
    const { body } = await api(`/api/events/${eventId}`);
    if (body.status === "cancelled") return finish(text.cancelled);
    const gone = body.sections.length && body.sections.every((section) => section.available === 0);
    // Sold out for good only when nothing is held either: a hold that runs out, or an order that is
    // not paid, puts its places back on sale, so the line is worth keeping until then.
    if (gone && body.sections.every((section) => section.held === 0)) return finish(text.soldOut);
    eventNote = body.status === "paused" ? text.paused : gone ? text.soldOutForNow : null;
    if (lastStatus && !finished) say(lineWords());
    else if (eventNote) say(eventNote);
  } catch {
    // The next look will tell; the line itself goes on.
  }
}

join();
watchEvent();
