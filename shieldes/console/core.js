// Shared helpers: the admin API client, DOM building (never innerHTML with data), formatting.

const TOKEN = "shieldes.token";
const ID_TOKEN = "shieldes.id_token";
// An SSO session times out when unused (SHIELDES_OIDC_IDLE_SECONDS): the node renews it at each
// request the user makes. A live page's refresh is the user's only if they did something lately,
// else it says it is background and renews nothing, so a console left open still times out.
const ACTIVE_MS = 10000;
export const activity = { at: Date.now() };
for (const name of ["pointerdown", "keydown"]) {
  window.addEventListener(name, () => { activity.at = Date.now(); }, { capture: true, passive: true });
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set token(v) {
    if (v) sessionStorage.setItem(TOKEN, v); else { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(ID_TOKEN); }
  },
  // the provider's ID token from an SSO sign-in: the hint of the logout at the provider
  get idToken() { return sessionStorage.getItem(ID_TOKEN); },
  set idToken(v) { if (v) sessionStorage.setItem(ID_TOKEN, v); else sessionStorage.removeItem(ID_TOKEN); },
  me: null,
  can(scope) { return !!(this.me && this.me.scopes.includes(scope)); },
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
  }
}

export async function api(method, path, body, headers = {}) {
  const opts = { method, headers: { ...headers } };
  if (session.token) opts.headers.Authorization = `Bearer ${session.token}`;
  if (Date.now() - activity.at > ACTIVE_MS) opts.headers["X-Shieldes-Activity"] = "background";
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/admin/v1${path}`, opts);
  } catch {
    // the browser's own words here are "Failed to fetch": say what happened and what to do
    throw new ApiError(0, { error: { code: "node_unreachable", message: "Cannot reach the node: it may be "
      + "restarting, or the network is down. Try again in a moment (live pages retry at their next refresh); "
      + "if it lasts, check that the node is running." } });
  }
  const renewed = resp.headers.get("X-Shieldes-Session");
  if (renewed && session.token && opts.headers.Authorization === `Bearer ${session.token}`) session.token = renewed;
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) {
    // an answer without the API's error (a proxy's page in front of the node) still says something
    const err = new ApiError(resp.status, data && data.error ? data : { error: { message: `The node answered `
      + `${[resp.status, resp.statusText].filter(Boolean).join(" ")} without saying why (a proxy in front of it?). Try again; if it `
      + "lasts, look at the node's log and the proxy's." } });
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("shieldes:signed-out", { detail: { message: err.message, code: err.code } }));
    throw err;
  }
  return data;
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

// h("tag.class#id", {attr: value, onclick: fn}, ...children)
export function h(spec, attrs, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/i);
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "style") Object.assign(el.style, v); // CSSOM, allowed by the CSP (no inline style attributes)
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Live refresh: make `parent`'s children look like `children`, keeping every node that already
// matches. Unchanged rows stay the same DOM nodes, so a refresh keeps the reader's text selection,
// focus and scroll position, and a screen reader hears only what changed. Only for content without
// event listeners: a kept element keeps its old ones.
export function patch(parent, ...children) {
  morph(parent, [...h("div", null, ...children).childNodes]);
}

function morph(parent, nodes) {
  const old = [...parent.childNodes];
  nodes.forEach((n, i) => {
    const o = old[i];
    if (!o) parent.append(n);
    else if (o.isEqualNode(n)) return;
    else if (o.nodeType === Node.TEXT_NODE && n.nodeType === Node.TEXT_NODE) o.data = n.data;
    else if (o.nodeType === Node.ELEMENT_NODE && o.nodeName === n.nodeName && o.namespaceURI === n.namespaceURI) {
      syncAttributes(o, n);
      morph(o, [...n.childNodes]);
    } else parent.replaceChild(n, o);
  });
  for (const o of old.slice(nodes.length)) o.remove();
}

function syncAttributes(o, n) {
  for (const a of [...o.attributes]) if (!n.hasAttribute(a.name)) o.removeAttribute(a.name);
  for (const a of n.attributes) {
    if (a.name === "style") o.style.cssText = n.style.cssText; // CSSOM: the CSP refuses style attributes
    else if (o.getAttribute(a.name) !== a.value) o.setAttribute(a.name, a.value);
  }
}

export const svgNS = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function toast(message, kind = "info") {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = `toast show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast"; }, 6000);
}

export function errorBox(err) {
  return h("p.error", { role: "alert" }, err instanceof Error ? err.message : String(err));
}

