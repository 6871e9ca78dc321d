// The audit trail: config changes (who, what, when), the config as it was at any change (step back
// and forth in time), and a diff between two points.
import { api, h, fmt, table, heading, field, qs, errorBox, plainJson, breakable } from "./core.js";

const KEYS_SHOWN = 50;

export async function auditPage(root) {
  const actor = h("input", { name: "actor" });
  const type = h("input", { name: "type", placeholder: "e.g. virtual_key" });
  const subject = h("input", { name: "subject" });
  const filters = h("form.toolbar", { "aria-label": "Audit filters" },
    field("Actor", actor), field("Type", type), field("Subject", subject), h("button", { type: "submit" }, "Filter"));
  const listArea = h("div");
  const asOfArea = h("section.panel", { "aria-labelledby": "asof-title", "aria-live": "polite" });
  const diffArea = h("section.panel", { "aria-labelledby": "diff-title", "aria-live": "polite" });
  root.replaceChildren(heading("Audit log"), filters, h("div.split", h("div", listArea), h("div", asOfArea, diffArea)));
  let rows = [];
  let next = null;
  let asOf = null; // a position, or null for now
  let diffFrom = null;

  async function loadEvents(more) {
    try {
      const page = await api("GET", `/audit${qs({ actor: actor.value.trim(), type: type.value.trim(), subject: subject.value.trim(), limit: 50, before: more ? next : null })}`);
      rows = more ? rows.concat(page.data) : page.data;
      next = page.next_before;
      renderList();
    } catch (err) {
      listArea.replaceChildren(errorBox(err));
    }
  }

  function renderList() {
    const t = table("Config changes, newest first", [
      { label: "#", num: true, header: true, cell: (r) => String(r.position) },
      { label: "When", cell: (r) => h("span", fmt.time(r.recorded_at).slice(0, 10), h("span.sub", fmt.time(r.recorded_at).slice(11))) },
      // on a phone the actor moves under the change, which wraps at its dots
      { label: "Actor", cls: "wide-only", cell: (r) => r.actor },
      { label: "Change", cls: "wrap-phone", cell: (r) => h("span",
        h("code", r.type.split(".").map((part, i) => (i ? [h("wbr"), `.${part}`] : part))),
        h("span.sub.name", r.subject || "–"), h("span.sub.phone-only", `by ${r.actor}`)) },
      { label: "Time travel", cls: "stack-phone", cell: (r) => h("div.actions",
        h("button", { type: "button", "aria-label": `Config as of change ${r.position}`, onclick: () => showAsOf(r.position) }, "As of"),
        h("button", { type: "button", "aria-label": `Diff from change ${r.position}`, onclick: () => showDiff(r.position) }, "Diff from")) },
    ], rows.map((r) => ({ ...r, attrs: { class: r.position === asOf ? "selected" : null, "data-position": r.position } })),
    { empty: "No config changes match: check the actor, type (such as virtual_key.created) and subject, or clear them." });
    listArea.replaceChildren(t);
    if (next) listArea.append(h("button", { type: "button", onclick: () => loadEvents(true) }, "Older changes"));
  }

  async function showAsOf(position) {
    asOf = position;
    // mark the row in place: re-drawing the list would take the focus off the button just pressed
    for (const tr of listArea.querySelectorAll("tr[data-position]")) tr.classList.toggle("selected", Number(tr.dataset.position) === position);
    let cfg;
    try {
      // the first keys by name and a count: a million keys would be hundreds of megabytes to draw
      cfg = await api("GET", `/config${qs({ at: position === null ? null : String(position), keys_limit: KEYS_SHOWN })}`);
    } catch (err) {
      asOfArea.replaceChildren(errorBox(err));
      return;
    }
    const positions = rows.map((r) => r.position).sort((a, b) => a - b);
    const idx = positions.indexOf(position);
    const earlier = position === null ? positions[positions.length - 1] : positions[idx - 1];
    const later = position === null ? undefined : positions[idx + 1];
    const when = position === null ? "now" : `change #${cfg.position}${cfg.recorded_at ? ` (${fmt.time(cfg.recorded_at)})` : ""}`;
    asOfArea.replaceChildren(
      h("h2#asof-title", "Config as of ", h("span#asof-point", when)),
      h("div.actions",
        h("button", { type: "button", disabled: earlier === undefined, onclick: () => showAsOf(earlier) }, "◀ Step back"),
        h("button", { type: "button", disabled: position === null, onclick: () => showAsOf(later === undefined ? null : later) }, "Step forward ▶"),
        h("button", { type: "button", disabled: position === null, onclick: () => showAsOf(null) }, "Now")),
      // (this column is two fifths of the page: names wrap sooner, long cells wrap, so it fits 1280 px)
      table("Keys", [
        { label: "Key", header: true, cls: "name narrow ident", cell: (k) => h("span", { title: k.name }, breakable(k.name)) },
        { label: "Status", cell: (k) => h(`span.badge.${k.revoked ? "bad" : "ok"}`, k.revoked ? "revoked" : "active") },
        { label: "RPM", num: true, cell: (k) => fmt.num(k.rpm) },
        { label: "Budget", num: true, cls: "fit", cell: (k) => (k.budget ? `${fmt.usd(k.budget.amount_usd)}/${k.budget.period}` : "–") },
      ], cfg.keys, { empty: "No keys at this point." }),
      ...(cfg.keys_total > cfg.keys.length ? [h("p.muted.small.keys-shown", `The first ${cfg.keys.length} of ${fmt.num(cfg.keys_total)} keys by name.`)] : []),
      table("Providers", [
        { label: "Provider", header: true, cls: "name narrow ident", cell: (p) => h("span", { title: p.name }, breakable(p.name)) },
        { label: "Models", cls: "fit", cell: (p) => p.models.join(", ") },
        { label: "Weight", num: true, cell: (p) => String(p.weight) },
      ], cfg.providers, { empty: "No providers at this point." }),
      h("p.muted.small", `${count(cfg.teams.length, "team")}, ${count(cfg.pricing.length, "price")}, ${count((cfg.admin_tokens || []).length, "admin token")} at this point.`));
  }

  async function showDiff(from) {
    diffFrom = from;
    let d;
    try {
      d = await api("GET", `/config/diff${qs({ from: String(from), to: asOf === null ? null : String(asOf) })}`);
    } catch (err) {
      diffArea.replaceChildren(h("h2#diff-title", "Diff"), errorBox(err));
      return;
    }
    diffArea.replaceChildren(
      h("h2#diff-title", `Changes from #${d.from.position} to #${d.to.position}`),
      h("p.muted.small", `${d.events} events; pick “As of” on a row to move the end point, “Diff from” to move the start.`),
      table("Changed entities", [
        // its kind over its name and who changed it under, so the fields have the room (their values
        // wrap anywhere); the name wraps between its parts, never inside a word
        { label: "Entity", header: true, cls: "name narrow ident", cell: (c) => h("span",
          h("span.sub.kind", c.kind), h("span", { title: `${c.kind} ${c.name}` }, breakable(c.name)),
          h("span.sub", "by ", c.events.map((e, i) => [i ? ", " : "", `#${e.position} `, breakable(e.actor)]))) },
        { label: "Change", cell: (c) => h(`span.badge.${c.change === "removed" ? "bad" : c.change === "added" ? "ok" : "warn"}`, c.change) },
        { label: "Fields", cls: "fit", cell: (c) => h("ul.fields", Object.entries(c.fields).map(([f, v]) =>
          h("li", h("code", f), `: ${plainJson(v.from)} → ${plainJson(v.to)}`))) },
      ], d.changes, { empty: "Nothing changed between these points." }));
  }

  filters.addEventListener("submit", (ev) => { ev.preventDefault(); loadEvents(false); });
  await loadEvents(false);
  await showAsOf(null);
  diffArea.replaceChildren(h("h2#diff-title", "Diff"), h("p.muted", "Choose “Diff from” on a change to see what changed since then."));
  return { stop() { diffFrom = null; } };
}

// "1 team", "2 teams"
function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
