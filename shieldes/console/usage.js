// Usage charts per key, team, model or provider and day over a date range, drawn as SVG, with the
// numbers in a table too. Reads /admin/v1/usage (the usage_deltas view: flushed usage, rollups included).
import { api, h, fmt, table, heading, field, errorBox, patch } from "./core.js";
import { stackedBars, hbars, PALETTE } from "./charts.js";

const REFRESH_MS = 5000;
const METRICS = [
  { value: "requests", label: "Requests" },
  { value: "cost_usd", label: "Cost (USD)" },
  { value: "tokens", label: "Tokens" },
];
const GROUPS = [
  { value: "key", label: "Key" }, { value: "team", label: "Team" },
  { value: "model", label: "Model" }, { value: "provider", label: "Provider" },
];
const TOP = 7;

function isoDay(d) { return d.toISOString().slice(0, 10); }

function daysBetween(since, until) {
  const out = [];
  for (let d = new Date(`${since}T00:00:00Z`); isoDay(d) <= until && out.length < 400; d.setUTCDate(d.getUTCDate() + 1)) out.push(isoDay(d));
  return out;
}

function value(row, metric) {
  if (metric === "tokens") return row.prompt_tokens + row.completion_tokens;
  return row[metric];
}

export async function usagePage(root) {
  const today = new Date();
  const start = new Date(today);
  start.setUTCDate(start.getUTCDate() - 13);
  const since = h("input", { type: "date", name: "since", value: isoDay(start) });
  const until = h("input", { type: "date", name: "until", value: isoDay(today) });
  const group = h("select", { name: "group" }, GROUPS.map((g) => h("option", { value: g.value }, g.label)));
  const metric = h("select", { name: "metric" }, METRICS.map((m) => h("option", { value: m.value }, m.label)));
  const refresh = h("button", { type: "submit" }, "Show");
  const form = h("form.toolbar", { "aria-label": "Usage filters" },
    field("From", since), field("To", until), field("Per", group), field("Measure", metric), refresh);
  const out = h("div", { "aria-live": "polite" });
  root.replaceChildren(heading("Usage"), form, out);
  let timer = null;
  let stopped = false;

  async function draw() {
    let data;
    try {
      data = await api("GET", `/usage?group_by=day,${group.value}&since=${since.value}&until=${until.value}`);
    } catch (err) {
      patch(out, errorBox(err));
      return;
    }
    const m = metric.value;
    const g = group.value;
    const mLabel = METRICS.find((x) => x.value === m).label;
    const gLabel = GROUPS.find((x) => x.value === g).label.toLowerCase();
    const totals = new Map();
    for (const r of data.data) {
      const name = r[g] ?? "(none)";
      totals.set(name, (totals.get(name) || 0) + value(r, m));
    }
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
    const top = ranked.slice(0, TOP).map(([name]) => name);
    const series = top.map((name) => ({ name, values: {} }));
    const other = { name: "other", values: {} };
    for (const r of data.data) {
      const name = r[g] ?? "(none)";
      const ser = series.find((x) => x.name === name) || other;
      ser.values[r.day] = (ser.values[r.day] || 0) + value(r, m);
    }
    if (ranked.length > TOP) series.push(other);
    const days = daysBetween(since.value, until.value);
    const width = (out.clientWidth || root.clientWidth) - 34; // inside a panel's padding and border
    const sum = ranked.reduce((a, [, v]) => a + v, 0);
    const legend = h("ul.legend", { "aria-label": "Legend" }, series.map((ser, i) =>
      h("li", h("span.swatch", { style: { background: PALETTE[i % PALETTE.length] }, "aria-hidden": "true" }), ser.name)));
    const all = (k) => data.data.reduce((a, r) => a + value(r, k), 0);
    const others = METRICS.filter((x) => x.value !== m).map((x) => h("section.card", { "aria-label": `Total ${x.label}` },
      h("h2", x.label), h("p.big", x.value === "cost_usd" ? fmt.usd(all(x.value)) : fmt.num(all(x.value)))));
    // newest day first, and within a day the biggest first, as the chart's legend ranks them (the
    // API sorts by day and name: reversed, a day's rows ran from Z to A)
    const rows = [...data.data].sort((a, b) => b.day.localeCompare(a.day) || value(b, m) - value(a, m)
      || String(a[g] ?? "").localeCompare(String(b[g] ?? "")));
    patch(out,
      h("div.cards", h("section.card", { "aria-label": `Total ${mLabel}` }, h("h2", `Total ${mLabel.toLowerCase()}`),
        h("p.big#usage-total", m === "cost_usd" ? fmt.usd(sum) : fmt.num(sum)), h("p.muted.small", `${since.value} to ${until.value} (UTC)`)), others),
      h("section.panel", { "aria-labelledby": "per-day" }, h("h2#per-day", `${mLabel} per day by ${gLabel}`),
        stackedBars({ title: `${mLabel} per day by ${gLabel}`, days, series, metric: m === "tokens" ? "requests" : m, width }), legend),
      h("section.panel", { "aria-labelledby": "per-group" }, h("h2#per-group", `${mLabel} per ${gLabel}`),
        hbars({ title: `${mLabel} per ${gLabel}`, rows: ranked.slice(0, 15).map(([name, v]) => ({ name, value: v })), metric: m === "tokens" ? "requests" : m, width })),
      table(`Usage per day and ${gLabel}`, [
        { label: "Day", header: true, cell: (r) => r.day },
        { label: GROUPS.find((x) => x.value === g).label, cls: "name", cell: (r) => r[g] ?? "(none)" },
        { label: "Requests", num: true, cell: (r) => fmt.num(r.requests) },
        { label: "Prompt tokens", num: true, cell: (r) => fmt.num(r.prompt_tokens) },
        { label: "Completion tokens", num: true, cell: (r) => fmt.num(r.completion_tokens) },
        // what media calls are billed in besides tokens, and hosted tool uses billed per use with the part
        // of the cost they make (absent from a node of an earlier release): a column only when the range
        // has some, so the cost stays on screen beside the tokens
        ...unitColumns(rows),
        { label: "Cost", num: true, cell: (r) => fmt.usd(r.cost_usd) },
      ], rows, { empty: "No usage in this range: pick an earlier From date, or send requests with a key; "
        + "usage shows here a few seconds after the nodes flush it." }));
  }

  async function loop() {
    await draw();
    if (stopped) return;
    clearTimeout(timer); // a redraw asked for while one was in flight: the last to finish holds the one timer
    timer = setTimeout(loop, REFRESH_MS);
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); clearTimeout(timer); loop(); });
  for (const el of [group, metric]) el.addEventListener("change", () => { clearTimeout(timer); loop(); });
  await loop();
  return { stop() { stopped = true; clearTimeout(timer); } };
}


// The usage table's columns for units besides tokens, each only when a row in range has some.
const UNITS = [
  { field: "images", label: "Images", show: fmt.num },
  { field: "audio_seconds", label: "Audio seconds", show: fmt.num },
  { field: "characters", label: "Characters", show: fmt.num },
  { field: "web_searches", label: "Web searches", show: fmt.num },
  { field: "file_searches", label: "File searches", show: fmt.num },
  { field: "containers", label: "Containers", show: fmt.num },
  { field: "tools_usd", label: "Tools cost", show: fmt.usd },
];

function unitColumns(rows) {
  return UNITS.filter((u) => rows.some((r) => (r[u.field] ?? 0) > 0))
    .map((u) => ({ label: u.label, num: true, cell: (r) => u.show(r[u.field] ?? 0) }));
}
