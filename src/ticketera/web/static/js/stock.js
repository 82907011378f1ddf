// What is left of an event, read again while a page is open: the same words the server wrote in
// the page, and the same state (ticketera.web.buyer.sale_state), so a page never contradicts itself.

import { api } from "./api.js";
import { fill } from "./format.js";

// Modest: nginx micro-caches the detail for a second, and a place that comes back stays a while.
export const STOCK_SECONDS = 10;

/** "12" / "12 left"; sold out for now while places are only held (they may come back); sold out. */
export function leftText(section, text) {
  if (section.available > 0) return fill(text.left, { count: section.available });
  return section.held > 0 ? text.soldOutForNow : text.soldOut;
}

/** The event's state as the server names it, from its public detail, at `now` (ms, server clock). */
export function saleState(event, now) {
  if (event.status === "cancelled") return "cancelled";
  if (event.status === "paused") return "paused";
  if (event.available === 0) {
    return event.sections.some((section) => section.held > 0) ? "sold_out_for_now" : "sold_out";
  }
  if (event.onSaleAt && now < Date.parse(event.onSaleAt)) return "not_yet";
  return "on_sale";
}

/** Reads the event every STOCK_SECONDS (not while the tab is hidden) and hands it to `update`. */
export function watchStock(eventId, update) {
  let timer = null;
  const read = async () => {
    clearTimeout(timer);
    try {
      const { body, date } = await api(`/api/events/${eventId}`);
      update(body, date);
    } catch {
      // Offline or busy: the figures on screen stay until the next read.
    }
    timer = setTimeout(read, STOCK_SECONDS * 1000);
  };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(timer);
    else read();
  });
  timer = setTimeout(read, STOCK_SECONDS * 1000);
  return read;
}

/** Writes each section's words into the elements marked data-testid="section-left". */
export function showLeft(event, text) {
  for (const section of event.sections) {
    const cell = document.querySelector(`[data-testid="section-left"][data-section-id="${section.id}"]`);
    const words = leftText(section, text);
    if (cell && cell.textContent !== words) cell.textContent = words;
  }
}
