// Money and durations as the server writes them (ticketera.web.i18n): the page hands over the
// symbols in its page data, so a total computed here reads like a price written by the server.

/** "$ 15.000" / "ARS 15,000"; cents only when there are some. */
export function formatMoney(amount, money) {
  const cents = Math.round(Number(amount) * 100);
  const whole = Math.trunc(Math.abs(cents) / 100).toString();
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, money.group);
  const rest = Math.abs(cents) % 100;
  const sign = cents < 0 ? "-" : "";
  const decimals = rest ? money.decimal + String(rest).padStart(2, "0") : "";
  return `${sign}${money.symbol} ${grouped}${decimals}`;
}

/** "4:05" for a countdown; "1:02:03" past an hour; "2 d 03:04:05" past a day. */
export function formatClock(totalSeconds) {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  const mm = String(m).padStart(2, "0");
  if (d) return `${d} d ${String(h).padStart(2, "0")}:${mm}:${s}`;
  return h ? `${h}:${mm}:${s}` : `${m}:${s}`;
}

/** Fills "%(name)s" placeholders of a translated message (the catalogs' Python-style format). */
export function fill(message, values) {
  return message.replace(/%\((\w+)\)[sd]/g, (_, name) => String(values[name] ?? ""));
}
