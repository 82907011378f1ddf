// What the door keeps on the phone, in localStorage: writes are synchronous, so a scan is stored
// before its green answer is shown, and a reload or a crashed tab loses nothing. Nothing here is a
// credential (the session is an HttpOnly cookie): public keys, the codes scanned and when.

const PREFIX = "ticketera.door.";

function read(name, fallback) {
  try {
    const text = localStorage.getItem(PREFIX + name);
    return text === null ? fallback : JSON.parse(text);
  } catch {
    return fallback;
  }
}

function write(name, value) {
  localStorage.setItem(PREFIX + name, JSON.stringify(value));
}

const NOTHING_KNOWN = { asOf: null, void: {}, used: {} };

export const store = {
  chosenEvent: () => read("event", ""),
  chooseEvent: (eventId) => write("event", String(eventId)),
  doorName: () => read("door", ""),
  nameDoor: (name) => write("door", name),
  key: (eventId) => read(`key.${eventId}`, null),
  keepKey: (eventId, key) => write(`key.${eventId}`, key),
  count: (eventId) => read(`count.${eventId}`, 0),
  addCount: (eventId) => write(`count.${eventId}`, read(`count.${eventId}`, 0) + 1),
  /** When this phone let `code` in, or null: a second scan of it offline is refused here. */
  seen: (eventId, code) => read(`seen.${eventId}`, {})[code] || null,
  remember(eventId, code, at) {
    const seen = read(`seen.${eventId}`, {});
    seen[code] = at;
    write(`seen.${eventId}`, seen);
  },
  /** What the server said of the event's tickets: void serials, and those let in (when, which door). */
  known: (eventId) => read(`known.${eventId}`, NOTHING_KNOWN),
  /** Adds an answer of /door/events/{id}/known (everything, or what changed since the last one). */
  learn(eventId, answer) {
    const known = read(`known.${eventId}`, NOTHING_KNOWN);
    for (const serial of answer.void) known.void[serial] = true;
    for (const entry of answer.checkedIn) known.used[entry.serial] = { at: entry.at, door: entry.door };
    known.asOf = answer.asOf;
    try {
      write(`known.${eventId}`, known);
    } catch {
      // Storage full: the signature and this phone's own scans still answer offline.
    }
  },
  /**
   * Logging out: the lists learnt from the server go (which tickets were refunded or let in is not
   * for whoever holds the phone next), and so do the codes this phone let in, unless scans still
   * wait to be sent: then those codes are what refuses a second entry here until the sync. The
   * scans waiting stay: they are the only record of those entries, sent at the next login.
   */
  forget() {
    const keepSeen = read("pending", []).length > 0;
    const names = [];
    for (let index = 0; index < localStorage.length; index += 1) names.push(localStorage.key(index));
    for (const name of names) {
      if (name.startsWith(`${PREFIX}known.`) || (!keepSeen && name.startsWith(`${PREFIX}seen.`))) {
        localStorage.removeItem(name);
      }
    }
  },
  pending: () => read("pending", []),
  addPending: (scan) => write("pending", [...read("pending", []), scan]),
  /** Drops the scans the server has answered (by code and moment: the same code may be here twice). */
  dropPending(sent) {
    const done = new Set(sent.map((scan) => `${scan.code}@${scan.scannedAt}`));
    write("pending", read("pending", []).filter((scan) => !done.has(`${scan.code}@${scan.scannedAt}`)));
  },
};
