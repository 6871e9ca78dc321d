// Providers and deployments with live health: breaker state (here and in the cluster's view),
// moving latency and error rate, each peer's view, and traffic share over the last hour.
import { api, h, fmt, table, heading, errorBox, patch } from "./core.js";

const POLL_MS = 3000;

export async function providersPage(root) {
  const healthArea = h("div");
  const pricingArea = h("div");
  const mcpArea = h("div");
  root.replaceChildren(heading("Providers", h("span.live", { "aria-hidden": "true" }, "live")), healthArea, pricingArea,
    mcpArea);
  let timer = null;
  let stopped = false;

  async function tick() {
    try {
      const health = await api("GET", "/providers/health");
      patch(healthArea, h("p.muted.small", `Health as node ${health.node_id} and its peers see it; requests served over the last hour (from the usage in the log: failed attempts show in the error rate).`), table("Deployments", [
        { label: "Deployment", header: true, cls: "name", cell: (d) => d.name },
        { label: "Type", cell: (d) => d.type },
        { label: "Models", cls: "fit", cell: (d) => d.models.join(", ") },
        { label: "Weight", num: true, cell: (d) => String(d.weight) },
        { label: "Breaker", cell: (d) => h(`span.badge.${d.breaker === "open" ? "bad" : "ok"}`, d.breaker === "open" ? (d.open_here ? "open" : "open (peer)") : "closed") },
        { label: "Latency", num: true, cell: (d) => fmt.latency(d.latency_ms) },
        { label: "Error rate", num: true, cell: (d) => fmt.pct(d.error_rate) },
        { label: "Peers", cls: "fit", cell: (d) => peerView(d.peers) },
        // the bar over its numbers, so the column is as narrow as the bar (it fits at 1280 px)
        { label: "Served (1 h)", cls: "fit", cell: (d) => h("div.served",
          h("div.bar", { role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(d.traffic_share * 100), "aria-label": `Traffic share of ${d.name}` },
            h("span.fill.ok", { style: { width: `${Math.round(d.traffic_share * 100)}%` } })),
          h("span.budget-text", `${fmt.pct(d.traffic_share)} · ${fmt.num(d.requests_last_hour)} served`)) },
      ], health.data, { empty: "No providers configured: an admin adds one with `shieldes provider add` (or POST "
        + "/admin/v1/providers; docs/providers.md). This page watches providers and does not change them: a "
        + "provider's API key is given on the command line or as a variable set where the nodes run." }));
    } catch (err) {
      patch(healthArea, errorBox(err));
    }
  }

  async function loop() {
    await tick();
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  await loop();
  try {
    const pricing = await api("GET", "/pricing?source=override&limit=1000");
    const perImage = pricing.data.some((p) => p.per_image != null);
    const longContext = pricing.data.some((p) => p.long_context != null);
    const perSearch = pricing.data.some((p) => p.per_web_search != null);
    const multipliers = pricing.data.some((p) => p.multipliers != null);
    const perUse = pricing.data.some((p) => p.per_use != null);
    const cached = pricing.data.some((p) => p.cache_read_per_1m != null || p.cache_write_per_1m != null);
    const modalities = pricing.data.some((p) => p.modalities != null);
    const pairs = (o, show) => (o == null ? "–" : Object.entries(o).map(([k, v]) => `${k} ${show(v)}`).join(", "));
    pricingArea.replaceChildren(h("h2", "Pricing overrides"), table("Prices per 1M tokens", [
      { label: "Model", header: true, cell: (p) => p.model },
      { label: "Input", num: true, cell: (p) => fmt.usd(p.input_per_1m) },
      { label: "Output", num: true, cell: (p) => fmt.usd(p.output_per_1m) },
      ...(cached ? [{ label: "Cache read", num: true, cell: (p) => fmt.usd(p.cache_read_per_1m) },
        { label: "Cache write", num: true, cell: (p) => fmt.usd(p.cache_write_per_1m) }] : []),
      // audio and image tokens, billed apart from text where the upstream counts them (`pricing set --modality`)
      ...(modalities ? [{ label: "Audio / image", cell: (p) => modalityList(p.modalities) }] : []),
      ...(perImage ? [{ label: "Per image", num: true, cell: (p) => (p.per_image == null ? "–" : fmt.usd(p.per_image)) }] : []),
      ...(perSearch ? [{ label: "Per web search", num: true, cell: (p) => (p.per_web_search == null ? "–" : fmt.usd(p.per_web_search)) }] : []),
      ...(perUse ? [{ label: "Per use", cls: "fit", cell: (p) => pairs(p.per_use, fmt.usd) }] : []),
      ...(multipliers ? [{ label: "Multipliers", cls: "fit", cell: (p) => pairs(p.multipliers, (v) => `×${v}`) }] : []),
      ...(longContext ? [{ label: "Long prompt", cls: "fit", cell: (p) => (p.long_context == null ? "–"
        : `above ${p.long_context.above_tokens} tokens: ${fmt.usd(p.long_context.input_per_1m)} / ${fmt.usd(p.long_context.output_per_1m)}`) }] : []),
    ], pricing.data, { empty: "No price overrides: the shipped price table applies." }));
  } catch (err) {
    pricingArea.replaceChildren(errorBox(err));
  }
  try {
    const servers = await api("GET", "/mcp-servers?limit=1000");
    mcpArea.replaceChildren(h("h2", "MCP servers"), table("MCP servers agents reach through the gateway", [
      { label: "Server", header: true, cell: (m) => m.name },
      { label: "Route", cell: (m) => h("code", m.route) },
      { label: "URL", cell: (m) => m.url },
      { label: "Headers", cell: (m) => headerList(m.headers) },
    ], servers.data, { empty: "No MCP servers: an admin registers one with `shieldes mcp add` (docs/mcp.md); this page "
      + "lists them and does not change them. A key's access to them is set in its Edit form (Keys & teams)." }));
  } catch (err) {
    mcpArea.replaceChildren(errorBox(err));
  }
  return { stop() { stopped = true; clearTimeout(timer); } };
}

function modalityList(prices) {
  const entries = Object.entries(prices || {});
  if (!entries.length) return h("span.muted", "–");
  return h("ul.peers", entries.map(([kind, usd]) => h("li", `${kind.replaceAll("_", " ")} ${fmt.usd(usd)}`)));
}

function peerView(peers) {
  const entries = Object.entries(peers || {});
  if (!entries.length) return h("span.muted", "–");
  return h("ul.peers", entries.map(([node, p]) => h("li", `${node}: `,
    h(`span.badge.${p.open ? "bad" : "ok"}`, p.open ? "open" : "closed"), ` ${fmt.latency(p.latency_ms)}, ${p.requests ? fmt.pct(p.error_rate) : "–"} err`)));
}

// Header names and where each value comes from (never the value: `encrypted` or `env:VAR`).
function headerList(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return h("span.muted", "–");
  return h("ul.peers", entries.map(([name, source]) => h("li", `${name}: `, h("span.muted", source))));
}
