// Choosing tickets: reserved sections as SVG seat maps (mouse, touch, keyboard) with live
// availability, general admission as a quantity; then the hold with its countdown, the buyer's
// details, and on to MercadoPago's checkout.

import { ApiError, api } from "./api.js";
import { countdown } from "./countdown.js";
import { fill, formatMoney } from "./format.js";
import { access, keepAccess } from "./line.js";
import { pageData } from "./page-data.js";
import { showLeft, watchStock } from "./stock.js";

const data = pageData();
const eventId = data.eventId;
const text = data.messages;
const SVG = "http://www.w3.org/2000/svg";
const REFRESH_SECONDS = 5; // the seat map is micro-cached by nginx for a second: cheap to read again
const GAP = 26; // seat pitch in the drawing's units
// A seat is 24 units across with its 2-unit outline, a seat every 26: at scale 1, the 24-px minimum
// target of WCAG 2.5.8 with room between seats.
const SEAT_RADIUS = 11;
const MARGIN = 34; // room for the row labels
// Drawing units per CSS pixel the +/- buttons step through. 1: seats 24 px across (the minimum for a
// finger); PHONE_SCALE: a 44-px seat pitch, the comfortable size for a thumb, where a phone starts.
const SCALES = [1, 1.35, 1.7, 2.2];
const PHONE_SCALE = 1.7;
const NARROW_PX = 600; // a map card narrower than this is a phone's: start at PHONE_SCALE

const $ = (selector) => document.querySelector(selector);
const alertBox = $("#buy-alert");
const holdButton = $("#hold");
const buyerForm = $("#buyer");
const choiceStep = $("#choice-step");
const quantities = [...document.querySelectorAll('[data-testid="quantity"]')];
const sections = new Map(data.sections.map((section) => [section.id, section]));

const seats = new Map(); // seat id -> { id, section, row, number, label, status, element }
const selected = new Set();
let hold = null;
let stopCountdown = null;
let refreshTimer = null;

function warn(words) {
  alertBox.textContent = words || "";
  alertBox.hidden = !words;
}

// -- Seat maps --------------------------------------------------------------------------------

async function readSeats() {
  const all = [];
  let after = null;
  do {
    const query = new URLSearchParams({ limit: "5000" });
    if (after !== null) query.set("after", String(after));
    const { body } = await api(`/api/events/${eventId}/seats?${query}`);
    all.push(...body.seats);
    after = body.nextAfter;
  } while (after !== null);
  return all;
}

function describe(seat) {
  const section = sections.get(seat.section);
  const where = fill(text.seat, { section: section.name, row: seat.row, number: seat.number });
  const state = selected.has(seat.id) ? text.chosen : text[seat.status];
  return `${where}, ${section.priceText}: ${state}`;
}

function paint(seat) {
  const element = seat.element;
  element.dataset.status = seat.status;
  element.setAttribute("aria-pressed", String(selected.has(seat.id)));
  element.setAttribute("aria-disabled", String(seat.status !== "available" && !selected.has(seat.id)));
  element.setAttribute("aria-label", describe(seat));
}

