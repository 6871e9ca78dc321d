// SVG charts drawn here (no library): stacked daily bars, horizontal bars and a sparkline. Every
// chart has a title and a text description for screen readers; the data is also in a table.
import { s, fmt } from "./core.js";

export const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#6b7280"];

// The smallest "nice" step (1, 2, 2.5 or 5 times a power of ten; whole numbers for counts) such
// that `ticks` steps cover v; returns the axis maximum.
function niceMax(v, ticks = 4, whole = true) {
  if (v <= 0) return ticks;
  const raw = v / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * p;
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) { step = m * p; break; }
  if (whole) step = Math.max(1, Math.ceil(step));
  return step * ticks;
}

// An id from the chart's title: the same on every redraw, so a live refresh leaves the chart alone
// when its data is unchanged.
function chartId(title) {
  return `c-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
}

function label(value, metric) {
  return metric === "cost_usd" ? fmt.usd(value) : fmt.num(Math.round(value));
}

// days: ["2026-11-01", ...]; series: [{name, values: {day: number}}]
// `width`: the pixels available, so the drawing is made at its real size and text stays legible.
export function stackedBars({ title, days, series, metric, width = 720 }) {
  const W = Math.max(300, Math.min(1200, width)), H = W < 500 ? 220 : 280, L = 64, R = 12, T = 16, B = 40;
  const totals = days.map((d) => series.reduce((a, ser) => a + (ser.values[d] || 0), 0));
  const max = niceMax(Math.max(0, ...totals), 4, metric !== "cost_usd");
  const bw = (W - L - R) / Math.max(1, days.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "" });
  const id = chartId(title);
  const t = s("title", { id: `${id}-t` }, title);
  const desc = s("desc", { id: `${id}-d` },
    days.map((d, i) => `${d}: ${label(totals[i], metric)}`).join("; ") || "no data");
  svg.setAttribute("aria-labelledby", `${id}-t ${id}-d`);
  svg.append(t, desc);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, label(v, metric)));
  }
  const every = Math.ceil(days.length / Math.max(3, Math.floor((W - L) / 60)));
  days.forEach((d, i) => {
    let base = 0;
    series.forEach((ser, j) => {
      const v = ser.values[d] || 0;
      if (v > 0) {
        const r = s("rect", { x: L + i * bw + bw * 0.15, width: Math.max(1, bw * 0.7), y: y(base + v),
          height: Math.max(0.5, y(base) - y(base + v)), fill: PALETTE[j % PALETTE.length], class: "seg" });
        r.append(s("title", {}, `${d} · ${ser.name}: ${label(v, metric)}`));
        svg.append(r);
      }
      base += v;
    });
    if ((days.length - 1 - i) % every === 0) { // anchored on the newest day, which is always labelled
      svg.append(s("text", { x: L + i * bw + bw / 2, y: H - B + 16, class: "axis", "text-anchor": "middle" },
        d.slice(5)));
    }
  });
  svg.append(s("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis-line" }));
  return svg;
}

// rows: [{name, value}] largest first
export function hbars({ title, rows, metric, width = 720 }) {
  const W = Math.max(300, Math.min(1200, width)), row = 26, L = Math.min(180, Math.round(W * 0.34)), R = 80;
  const chars = Math.floor((L - 12) / 7);
  const H = Math.max(1, rows.length) * row + 8;
  const max = niceMax(Math.max(0, ...rows.map((r) => r.value)), 4, metric !== "cost_usd");
  const id = chartId(title);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": `${id}-t ${id}-d` },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, rows.map((r) => `${r.name}: ${label(r.value, metric)}`).join("; ") || "no data"));
  rows.forEach((r, i) => {
    const yy = 4 + i * row;
    const w = ((W - L - R) * r.value) / max;
    svg.append(
      s("text", { x: L - 8, y: yy + 16, class: "axis", "text-anchor": "end" }, r.name.length > chars ? `${r.name.slice(0, chars - 1)}…` : r.name),
      s("rect", { x: L, y: yy + 4, width: Math.max(r.value > 0 ? 2 : 0, w), height: row - 10, fill: PALETTE[i % PALETTE.length], class: "seg" }),
      s("text", { x: L + w + 6, y: yy + 16, class: "value" }, label(r.value, metric)));
  });
  return svg;
}

// values: numbers, oldest first
export function sparkline(values, { title, width = 160, height = 36 }) {
  const max = niceMax(Math.max(0, ...values), 4, false);
  const n = Math.max(2, values.length);
  const pts = values.map((v, i) => `${((i / (n - 1)) * width).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  return s("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img", "aria-label": title },
    s("title", {}, title),
    s("line", { x1: 0, x2: width, y1: height - 2, y2: height - 2, class: "spark-base" }),
    s("polyline", { points: pts.join(" "), class: "spark-line" }));
}
