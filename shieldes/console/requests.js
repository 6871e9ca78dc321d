// The request log: every request the nodes served (refused and failed ones included), filtered and
// paged newest first, and one request's detail (captured bodies for roles that may read them).
import { api, h, fmt, table, heading, field, qs, errorBox } from "./core.js";

const DETAIL = [
  ["node_id", "Node"], ["started_at", "Started"], ["finished_at", "Finished"], ["key_name", "Key"],
  ["key_id", "Key id"], ["team_id", "Team id"], ["method", "Method"], ["route", "Route"], ["path", "Path"],
  ["model", "Model"], ["upstream_model", "Upstream model"], ["fallback", "Fallback that answered"],
  ["deployment", "Deployment"], ["attempts", "Attempts"],
  ["failover_path", "Deployments tried"], ["status", "Status"], ["error_code", "Error code"], ["error_message", "Why"],
  ["latency_ms", "Latency"], ["ttfb_ms", "Time to first byte"], ["ttft_ms", "Time to first token"],
  ["prompt_tokens", "Prompt tokens"], ["completion_tokens", "Completion tokens"], ["cached_tokens", "Cached tokens"],
  ["cache_write_tokens", "Cache write tokens"],
  ["reasoning_tokens", "Reasoning tokens"], ["images", "Images"], ["audio_seconds", "Audio seconds"],
  ["characters", "Characters"], ["web_searches", "Web searches"], ["file_searches", "File searches"],
  ["containers", "Containers"], ["cost_usd", "Cost (USD)"], ["stream", "Stream"], ["tags", "Tags"],
  ["client_ip", "Client IP"], ["user_agent", "User agent"], ["trace_id", "Trace id"], ["logged_at", "Logged"],
];
// "gateway": the clients' requests, not the admin API's, the console's or the probes' (unmatched paths included)
const TRAFFIC = [["gateway", "gateway"], ["/v1/*", "/v1 routes"], ["/admin/*", "admin API"], ["", "everything"]];
const STATUSES = [["", "any"], ["ok", "ok"], ["error", "errors"], ["2xx", "2xx"], ["4xx", "4xx"], ["5xx", "5xx"], ["429", "429"]];

// The status with its error code under it, so a refused request's kind shows in the list; the
// row's title and the opened request give the whole message.
function statusCell(r) {
  const level = r.status >= 500 ? "bad" : r.status >= 400 || r.error_code ? "warn" : "ok";
  const badge = h(`span.badge.${level}`, String(r.status));
  return r.error_code ? h("span", { title: r.error_message || r.error_code }, badge, h("span.sub", r.error_code)) : badge;
}

// Under the model: the deployment that answered; a request refused before routing has none, and its
// method would read as one, so only model-less requests (GET /v1/models) show their method there.
// On a phone the key's column is hidden and its name shows here instead; a route wraps at its
// slashes there, not inside a word. A path no route matched shows as the path asked for.
function modelCell(r) {
  const under = r.deployment || (r.model ? null : r.method);
  const route = ((r.route === "unmatched" ? r.path : r.route) || "").split("/").map((part, i) => (i > 1 ? [h("wbr"), `/${part}`] : i ? `/${part}` : part));
  return h("span", r.model || route, under ? h("span.sub", under) : null,
    r.key_name ? h("span.sub.phone-only", `key ${r.key_name}`) : null);
}

function value(k, v) {
  if (k === "tags") return v.join(", ");
  if (Array.isArray(v)) return v.join(" → ");
  // from a request to its key (to raise a budget, revoke it...): the Keys page finds it by name
  if (k === "key_name") return h("a.key-link", { href: `#/keys?search=${encodeURIComponent(v)}` }, v);
  if (k === "cost_usd") return fmt.usd(v);
  if (k.endsWith("_at")) return fmt.time(v);
  if (k.endsWith("_ms")) return fmt.latency(v);
  return String(v);
}

function bodies(r) {
  if (r.bodies === "shown") {
    return h("div", h("h3", "Request body"), h("pre.body", r.request_body ?? "(none)"),
      h("h3", "Response body"), h("pre.body", r.response_body ?? "(not captured: streamed or empty)"),
      r.body_truncated ? h("p.muted.small", "Cut to SHIELDES_CAPTURE_MAX_BYTES.") : null);
  }
  if (r.bodies === "withheld") return h("p.muted.small", "Bodies were captured; only the admin role may read them.");
  return h("p.muted.small", "No bodies captured for this request (SHIELDES_CAPTURE_BODIES).");
}