function drawSection(container, sectionSeats) {
  const section = sections.get(sectionSeats[0].section);
  const rows = [];
  const byRow = new Map();
  for (const seat of sectionSeats) {
    if (!byRow.has(seat.row)) {
      byRow.set(seat.row, []);
      rows.push(seat.row);
    }
    byRow.get(seat.row).push(seat);
  }
  const widest = Math.max(...rows.map((row) => byRow.get(row).length));
  const width = MARGIN + widest * GAP + 8;
  const height = 44 + rows.length * GAP;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "seat-map");
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", fill(text.seatMap, { section: section.name }));
  svg.setAttribute("aria-describedby", `map-help-${section.id}`);

  const stage = document.createElementNS(SVG, "rect");
  stage.setAttribute("class", "stage");
  stage.setAttribute("x", String(MARGIN));
  stage.setAttribute("y", "4");
  stage.setAttribute("width", String(widest * GAP - 4));
  stage.setAttribute("height", "22");
  stage.setAttribute("rx", "6");
  stage.setAttribute("aria-hidden", "true");
  svg.append(stage);
  const stageLabel = document.createElementNS(SVG, "text");
  stageLabel.setAttribute("class", "stage-label");
  stageLabel.setAttribute("x", String(MARGIN + (widest * GAP) / 2));
  stageLabel.setAttribute("y", "19");
  stageLabel.setAttribute("text-anchor", "middle");
  stageLabel.setAttribute("aria-hidden", "true");
  stageLabel.textContent = text.stage;
  svg.append(stageLabel);

  const grid = [];
  rows.forEach((row, r) => {
    const y = 44 + r * GAP;
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("class", "row-label");
    label.setAttribute("x", "6");
    label.setAttribute("y", String(y + 4));
    label.setAttribute("aria-hidden", "true");
    label.textContent = row;
    svg.append(label);
    const line = byRow.get(row);
    const offset = ((widest - line.length) * GAP) / 2; // shorter rows centred, as in a theatre
    grid.push(
      line.map((seat, i) => {
        const circle = document.createElementNS(SVG, "circle");
        circle.setAttribute("cx", String(MARGIN + offset + i * GAP + GAP / 2 - 2));
        circle.setAttribute("cy", String(y));
        circle.setAttribute("r", String(SEAT_RADIUS));
        circle.setAttribute("class", "seat");
        circle.setAttribute("role", "button");
        circle.setAttribute("tabindex", "-1");
        circle.dataset.testid = "seat";
        circle.dataset.seatId = String(seat.id);
        circle.dataset.row = String(r);
        circle.dataset.col = String(i);
        seat.element = circle;
        seats.set(seat.id, seat);
        paint(seat);
        svg.append(circle);
        return seat;
      }),
    );
  });
  // One seat of the map is in the tab order (roving tabindex): Tab enters the map, arrows move in it.
  const first = sectionSeats.find((seat) => seat.status === "available") || sectionSeats[0];
  first.element.setAttribute("tabindex", "0");

  svg.addEventListener("click", (event) => {
    const seat = seats.get(Number(event.target.dataset?.seatId));
    if (seat) {
      focusSeat(grid, seat);
      toggle(seat);
    }
  });
  svg.addEventListener("keydown", (event) => {
    const seat = seats.get(Number(event.target.dataset?.seatId));
    if (!seat) return;
    const r = Number(seat.element.dataset.row);
    const c = Number(seat.element.dataset.col);
    const moves = {
      ArrowLeft: [r, c - 1],
      ArrowRight: [r, c + 1],
      ArrowUp: [r - 1, c],
      ArrowDown: [r + 1, c],
      Home: [r, 0],
      End: [r, Infinity],
    };
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      toggle(seat);
    } else if (event.key in moves) {
      event.preventDefault();
      const [toRow, toCol] = moves[event.key];
      const line = grid[Math.min(Math.max(toRow, 0), grid.length - 1)];
      focusSeat(grid, line[Math.min(Math.max(toCol, 0), line.length - 1)]);
    }
  });
  container.replaceChildren(svg);
  setUpZoom(container, svg, width);
}

// -- Zoom: seats big enough for a thumb, the map scrolling sideways inside its card ------------

function setUpZoom(container, svg, width) {
  const tools = document.querySelector(`[data-zoom-for="${container.dataset.seatMap}"]`);
  const coarse = window.matchMedia("(pointer: coarse)").matches;
  const fits = container.clientWidth / width; // the scale that shows the whole row in the card
  let scale = coarse || container.clientWidth < NARROW_PX ? PHONE_SCALE : Math.max(1, Math.min(fits, PHONE_SCALE));
  const apply = (next) => {
    // Keep the middle of what was in view in the middle.
    const middle = (container.scrollLeft + container.clientWidth / 2) / (container.scrollWidth || 1);
    scale = next;
    // Never narrower than the card (CSS min-width): a small section fills it rather than floating.
    svg.style.width = `${Math.round(width * scale)}px`;
    container.scrollLeft = middle * container.scrollWidth - container.clientWidth / 2;
    container.dataset.scale = String(scale);
    if (tools) {
      tools.querySelector('[data-zoom="-1"]').disabled = scale <= SCALES[0];
      tools.querySelector('[data-zoom="1"]').disabled = scale >= SCALES[SCALES.length - 1];
    }
  };
  apply(scale);
  // From the first seats, with the row letters in view; the fan scrolls (or zooms out) from there.
  container.scrollLeft = 0;
  if (!tools) return;
  tools.hidden = false;
  tools.addEventListener("click", (event) => {
    const button = event.target.closest("[data-zoom]");
    if (!button) return;
    const step = Number(button.dataset.zoom);
    const next = step > 0 ? SCALES.find((s) => s > scale) : [...SCALES].reverse().find((s) => s < scale);
    if (next !== undefined) apply(next);
  });
}

