// The organizer's live dashboard: asks live.json every few seconds and puts the figures in place
// (elements marked data-live="<figure>", lists marked data-live-list="<list>"), and draws the
// sales charts as SVG. No reload; a session that ran out reloads into the login.

import { pageData } from "./page-data.js";
import { fill, formatMoney } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 200;
const PAD = { left: 8, right: 8, top: 12, bottom: 24 };

const data = pageData();
const timeFormat = new Intl.DateTimeFormat(data.language === "es" ? "es-AR" : "en", {
  hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: data.zone,
});

function element(name, attributes = {}, text = "") {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text) node.textContent = text;
  return node;
}

/** A step line of a running total over time, with its last value and the first and last times. */
function drawChart(area, series, key, format, title) {
  area.replaceChildren();
  if (series.length === 0) {
    const empty = document.createElement("p");
    empty.className = "hint";
    empty.textContent = data.messages.noSales;
    area.append(empty);
    return;
  }
  const times = series.map((p) => Date.parse(p.t));
  const values = series.map((p) => Number(p[key]));
  const t0 = times[0];
  const span = Math.max(times[times.length - 1] - t0, 1);
  const top = Math.max(...values, 1);
  const x = (t) => PAD.left + ((t - t0) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  let path = `M${x(times[0]).toFixed(1)},${y(values[0]).toFixed(1)}`;
  for (let i = 1; i < series.length; i += 1) {
    path += `H${x(times[i]).toFixed(1)}V${y(values[i]).toFixed(1)}`;
  }
  const last = values[values.length - 1];
  const label = fill(data.messages.chart, {
    what: title, value: format(last), time: timeFormat.format(times[times.length - 1]),
  });
  const svg = element("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart-svg",
  });
  svg.append(element("title", {}, label));
  for (const fraction of [0, 0.5, 1]) {
    svg.append(element("line", {
      x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top * fraction), y2: y(top * fraction), class: "chart-grid",
    }));
  }
  const area_ = `${path}V${y(0).toFixed(1)}H${x(times[0]).toFixed(1)}Z`;
  svg.append(element("path", { d: area_, class: "chart-fill" }));
  svg.append(element("path", { d: path, class: "chart-line" }));
  svg.append(element("text", { x: PAD.left, y: HEIGHT - 6, class: "chart-label" }, timeFormat.format(times[0])));
  svg.append(element("text", {
    x: WIDTH - PAD.right, y: HEIGHT - 6, class: "chart-label", "text-anchor": "end",
  }, timeFormat.format(times[times.length - 1])));
  svg.append(element("text", {
    x: WIDTH - PAD.right, y: PAD.top + 2, class: "chart-value", "text-anchor": "end",
    "dominant-baseline": "hanging",
  }, format(last)));
  area.append(svg);
}

function drawCharts(series) {
  const tickets = document.querySelector('[data-chart="tickets"] .chart-area');
  const revenue = document.querySelector('[data-chart="revenue"] .chart-area');
  if (tickets) drawChart(tickets, series, "tickets", (v) => String(v), data.messages.tickets);
  if (revenue) drawChart(revenue, series, "revenue", (v) => formatMoney(v, data.money), data.messages.revenue);
}

function fillList(list, items) {
  const rows = items.map((item) => {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = item.label;
    const value = document.createElement("strong");
    value.textContent = item.value;
    li.append(label, " ", value);
    return li;
  });
  if (rows.length === 0 && list.dataset.empty) {
    const li = document.createElement("li");
    li.textContent = list.dataset.empty;
    rows.push(li);
  }
  list.replaceChildren(...rows);
}

function show(live) {
  for (const node of document.querySelectorAll("[data-live]")) {
    const value = live.figures[node.dataset.live];
    if (value !== undefined && node.textContent !== value) node.textContent = value;
  }
  for (const list of document.querySelectorAll("[data-live-list]")) {
    const items = live[list.dataset.liveList];
    if (Array.isArray(items)) fillList(list, items);
  }
  const status = document.querySelector('[data-testid="event-status"]');
  if (status && status.dataset.status !== live.status) {
    status.dataset.status = live.status;
    status.className = `badge badge-status-${live.status}`;
    status.textContent = live.statusLabel;
  }
  drawCharts(live.series);
  document.body.dataset.refreshed = live.figures.updated;
}

let lastGood = null;

async function refresh() {
  // A dashboard in a background tab asks nothing; it catches up as soon as it is shown again.
  if (document.hidden) return;
  try {
    const response = await fetch(data.liveUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (response.status === 401) {
      window.location.reload();
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const live = await response.json();
    lastGood = live.figures.updated;
    show(live);
    const note = document.querySelector("[data-live-status]");
    if (note) {
      note.textContent = fill(data.messages.updated, { time: lastGood });
      note.dataset.stale = "false";
    }
  } catch {
    const note = document.querySelector("[data-live-status]");
    if (note && lastGood) {
      note.textContent = fill(data.messages.stale, { time: lastGood });
      note.dataset.stale = "true";
    }
  }
}

async function loop() {
  await refresh();
  window.setTimeout(loop, data.refreshSeconds * 1000);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
drawCharts(data.series);
window.setTimeout(loop, data.refreshSeconds * 1000);
