// Overview: every node, the leader and its epoch, log positions, gossip health and convergence,
// propagation delay, requests/s and errors/s computed from successive polls of the cluster view,
// and how the cluster routes: per deployment its health, effective weight, traffic share, quota use.
import { api, h, fmt, table, heading, errorBox, patch } from "./core.js";
import { sparkline } from "./charts.js";

const POLL_MS = 2000;
const HISTORY = 60;

export async function overviewPage(root) {
  const prev = new Map(); // node -> {t, total, errors}
  const history = { rps: [], eps: [] };
  const body = h("div");
  root.replaceChildren(heading("Overview", h("span.live", { "aria-hidden": "true" }, "live")), body);
  let timer = null;
  let stopped = false;

  async function tick() {
    let data;
    try {
      data = await api("GET", "/cluster");
    } catch (err) {
      patch(body, errorBox(err));
      return;
    }
    const rates = new Map();
    for (const n of data.nodes) {
      const r = n.requests;
      const p = prev.get(n.node_id);
      if (r && p && data.now > p.t) {
        const dt = data.now - p.t;
        rates.set(n.node_id, {
          rps: Math.max(0, (r.total - p.total) / dt),
          eps: Math.max(0, (r.server_errors + r.client_errors - p.errors) / dt),
        });
      }
      if (r) prev.set(n.node_id, { t: data.now, total: r.total, errors: r.server_errors + r.client_errors });
    }
    const alive = data.nodes.filter((n) => n.status === "alive");
    const sum = (k) => [...rates.values()].reduce((a, r) => a + r[k], 0);
    if (rates.size) {
      history.rps.push(sum("rps"));
      history.eps.push(sum("eps"));
      if (history.rps.length > HISTORY) { history.rps.shift(); history.eps.shift(); }
    }
    const maxLag = Math.max(0, ...alive.map((n) => n.lag));
    const applies = alive.map((n) => n.config_apply_ms).filter((v) => v !== null && v !== undefined);
    const leader = data.leader;
    const cards = h("div.cards.overview-cards",
      card("Leader", leader.node_id || "none", `epoch ${leader.epoch}`, null, "wide"),
      card("Nodes alive", `${alive.length} / ${data.nodes.length}`, `answered by ${data.answered_by}`),
      card("Log head", fmt.num(data.log_head), `max lag ${fmt.num(maxLag)} events`),
      card("Propagation", applies.length ? fmt.ms(Math.max(...applies)) : "–", "last config change, commit to applied (slowest node)"),
      card("Convergence", fmt.ms(data.convergence_ms), "gossip: sent to acknowledged by every peer (longest, last 10 s)"),
      card("Requests", rates.size ? fmt.rate(sum("rps")) : "…", "all answers, every node", sparkline(history.rps, { title: "requests per second, last 2 minutes" })),
      card("Errors", rates.size ? fmt.rate(sum("eps")) : "…", "4xx and 5xx answers", sparkline(history.eps, { title: "errors per second, last 2 minutes" })));
    const nodes = table("Nodes", [
      { label: "Node", header: true, cell: (n) => h("span", n.node_id, n.leader ? [" ", h("span.badge.ok", { title: "leader" }, "leader")] : null) },
      // starting (not listening on HTTP yet) and draining (after SIGTERM) are on their way in or out
      { label: "Status", cell: (n) => h(`span.badge.${n.status === "alive" ? "ok" : n.status === "dead" ? "bad" : "warn"}`, n.status) },
      { label: "Address", cell: (n) => n.http_address || "–" },
      { label: "Log position", num: true, cell: (n) => fmt.num(n.position) },
      { label: "Lag", num: true, cell: (n) => fmt.num(n.lag) },
      { label: "Heartbeat", num: true, cell: (n) => `${n.heartbeat_age_s.toFixed(1)} s` },
      { label: "Gossip in/out", num: true, cell: (n) => `${fmt.num(n.gossip.received)} / ${fmt.num(n.gossip.sent)}` },
      { label: "Gossip health", cell: (n) => gossipHealth(n) },
      { label: "Listener", cell: (n) => n.listener || "–" },
      { label: "Req/s", num: true, cell: (n) => (rates.has(n.node_id) ? fmt.rate(rates.get(n.node_id).rps) : "…") },
      { label: "Err/s", num: true, cell: (n) => (rates.has(n.node_id) ? fmt.rate(rates.get(n.node_id).eps) : "…") },
    ], data.nodes);
    const quota = (d) => ["rpm", "tpm"].filter((q) => d.quota[q] !== null)
      .map((q) => `${q} ${fmt.pct(d.quota[`${q}_used`])}`).join(", ") || "–";
    const deployments = table("Routing (last 60 s)", [
      { label: "Deployment", header: true, cls: "name", cell: (d) => d.name },
      { label: "Region", cell: (d) => d.region || "–" },
      { label: "Health", cell: (d) => h(`span.badge.${d.healthy ? "ok" : "bad"}`, d.healthy ? "healthy" : "unhealthy") },
      { label: "Latency", num: true, cell: (d) => fmt.latency(d.latency_ms) },
      { label: "Errors", num: true, cell: (d) => (d.requests ? fmt.pct(d.error_rate) : "–") },
      { label: "Weight", num: true, cell: (d) => String(d.weight) },
      { label: "Share", num: true, cell: (d) => fmt.pct(d.traffic_share) },
      { label: "Requests", num: true, cell: (d) => fmt.num(d.requests_60s) },
      { label: "Quota used", cell: quota },
    ], data.deployments || []);
    patch(body, cards, nodes, deployments,
      h("p.muted.small", `Refreshed every ${POLL_MS / 1000} s, last at `,
        h("time#refreshed", fmt.time(new Date(data.now * 1000).toISOString()).slice(11)),
        ". Rates are computed between refreshes from each node's heartbeat counters."));
  }

  async function loop() {
    await tick();
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  await loop();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

function card(title, value, sub, extra, size) {
  return h(`section.card${size ? `.${size}` : ""}`, { "aria-label": title }, h("h2", title), h("p.big", value), sub ? h("p.muted.small", sub) : null, extra || null);
}

function gossipHealth(n) {
  const g = n.gossip;
  if (!g.sent && !g.received) return h("span.badge.muted", "off");
  const bad = g.rejected + g.send_errors;
  return bad ? h("span.badge.warn", `${bad} rejected/failed`) : h("span.badge.ok", "healthy");
}