function focusSeat(grid, seat) {
  for (const line of grid) for (const other of line) other.element.setAttribute("tabindex", "-1");
  seat.element.setAttribute("tabindex", "0");
  seat.element.focus();
}

async function drawSeatMaps() {
  const containers = document.querySelectorAll("[data-seat-map]");
  if (!containers.length) return;
  const all = await readSeats();
  for (const container of containers) {
    const own = all.filter((seat) => seat.section === Number(container.dataset.seatMap));
    if (own.length) drawSection(container, own);
  }
}

/** Live availability: statuses read again while choosing; a chosen seat someone else took is let go. */
async function refreshSeats() {
  clearTimeout(refreshTimer);
  if (!hold && seats.size) {
    try {
      for (const fresh of await readSeats()) {
        const seat = seats.get(fresh.id);
        if (!seat || seat.status === fresh.status) continue;
        seat.status = fresh.status;
        if (selected.has(seat.id) && fresh.status !== "available") {
          selected.delete(seat.id);
          warn(fill(text.lostWhileChoosing, { seat: seat.label }));
          summarize();
        }
        paint(seat);
      }
    } catch {
      // The next refresh will tell.
    }
  }
  refreshTimer = setTimeout(refreshSeats, REFRESH_SECONDS * 1000);
}

// -- The choice -------------------------------------------------------------------------------

function chosenQuantity() {
  return quantities.reduce((sum, input) => sum + (Number.parseInt(input.value, 10) || 0), 0);
}

function toggle(seat) {
  if (hold) return;
  if (selected.has(seat.id)) {
    selected.delete(seat.id);
  } else {
    if (seat.status !== "available") return;
    if (selected.size >= data.maxTickets) {
      warn(fill(text.tooMany, { max: data.maxTickets }));
      return;
    }
    if (chosenQuantity()) {
      for (const input of quantities) input.value = "0";
      warn(text.oneKind);
    }
    selected.add(seat.id);
  }
  paint(seat);
  summarize();
}

for (const input of quantities) {
  input.addEventListener("input", () => {
    const wanted = Number.parseInt(input.value, 10) || 0;
    if (wanted > 0) {
      const cleared = selected.size > 0 || quantities.some((other) => other !== input && other.value !== "0");
      for (const other of quantities) if (other !== input) other.value = "0";
      for (const id of [...selected]) {
        selected.delete(id);
        paint(seats.get(id));
      }
      if (cleared) warn(text.oneKind);
    }
    summarize();
  });
}

function summarize() {
  let count = selected.size;
  let total = 0;
  for (const id of selected) total += Number(sections.get(seats.get(id).section).price);
  for (const input of quantities) {
    const wanted = Number.parseInt(input.value, 10) || 0;
    count += wanted;
    total += wanted * Number(sections.get(Number(input.dataset.sectionId)).price);
  }
  $("#chosen-count").textContent = fill(text.selected, { count });
  $("#chosen-total").textContent = count ? formatMoney(total, data.money) : "";
}

function holdRequest() {
  if (selected.size) return { seatIds: [...selected] };
  const input = quantities.find((field) => (Number.parseInt(field.value, 10) || 0) > 0);
  if (!input) return null;
  return { sectionId: Number(input.dataset.sectionId), quantity: Number.parseInt(input.value, 10) };
}

// -- The hold ---------------------------------------------------------------------------------

holdButton.addEventListener("click", async () => {
  warn("");
  const request = holdRequest();
  if (!request) return warn(text.nothingChosen);
  if ((request.quantity || request.seatIds.length) > data.maxTickets) {
    return warn(fill(text.tooMany, { max: data.maxTickets }));
  }
  holdButton.disabled = true;
  try {
    const grant = access(eventId);
    if (!grant) return noAccess();
    const { body, date } = await api(`/api/events/${eventId}/holds`, {
      method: "POST",
      headers: { "X-Access-Token": grant.token },
      body: request,
    });
    showHold(body, date - Date.now());
  } catch (error) {
    explain(error);
  } finally {
    holdButton.disabled = false;
  }
});

