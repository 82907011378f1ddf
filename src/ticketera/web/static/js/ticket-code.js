// Ticket codes read and verified in the browser, exactly as ticketera.tickets.codes writes them:
// base64url without padding of version:u8 | serial:u64 | event id:u64 | seat id:u64 (big-endian),
// then the 64-byte Ed25519 signature of those 25 bytes. 89 bytes, 119 characters.

const CODE_VERSION = 1;
const PAYLOAD_BYTES = 25;
const SIGNATURE_BYTES = 64;
const CODE_BYTES = PAYLOAD_BYTES + SIGNATURE_BYTES;
export const CODE_LENGTH = 119;

/** Bytes of unpadded base64url, or null when the text is not that. */
export function fromBase64Url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  try {
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** What a code claims (not yet verified), or null when it is not shaped like a code. */
export function readCode(code) {
  if (code.length !== CODE_LENGTH) return null;
  const raw = fromBase64Url(code);
  if (!raw || raw.length !== CODE_BYTES) return null;
  const view = new DataView(raw.buffer);
  if (view.getUint8(0) !== CODE_VERSION) return null;
  return {
    serial: view.getBigUint64(1),
    eventId: view.getBigUint64(9),
    seatId: view.getBigUint64(17),
    payload: raw.slice(0, PAYLOAD_BYTES),
    signature: raw.slice(PAYLOAD_BYTES),
  };
}

const imported = new Map();

async function publicKey(keyText) {
  let key = imported.get(keyText);
  if (!key) {
    const raw = fromBase64Url(keyText);
    if (!raw || raw.length !== 32) throw new Error("not an Ed25519 public key");
    key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    imported.set(keyText, key);
  }
  return key;
}

/** Whether the event's public key (base64url of its 32 raw bytes) signed the claim's payload. */
export async function verifyClaim(claim, keyText) {
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, await publicKey(keyText), claim.signature, claim.payload);
  } catch {
    // A browser without Ed25519 in WebCrypto cannot vouch for any code: refused, never let in.
    return false;
  }
}