export async function requestsPage(root) {
  const key = h("input", { name: "key", placeholder: "name or id" });
  const model = h("input", { name: "model" });
  const status = h("select", { name: "status" }, STATUSES.map(([v, l]) => h("option", { value: v }, l)));
  const code = h("input", { name: "error_code", placeholder: "e.g. budget_exceeded", spellcheck: "false" });
  const since = h("input", { name: "since", type: "date" });
  const until = h("input", { name: "until", type: "date" });
  const rid = h("input", { name: "request_id", placeholder: "x-request-id", spellcheck: "false" });
  const traffic = h("select", { name: "route" }, TRAFFIC.map(([v, l]) => h("option", { value: v }, l)));
  const filters = h("form.toolbar", { "aria-label": "Request filters" },
    field("Traffic", traffic), field("Key", key), field("Model", model), field("Status", status), field("Error code", code), field("Since", since), field("Until", until),
    field("Request id", rid), h("button", { type: "submit" }, "Filter"));
  const listArea = h("div");
  const detailArea = h("section.panel", { "aria-labelledby": "req-title", "aria-live": "polite" },
    h("h2#req-title", "Request"), h("p.muted", "Open a request to see its details."));
  root.replaceChildren(heading("Requests"), filters, h("div.split.wide", h("div", listArea), h("div", detailArea)));
  let rows = [];
  let next = null;
  let openId = null;

  function renderList() {
    listArea.replaceChildren(table("Requests, newest first", [
      { label: "When", header: true, cell: (r) => h("span", h("button.link", { type: "button", "aria-label": `Open request ${r.request_id}`,
        onclick: (ev) => { ev.stopPropagation(); open(r.request_id); } }, fmt.time(r.started_at).slice(11)),
      h("span.sub", fmt.time(r.started_at).slice(0, 10))) },
      // on a phone: when, what and how it ended; the rest is in the opened request
      { label: "Key", cls: "wide-only name", cell: (r) => r.key_name || "–" },
      { label: "Model", cls: "wrap-phone", cell: modelCell },
      { label: "Status", cell: statusCell },
      { label: "Latency", num: true, cls: "wide-only", cell: (r) => fmt.latency(r.latency_ms) },
      { label: "Tokens", num: true, cls: "wide-only", cell: (r) => (r.prompt_tokens === null ? "–" : fmt.num((r.prompt_tokens || 0) + (r.completion_tokens || 0))) },
    ], rows.map((r) => ({ ...r, attrs: { class: r.request_id === openId ? "selected clickable" : "clickable",
      "data-request-id": r.request_id, onclick: () => open(r.request_id) } })), { empty: filtered()
      ? "No requests match these filters: widen the dates, pick \u201ceverything\u201d under Traffic, or clear a field."
      : "No requests yet: the nodes log each request their clients send (about once a second), and it shows here." }));
    if (next) listArea.append(h("button", { type: "button", onclick: () => load(true) }, "Older requests"));
  }

  // whether the list is narrowed: an empty list then says to widen it, not that nothing came
  function filtered() {
    return traffic.value !== TRAFFIC[0][0] || [key, model, status, code, since, until, rid].some((f) => f.value.trim() !== "");
  }

  async function load(more) {
    try {
      const page = await api("GET", `/requests${qs({ route: traffic.value, key: key.value.trim(), model: model.value.trim(),
        status: status.value, error_code: code.value.trim(), since: since.value, until: until.value, request_id: rid.value.trim(), limit: 50,
        before: more ? next : null })}`);
      rows = more ? rows.concat(page.data) : page.data;
      next = page.next_before;
      renderList();
    } catch (err) {
      listArea.replaceChildren(errorBox(err));
    }
  }

  async function open(id) {
    openId = id;
    // mark the row in place: re-drawing the list would take the focus off the button just pressed
    for (const tr of listArea.querySelectorAll("tr[data-request-id]")) tr.classList.toggle("selected", tr.dataset.requestId === id);
    try {
      const found = await api("GET", `/requests/${encodeURIComponent(id)}`);
      const several = found.data.length > 1;
      detailArea.replaceChildren(h("h2#req-title", "Request ", h("code#req-id", id)),
        ...found.data.map((r) => h("div.req-node",
          several ? h("h3", `Served by ${r.node_id}`) : null,
          h("dl.detail", DETAIL.filter(([k]) => r[k] !== null && r[k] !== undefined && r[k] !== "" && !(Array.isArray(r[k]) && !r[k].length))
            .map(([k, label]) => [h("dt", label), h("dd", value(k, r[k]))])),
          bodies(r))));
      detailArea.querySelector("h2").scrollIntoView({ block: "nearest" });
    } catch (err) {
      detailArea.replaceChildren(h("h2#req-title", "Request"), errorBox(err));
    }
  }

  filters.addEventListener("submit", (ev) => { ev.preventDefault(); load(false); });
  await load(false);
  return null;
}