function showHold(held, skew) {
  hold = held;
  choiceStep.hidden = true;
  buyerForm.hidden = false;
  const list = $("#held-list");
  list.replaceChildren(
    ...held.seats.map((unit) => {
      const item = document.createElement("li");
      item.textContent = unit.label
        ? fill(text.seat, { section: unit.sectionName, row: unit.row, number: unit.number })
        : unit.sectionName;
      return item;
    }),
  );
  $("#held-total").textContent = formatMoney(held.total, data.money);
  stopCountdown = countdown($('[data-testid="hold-countdown"]'), Date.parse(held.expiresAt), {
    skew,
    onEnd: expired,
  });
  $("#buyer-email").focus();
}

function reset() {
  if (stopCountdown) stopCountdown();
  stopCountdown = null;
  hold = null;
  for (const id of [...selected]) {
    selected.delete(id);
    const seat = seats.get(id);
    if (seat) paint(seat);
  }
  for (const input of quantities) input.value = "0";
  buyerForm.hidden = true;
  choiceStep.hidden = false;
  summarize();
  refreshSeats();
}

async function letGo() {
  if (!hold) return;
  try {
    await api(`/api/holds/${hold.holdId}`, { method: "DELETE" });
  } catch {
    // Already expired or gone: either way the seats are free.
  }
}

async function expired() {
  await letGo();
  reset();
  warn(text.expired);
  holdButton.focus();
}

$("#release").addEventListener("click", async () => {
  await letGo();
  reset();
  warn("");
  holdButton.focus();
});

buyerForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  warn("");
  if (!buyerForm.checkValidity()) {
    buyerForm.reportValidity();
    return;
  }
  const checkout = $("#checkout");
  checkout.disabled = true;
  // One key per hold: pressing again, or again after a network error, finds the same order.
  const keyName = `ticketera.order-key.${hold.holdId}`;
  const key = sessionStorage.getItem(keyName) || crypto.randomUUID();
  sessionStorage.setItem(keyName, key);
  try {
    const { body } = await api("/api/orders", {
      method: "POST",
      headers: { "Idempotency-Key": key },
      body: {
        holdId: hold.holdId,
        buyer: { email: $("#buyer-email").value.trim(), name: $("#buyer-name").value.trim() },
      },
    });
    if (stopCountdown) stopCountdown();
    window.location.assign(body.checkoutUrl || `/orders/${body.id}?token=${encodeURIComponent(body.orderToken)}`);
  } catch (error) {
    checkout.disabled = false;
    if (error instanceof ApiError && (error.code === "hold_expired" || error.code === "hold_not_found")) {
      return expired();
    }
    if (error instanceof ApiError && error.status === 422) return warn(text.invalidBuyer);
    explain(error);
  }
});

function noAccess() {
  keepAccess(eventId, null);
  $("#shop").hidden = true;
  $("#no-access").hidden = false;
}

function explain(error) {
  if (!(error instanceof ApiError)) return warn(text.error);
  switch (error.code) {
    case "seats_unavailable": {
      const taken = (error.body.seats || []).map((id) => seats.get(id)?.label || String(id));
      for (const id of [...selected]) {
        selected.delete(id);
        paint(seats.get(id));
      }
      summarize();
      refreshSeats();
      return warn(fill(text.taken, { seats: taken.join(", ") || "" }));
    }
    case "limit_exceeded":
      return warn(fill(text.limit, { max: data.maxTickets }));
    case "access_required":
      warn(text.noAccess);
      return noAccess();
    case "sales_closed":
    case "event_cancelled":
      return warn(text.closed);
    default:
      return warn(error.status === 503 || error.status === 429 ? text.busy : text.error);
  }
}

/** General admission: what is left, read again while choosing (held places may come back). */
function watchGeneralAdmission() {
  if (!quantities.length) return;
  watchStock(eventId, (event) => {
    showLeft(event, text);
    for (const section of event.sections) {
      const input = quantities.find((field) => Number(field.dataset.sectionId) === section.id);
      if (input) input.max = String(Math.min(section.available, data.maxTickets));
    }
  });
}

// -- Start ------------------------------------------------------------------------------------

if (!access(eventId)) {
  noAccess();
} else {
  summarize();
  watchGeneralAdmission();
  drawSeatMaps()
    .then(refreshSeats)
    .catch(() => warn(text.error));
}
