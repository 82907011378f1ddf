// What the browser keeps of a fan's place in line, per event, in localStorage: every tab of this
// browser shares it, and a reload finds it. The queue token is the proof of the place (a join that
// sends it back gets the same place); the access token, once admitted, is what holds seats.

const PREFIX = "ticketera.";

function read(key) {
  try {
    return JSON.parse(localStorage.getItem(PREFIX + key) || "null");
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Private mode with storage off: the place lasts as long as this tab.
  }
}

/** A random id of this browser, sent as userInfo: a label for support, never proof of anything. */
export function anonymousId() {
  let id = read("anonymous-id");
  if (!id) {
    id = crypto.randomUUID();
    write("anonymous-id", id);
  }
  return id;
}

export const queueToken = (eventId) => read(`queue.${eventId}`);
export const keepQueueToken = (eventId, token) => write(`queue.${eventId}`, token);

export function access(eventId) {
  const stored = read(`access.${eventId}`);
  if (!stored || (stored.expiresAt && Date.parse(stored.expiresAt) <= Date.now())) return null;
  return stored;
}
export const keepAccess = (eventId, token, expiresAt) =>
  write(`access.${eventId}`, token ? { token, expiresAt } : null);
