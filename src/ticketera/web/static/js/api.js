// The JSON API, from the browser: the same calls any client makes (docs at /docs).

export class ApiError extends Error {
  constructor(status, body, headers) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || "http_error";
    this.body = body || {};
    this.retryAfter = Number(headers.get("Retry-After")) || null;
  }
}

/** fetch() a JSON call; answers { body, status, date }, throws ApiError for 4xx/5xx and TypeError offline. */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed, response.headers);
  // The server's clock, so a countdown does not depend on the phone's being right.
  const date = Date.parse(response.headers.get("Date") || "") || Date.now();
  return { body: parsed, status: response.status, date };
}
