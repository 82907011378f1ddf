// The door's service worker (served as /door/sw.js with this build's version and file list filled in;
// scope /door): after one visit online, the page and its files open with no network at all, so a
// phone that loses signal, or is restarted, at the door keeps scanning. The page itself goes to the
// network first (it carries the event list and the session's CSRF token) and falls back to the copy
// kept from the last good visit; the static files, whose addresses carry the build's hash, come
// from the cache. Nothing else is touched: scans, the key and the lists go to the network as before.

const VERSION = __VERSION__;
const FILES = __FILES__;
const CACHE = `ticketera-door-${VERSION}`;
const PAGE = "/door";

/** Keeps the scanning page if that is what the server answered (never the login form). */
async function keepPage(cache, response) {
  if (response.ok && response.headers.get("X-Door-Page") === "scan") await cache.put(PAGE, response);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(FILES);
      // The visit that installed this worker was not seen by it: the page is fetched once more
      // (on the session's cookie), so that this one visit is enough to open offline.
      try {
        await keepPage(cache, await fetch(PAGE, { credentials: "same-origin" }));
      } catch {
        // Kept at the next visit.
      }
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      // An older build's files are of no use to this one's page.
      for (const name of await caches.keys()) {
        if (name.startsWith("ticketera-door-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

async function page(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    await keepPage(cache, response.clone());
    return response;
  } catch (error) {
    const kept = await cache.match(PAGE);
    if (kept) return kept;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname === PAGE) {
    event.respondWith(page(request));
  } else if (FILES.includes(url.pathname)) {
    event.respondWith(caches.match(request).then((kept) => kept || fetch(request)));
  }
});