export const fmt = {
  usd(v) {
    if (v === null || v === undefined) return "–";
    // under a cent: two significant digits, written out (JavaScript prints 3e-7 for a request's cost)
    if (v !== 0 && Math.abs(v) < 0.01) {
      const digits = Math.min(9, 1 - Math.floor(Math.log10(Math.abs(v))));
      return `$${v.toFixed(digits).replace(/0+$/, "")}`;
    }
    return `$${v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  },
  num(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); },
  pct(v) { return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`; },
  ms(v) {
    if (v === null || v === undefined) return "–";
    const n = Number(v);
    // under 0.1 ms (a static file, a refusal) the digits that say something, never "0.0 ms"
    if (n > 0 && n < 0.1) return n < 0.01 ? "<0.01 ms" : `${n.toFixed(2)} ms`;
    return `${n.toFixed(1)} ms`;
  },
  // A latency, where 0 is what nothing measured reads as: a deployment with no request (or no
  // successful one) in its moving figure, a request that ended before any timing. Shown as "–".
  latency(v) { return v ? fmt.ms(v) : "–"; },
  rate(v) { return v === null || v === undefined ? "–" : `${v.toFixed(1)}/s`; },
  time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
  },
  list(v) { return v === null || v === undefined ? "all" : v.join(", ") || "–"; },
};

// A table inside a keyboard-scrollable region (wide tables scroll sideways on a phone). A column's
// `cls` goes on its cells: "wide-only" hides it on a phone, "wrap-phone" lets it wrap there,
// "stack-phone" stacks its buttons there.
export function table(caption, columns, rows, { empty = "Nothing here yet." } = {}) {
  const cls = (c) => [c.num ? "num" : null, c.cls || null].filter(Boolean).join(" ") || null;
  const head = h("tr", columns.map((c) => h("th", { scope: "col", class: cls(c) }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", r.attrs || {}, columns.map((c) => h(c.header ? "th" : "td",
      { class: cls(c), scope: c.header ? "row" : null }, c.cell(r)))))
    : [h("tr", h("td", { colspan: columns.length, class: "empty" }, empty))];
  return h("div.scroll", { role: "region", "aria-label": caption, tabindex: 0 },
    h("table", h("caption", caption), h("thead", head), h("tbody", body)));
}

// A name (a key, team, deployment, model: up to 128 characters, often no space) as text that
// wraps only between its parts: after a dot, underscore, slash, colon or @ (a hyphen already is a
// break), and every 12 characters of a run without any, so a narrow column never cuts a word in two
// and a name without parts still fits.
const NAME_PART = /[^-_./:@\s]{1,12}[-_./:@]*|[-_./:@\s]+/g;
export function breakable(name) {
  const text = String(name);
  const parts = text.match(NAME_PART) || [text];
  return parts.flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintEl = hint ? h("small.hint", { id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div.field", h("label", { for: id }, label), input, hintEl);
}

// JSON of a value with its numbers written out: JavaScript writes a ten-millionth of a dollar as
// 1e-7, and money reads as decimals everywhere (the API and the CLI write 0.0000001)
export function plainJson(v) {
  const text = JSON.stringify(v, (_, x) => (typeof x === "number" && /e/i.test(String(x))
    ? `\u0000num:${x.toLocaleString("en-US", { useGrouping: false, maximumFractionDigits: 20 })}` : x));
  return text === undefined ? String(text) : text.replace(/"\\u0000num:([-0-9.]+)"/g, "$1");
}

export function budgetBar(spent, budget, label) {
  if (budget === null || budget === undefined) return h("span.muted", "no budget");
  const ratio = budget > 0 ? spent / budget : 1;
  const pct = Math.min(100, Math.round(ratio * 100));
  const level = ratio >= 1 ? "over" : ratio >= 0.8 ? "warn" : "ok";
  return h("div.budget",
    h("div.bar", { role: "meter", "aria-valuemin": 0, "aria-valuemax": budget, "aria-valuenow": spent ?? 0,
      "aria-label": `${label}: ${fmt.usd(spent ?? 0)} of ${fmt.usd(budget)}` },
    h(`span.fill.${level}`, { style: { width: `${pct}%` } })),
    h("span.budget-text", `${fmt.usd(spent ?? 0)} / ${fmt.usd(budget)}`));
}

export function heading(title, ...extra) {
  return h("div.page-head", h("h1", { tabindex: -1 }, title), ...extra);
}
