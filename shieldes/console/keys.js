// Keys and teams: create (the secret is shown once), revoke, rotate, edit limits and budgets, and
// spend against budget bars.
import { api, h, fmt, qs, table, heading, field, budgetBar, toast, errorBox, session } from "./core.js";
import { expiryPicker, localTitle } from "./expiry.js";

const PERIODS = ["1d", "7d", "30d", "1mo"];
// Keys are read a page at a time (by name, as GET /admin/v1/keys orders them): a cluster of a
// million keys lists its first page at once, "More keys" reads on, and the search box asks the
// node for the names holding the text instead of the browser filtering what it has.
const PAGE = 100;

// The periods offered, with the one a key or team already has (the CLI takes any Nd up to 366d):
// a select without it would show the first option and Save would write that period.
function periods(current) {
  return current && !PERIODS.includes(current) ? [...PERIODS, current] : PERIODS;
}

// Teams are chosen the same way (10,000 of them do not fit one select): the Team select offers a
// page of names as GET /admin/v1/teams orders them, "Find a team" asks the node for the names
// holding the text, and "More teams" reads on.
const TEAM_PAGE = 100;

// The teams offered: "no team", the key's own (or the chosen one) wherever the pages read stand,
// then the names read. Without the chosen name among them Save would take the key out of its team.
function teamOptions(names, chosen) {
  const listed = chosen && !names.includes(chosen) ? [chosen, ...names] : names;
  return [{ value: "", label: "no team" }, ...listed.map((n) => ({ value: n, label: n }))];
}

// The budget fields of a create: a period goes only with an amount (the API refuses a
// `budget_period` without a `budget`, rather than ignore it).
function budgetFields(amountText, period) {
  const budget = numberOrNull(amountText);
  return budget === null ? { budget: null } : { budget, budget_period: period };
}

// What a write says besides its result (the admin API's `unpriced_models` and `warnings` of one or
// more answers), each in words that say what to do. `team`: the answers are of that team's budget.
function writeNotes(answers, team = null) {
  const unpriced = [...new Set(answers.flatMap((a) => (a && a.unpriced_models) || []))];
  const notes = [];
  if (unpriced.length) {
    const them = unpriced.length === 1 ? "it" : "them";
    const model = unpriced.length === 1 ? unpriced[0] : "MODEL";
    // prices are set with the CLI or the API: the console shows the overrides (Providers) but has no price form
    const price = `Have an admin set a price for ${them} (\`shieldes pricing set ${model} --input USD_PER_1M `
      + `--output USD_PER_1M\`, or PUT /admin/v1/pricing/${model}; the console lists prices on the Providers page `
      + "but does not set them)";
    notes.push(team
      ? `No price for ${unpriced.join(", ")}: while team ${team}'s budget applies, its keys' requests for ${them} `
        + `are refused (403 model_not_priced). ${price}, or leave ${them} out of those keys' models (Edit on each key).`
      : `No price for ${unpriced.join(", ")}: while a budget applies to this key (its own or its team's), `
        + `requests for ${them} are refused (403 model_not_priced). ${price}, or leave ${them} out of the key's `
        + "models (Edit).");
  }
  const warnings = answers.flatMap((a) => (a && a.warnings) || []);
  for (const w of warnings) notes.push(w.charAt(0).toUpperCase() + w.slice(1));
  // a key's write warns only of allowed models no provider serves (a rotation's warning is said
  // apart): adding a provider is not done in the console, so say where it is done and why
  if (warnings.length) {
    notes.push("An admin adds providers with `shieldes provider add` (or POST /admin/v1/providers): the console's "
      + "Providers page shows them but does not change them, as a provider's API key is given on the command line "
      + "or as a variable set where the nodes run.");
  }
  return [...new Set(notes)];
}

// a text with what it quotes in `backticks` (a command, a field) as code
function withCode(text) {
  return text.split("`").map((part, i) => (i % 2 ? h("code", part) : part));
}

function notesList(notes) {
  return h("ul.notes", notes.map((n) => h("li", withCode(n))));
}

function splitList(text) {
  const items = text.split(",").map((v) => v.trim()).filter(Boolean);
  return items.length ? items : null;
}

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

function select(name, choices, value) {
  return h("select", { name }, options(choices, value));
}

function options(choices, value) {
  return choices.map((o) => h("option", { value: o.value ?? o, selected: (o.value ?? o) === value }, o.label ?? o));
}

// The Team field of a key's form: `fields` go in the form's grid, `value()` is the name chosen
// ("" for no team). `current` is the key's team when editing: it stays chosen until changed.
function teamPicker(current) {
  let chosen = current || "";
  let search = "";
  let names = [];
  let next = null;  // the cursor of the next page of teams, null at the end
  let asked = 0;  // the latest read: an answer to an earlier search is dropped
  let timer = null;
  const choice = h("select", { name: "team" });
  const find = h("input", { name: "team_search", type: "search", placeholder: "part of a name", autocomplete: "off",
    spellcheck: "false" });
  const count = h("small.hint.team-count");
  const moreTeams = h("button.more-teams", { type: "button", hidden: true, onclick: () => read(next) }, "More teams");
  const teamField = field("Team", choice);
  teamField.append(count, moreTeams);

  function draw() {
    choice.replaceChildren(...options(teamOptions(names, chosen), chosen));
    choice.value = chosen;
    count.textContent = !names.length ? (search ? `No team name holds \u201c${search}\u201d.` : "No teams yet.")
      : next ? `The first ${fmt.num(names.length)} teams${search ? " found" : ""} by name.`
        : `${fmt.num(names.length)} ${names.length === 1 ? "team" : "teams"}${search ? " found" : ""}.`;
    moreTeams.hidden = !next;
  }

  async function read(after) {
    const mine = ++asked;
    try {
      const page = await api("GET", `/teams${qs({ limit: TEAM_PAGE, search, after })}`);
      if (mine !== asked) return;
      names = (after ? names : []).concat(page.data.map((t) => t.name));
      next = page.has_more ? page.next_after : null;
      draw();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  function findNow() {
    clearTimeout(timer);
    search = find.value.trim();
    read(null);
  }

  choice.addEventListener("change", () => { chosen = choice.value; });
  find.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(findNow, 250); });
  find.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); findNow(); }  // (Enter here does not submit the key's form)
  });
  draw();
  read(null);
  return {
    fields: [field("Find a team", find), teamField],
    value: () => choice.value,
    reset() { chosen = current || ""; find.value = ""; search = ""; read(null); },
    refresh: () => read(null),  // (a team created meanwhile shows up where its name sorts)
  };
}

export async function keysPage(root) {
  const canKeys = session.can("keys:write");
  const canAdmin = session.can("admin");
  const secretArea = h("div");
  const notesArea = h("div");  // what the last save said besides "saved", until dismissed
  const keysArea = h("div");
  const teamsArea = h("div");
  const editArea = h("div");
  // #/keys?search=NAME (a request's key, opened from the request log): that key, revoked or not
  const asked = new URLSearchParams((location.hash.split("?")[1]) || "").get("search");
  let showRevoked = !!asked;
  let search = asked || "";
  let shown = [];  // the keys listed so far, the pages read in order
  let next = null;  // the cursor of the next page, null at the end of the list
  let teamsShown = [];  // the Teams table, read a page at a time as the keys are
  let teamsNext = null;
  let createPicker = null;  // the create form's team choice, read again when a team is created

  function keysPath(after) {
    return `/keys${qs({ limit: PAGE, status: showRevoked ? "all" : "active", search, after })}`;
  }

  async function load() {
    try {
      const [keys, teamList] = await Promise.all([api("GET", keysPath(null)), api("GET", `/teams${qs({ limit: PAGE })}`)]);
      shown = keys.data;
      next = keys.has_more ? keys.next_after : null;
      teamsShown = teamList.data;
      teamsNext = teamList.has_more ? teamList.next_after : null;
      renderKeys();
      renderTeams();
      if (createPicker) createPicker.refresh();
    } catch (err) {
      keysArea.replaceChildren(errorBox(err));
    }
  }

  async function more() {
    try {
      const page = await api("GET", keysPath(next));
      shown = shown.concat(page.data);
      next = page.has_more ? page.next_after : null;
      renderKeys();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function moreTeams() {
    try {
      const page = await api("GET", `/teams${qs({ limit: PAGE, after: teamsNext })}`);
      teamsShown = teamsShown.concat(page.data);
      teamsNext = page.has_more ? page.next_after : null;
      renderTeams();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  function showNotes(title, notes) {
    if (!notes.length) { notesArea.replaceChildren(); return; }
    const head = h("h2#notes-title", { tabindex: -1 }, title);
    notesArea.replaceChildren(h("section.panel.notes-panel", { role: "alert", "aria-labelledby": "notes-title" },
      head, notesList(notes),
      h("button", { type: "button", onclick: () => notesArea.replaceChildren() }, "Dismiss")));
    head.focus();
  }

  // `expired`: a rotated key whose expiry has passed. The rotation's only warning (its new secret is
  // refused until the expiry moves) is said here in the console's words, with the Edit that moves it.
  function showSecret(title, row, expired = false) {
    const notes = expired ? [] : writeNotes([row]);
    const extend = expired ? h("div.notes-panel.inline.expired-note", h("h3", "Warning"),
      h("p", `${row.name} expired at ${fmt.time(row.expires_at)}: its new secret is refused (401) like the old one `
        + "until its expiry is extended. Edit the key and extend its expiry, or clear it for a key that never expires."),
      h("button", { type: "button", onclick: () => edit(row, true) }, `Edit ${row.name}`)) : null;
    const code = h("code.secret", { tabindex: 0 }, row.key);
    const copy = h("button", { type: "button", onclick: async () => {
      try { await navigator.clipboard.writeText(row.key); toast("Copied to the clipboard."); } catch { toast("Select the key and copy it.", "warn"); }
    } }, "Copy");
    const done = h("button.primary", { type: "button", onclick: () => secretArea.replaceChildren() }, "I have stored it");
    secretArea.replaceChildren(h("section.panel.secret-panel", { role: "alert", "aria-labelledby": "secret-title" },
      h("h2#secret-title", title),
      h("p", "This is the only time the key is shown. Store it now: only its hash is kept."),
      h("div.secret-row", code, copy),
      ...(notes.length ? [h("div.notes-panel.inline", h("h3", "Warning"), notesList(notes))] : []), extend, done));
    done.focus();
  }

  async function act(label, fn) {
    try {
      await fn();
      toast(label);
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  function renderKeys() {
    const rows = shown;
    const cols = [
      { label: "Name", header: true, cls: "name", cell: (k) => k.name },
      { label: "Prefix", cell: (k) => h("code", `${k.prefix}…`) },
      { label: "Status", cell: (k) => h(`span.badge.${k.status === "active" ? "ok" : "bad"}`, k.status) },
      { label: "Team", cls: "name narrow", cell: (k) => k.team || "–" },
      { label: "Models", cls: "fit", cell: (k) => fmt.list(k.models) },
      ...(rows.some((k) => k.mcp && k.mcp.length) ? [{ label: "MCP", cls: "fit", cell: (k) => (k.mcp && k.mcp.length ? k.mcp.join(", ") : h("span.muted", "none")) }] : []),
      { label: "RPM", num: true, cell: (k) => fmt.num(k.rpm) },
      { label: "TPM", num: true, cell: (k) => fmt.num(k.tpm) },
      { label: "Spend / budget", cls: "stacked", cell: (k) => budgetBar(k.spend_usd_in_period, k.budget_usd, `Spend of ${k.name} this ${k.budget_period || ""} period`) },
      ...(rows.some((k) => k.expires_at) ? [{ label: "Expires", cls: "fit", cell: (k) => (k.expires_at
        ? h("time", { datetime: k.expires_at, title: localTitle(k.expires_at) }, fmt.time(k.expires_at)) : h("span.muted", "never")) }] : []),
    ];
    if (canKeys) {
      cols.push({ label: "Actions", cell: (k) => k.status === "revoked" ? h("span.muted", "–") : h("div.actions",
        h("button", { type: "button", "aria-label": `Edit ${k.name}`, onclick: () => edit(k) }, "Edit"),
        h("button", { type: "button", "aria-label": `Rotate ${k.name}`, onclick: async () => {
          if (!confirm(`Rotate ${k.name}? The current secret stops working at once.${k.status === "expired"
            ? " The key has expired: the new secret is refused too until you extend its expiry (Edit)." : ""}`)) return;
          try {
            const row = await api("POST", `/keys/${encodeURIComponent(k.id)}/rotate`);
            showSecret(`New secret for ${row.name}`, row, row.status === "expired");
            await load();
          } catch (err) { toast(err.message, "error"); }
        } }, "Rotate"),
        h("button.danger", { type: "button", "aria-label": `Revoke ${k.name}`, onclick: () => {
          if (!confirm(`Revoke ${k.name}? Every node refuses it within milliseconds.`)) return;
          act(`Revoked ${k.name}.`, () => api("POST", `/keys/${encodeURIComponent(k.id)}/revoke`));
        } }, "Revoke")) });
    }
    const toggle = h("label.inline", h("input", { type: "checkbox", checked: showRevoked, onchange: (ev) => { showRevoked = ev.target.checked; load(); } }), " Show revoked and expired keys");
    const find = h("input", { name: "search", type: "search", value: search, placeholder: "part of a name", autocomplete: "off", spellcheck: "false" });
    const finder = h("form.toolbar.key-search", { role: "search", "aria-label": "Find keys" },
      field("Find a key", find), h("button", { type: "submit" }, "Find"), toggle);
    finder.addEventListener("submit", (ev) => {
      ev.preventDefault();
      search = find.value.trim();
      load();
    });
    const empty = search ? `No key name holds \u201c${search}\u201d: check the spelling, or clear the search to list every key.`
      : canKeys ? "No keys yet: create one with the form above (\u201cNew key\u201d on a phone) or `shieldes key create`."
        : "No keys yet: an operator or admin creates them, here or with `shieldes key create`.";
    // an expired key is refused (401) whatever its secret: say so, and who can extend it and where
    const expired = rows.filter((k) => k.status === "expired").map((k) => k.name);
    const expiredNote = !expired.length ? "" : h("p.role-note.expired-keys", { role: "note" }, withCode(
      `Expired, refused (401) until its expiry is extended: ${expired.join(", ")}. `
      + (canKeys ? "Edit the key and extend its expiry (or clear it: never expires)."
        : `An operator or admin extends it (Edit on this page, or \`shieldes key update NAME --expires-in 30d\`); your role (${session.me.role}) cannot.`)));
    const count = h("p.muted.small.key-count", next ? `The first ${fmt.num(rows.length)} keys by name.` : `${fmt.num(rows.length)} ${rows.length === 1 ? "key" : "keys"}.`);
    keysArea.replaceChildren(finder, expiredNote, table("Virtual keys", cols, rows, { empty }), count,
      ...(next ? [h("button.more-keys", { type: "button", onclick: more }, "More keys")] : []));
  }

  function renderTeams() {
    const rows = teamsShown;
    const count = h("p.muted.small.teams-count", teamsNext ? `The first ${fmt.num(rows.length)} teams by name.`
      : `${fmt.num(rows.length)} ${rows.length === 1 ? "team" : "teams"}.`);
    teamsArea.replaceChildren(h("h2", "Teams"), table("Teams", [
      { label: "Name", header: true, cls: "name", cell: (t) => t.name },
      { label: "Active keys", num: true, cell: (t) => fmt.num(t.keys) },
      { label: "Spend / budget", cell: (t) => budgetBar(t.spend_usd_in_period, t.budget_usd, `Spend of team ${t.name}`) },
      { label: "Period", cell: (t) => t.budget_period || "–" },
      ...(canKeys ? [{ label: "Actions", cell: (t) => h("button", { type: "button", "aria-label": `Edit the budget of ${t.name}`,
        onclick: () => editTeamBudget(t) }, "Edit budget") }] : []),
    ], rows, { empty: canAdmin ? "No teams yet: create one with the form below, then put keys in it."
      : "No teams yet: an admin creates them, on this page or with `shieldes team create`." }), count,
    ...(teamsNext ? [h("button.more-teams-listed", { type: "button", onclick: moreTeams }, "More teams")] : []),
    ...(canAdmin ? [teamForm()] : [h("p.muted.small.role-note", withCode(`Creating teams needs the admin role (this token's is ${session.me.role}): `
      + "an admin creates them, here or with `shieldes team create`."))]));
  }

  // An edit form's buttons: Save submits it, Cancel closes it.
  function saveOrCancel() {
    return h("div.actions", h("button.primary", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: () => editArea.replaceChildren() }, "Cancel"));
  }

  // A team's budget (PUT /admin/v1/budgets/team/..., keys:write as a key's): its answer names the
  // models the team's keys may use that have no price, refused under the budget, as a key's does.
  function editTeamBudget(t) {
    const budget = h("input", { name: "budget", type: "number", min: 0, step: "0.01", inputmode: "decimal", value: t.budget_usd ?? "" });
    const period = select("budget_period", periods(t.budget_period), t.budget_period || "30d");
    const error = h("p.error", { role: "alert" });
    const form = h("form.panel.team-budget", { "aria-labelledby": "edit-title" },
      h("h2#edit-title", `Budget of team ${t.name}`),
      h("div.grid", field("Budget (USD)", budget, "per period, for all the team's keys; empty removes the budget"),
        field("Budget period", period)),
      error,
      saveOrCancel());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const amount = numberOrNull(budget.value);
      const ref = encodeURIComponent(t.id);
      try {
        const answers = [];
        if (amount === null) { if (t.budget_usd !== null) await api("DELETE", `/budgets/team/${ref}`); }
        else answers.push(await api("PUT", `/budgets/team/${ref}`, { amount_usd: amount, period: period.value }));
        editArea.replaceChildren();
        toast(`Saved the budget of team ${t.name}.`);
        await load();
        showNotes(`Saved the budget of team ${t.name}, but note:`, writeNotes(answers, t.name));
      } catch (err) {
        error.textContent = err.message;
      }
    });
    editArea.replaceChildren(form);
    editArea.scrollIntoView({ block: "start" });
    budget.focus();
  }

  function teamForm() {
    const name = h("input", { name: "name", required: true });
    // "optional" as a placeholder, not a hint under the field: the form's fields sit on one line,
    // and a hint makes one field taller than the others (its label then sits above theirs)
    const budget = h("input", { name: "budget", type: "number", min: 0, step: "0.01", inputmode: "decimal",
      placeholder: "optional" });
    const period = select("budget_period", PERIODS, "30d");
    const form = h("form.inline-form", { "aria-label": "Create a team" },
      field("Team name", name), field("Budget (USD)", budget), field("Period", period),
      h("button", { type: "submit" }, "Create team"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(`Created team ${name.value}.`, () => api("POST", "/teams", { name: name.value.trim(), ...budgetFields(budget.value, period.value) }));
    });
    return form;
  }

  function createForm() {
    const name = h("input", { name: "name", required: true, autocomplete: "off" });
    const models = h("input", { name: "models", placeholder: "all models" });
    const mcp = h("input", { name: "mcp", placeholder: "none" });
    const rpm = h("input", { name: "rpm", type: "number", min: 1, inputmode: "numeric" });
    const tpm = h("input", { name: "tpm", type: "number", min: 1, inputmode: "numeric" });
    const budget = h("input", { name: "budget", type: "number", min: 0, step: "0.01", inputmode: "decimal" });
    const period = select("budget_period", PERIODS, "30d");
    const team = teamPicker(null);
    createPicker = team;
    const error = h("p.error", { role: "alert" });
    const expires = expiryPicker(null, error);
    const form = h("form.panel.create-key#create-key", { "aria-labelledby": "create-title" },
      h("h2#create-title", "Create a key"),
      h("div.grid",
        field("Name", name), field("Models", models, "comma-separated; empty allows every model"),
        field("MCP servers and tools", mcp, "SERVER, SERVER/TOOL or *; empty: none"),
        field("Requests per minute", rpm, "cluster-wide; empty: no limit"), field("Tokens per minute", tpm),
        field("Budget (USD)", budget, "per period; empty: no budget"), field("Budget period", period), ...team.fields,
        ...expires.fields),
      error, h("button.primary", { type: "submit" }, "Create key"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const expiry = expires.read();
      if (expiry.error) { error.textContent = expiry.error; expires.input.focus(); return; }
      const body = { name: name.value.trim(), models: splitList(models.value), rpm: numberOrNull(rpm.value),
        tpm: numberOrNull(tpm.value), ...budgetFields(budget.value, period.value), team: team.value() || null };
      const access = splitList(mcp.value);  // (null when empty: no MCP access)
      if (access) body.mcp = access;
      if (expiry.value) body.expires_at = expiry.value;
      try {
        const row = await api("POST", "/keys", body, { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) });
        form.reset();
        team.reset();
        expires.refresh();
        unfold(false);
        showSecret(`Key ${row.name} created`, row);
        await load();
      } catch (err) {
        error.textContent = err.message;
      }
    });
    return form;
  }

  // `atExpiry`: opened to extend an expired key's expiry (from its rotation's warning)
  function edit(k, atExpiry = false) {
    const models = h("input", { name: "models", value: k.models ? k.models.join(", ") : "", placeholder: "all models" });
    const mcp = h("input", { name: "mcp", value: k.mcp ? k.mcp.join(", ") : "", placeholder: "none" });
    const rpm = h("input", { name: "rpm", type: "number", min: 1, value: k.rpm ?? "" });
    const tpm = h("input", { name: "tpm", type: "number", min: 1, value: k.tpm ?? "" });
    const budget = h("input", { name: "budget", type: "number", min: 0, step: "0.01", value: k.budget_usd ?? "" });
    const period = select("budget_period", periods(k.budget_period), k.budget_period || "30d");
    const team = teamPicker(k.team);
    const error = h("p.error", { role: "alert" });
    const expires = expiryPicker(k.expires_at, error);
    const form = h("form.panel", { "aria-labelledby": "edit-title" },
      h("h2#edit-title", `Edit ${k.name}`),
      h("div.grid", field("Models", models, "empty allows every model"),
        field("MCP servers and tools", mcp, "SERVER, SERVER/TOOL or *; empty: none"),
        field("Requests per minute", rpm, "empty: no limit"),
        field("Tokens per minute", tpm, "empty: no limit"), ...team.fields,
        field("Budget (USD)", budget, "empty removes the budget"), field("Budget period", period), ...expires.fields),
      error,
      saveOrCancel());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const ref = encodeURIComponent(k.id);
      const patch = {};
      const newModels = splitList(models.value);
      if (JSON.stringify(newModels) !== JSON.stringify(k.models)) patch.models = newModels;
      const newMcp = splitList(mcp.value) || [];
      if (JSON.stringify(newMcp) !== JSON.stringify(k.mcp || [])) patch.mcp = newMcp;
      if (numberOrNull(rpm.value) !== k.rpm) patch.rpm = numberOrNull(rpm.value);
      if (numberOrNull(tpm.value) !== k.tpm) patch.tpm = numberOrNull(tpm.value);
      if ((team.value() || null) !== k.team) patch.team = team.value() || null;
      if (expires.changed()) {
        const expiry = expires.read();
        if (expiry.error) { error.textContent = expiry.error; expires.input.focus(); return; }
        patch.expires_at = expiry.value;
      }
      const newBudget = numberOrNull(budget.value);
      const answers = [];  // their unpriced models and warnings are said once saved
      try {
        if (Object.keys(patch).length) answers.push(await api("PATCH", `/keys/${ref}`, patch));
        if (newBudget === null && k.budget_usd !== null) await api("DELETE", `/budgets/key/${ref}`);
        else if (newBudget !== null && (newBudget !== k.budget_usd || period.value !== k.budget_period)) {
          answers.push(await api("PUT", `/budgets/key/${ref}`, { amount_usd: newBudget, period: period.value }));
        }
        editArea.replaceChildren();
        toast(`Saved ${k.name}.`);
        await load();
        showNotes(`Saved ${k.name}, but note:`, writeNotes(answers));
      } catch (err) {
        error.textContent = err.message;
      }
    });
    editArea.replaceChildren(form);
    if (atExpiry) { expires.input.scrollIntoView({ block: "center" }); expires.input.focus(); } else models.focus();
  }

  // On a phone an operator opens Keys for the list: the create form folds behind a "New key"
  // button in the page's head (app.css shows the button and folds the form up to 640 px only, so a
  // desktop keeps the form open above the list as before).
  const newKey = canKeys ? h("button.phone-only.new-key", { type: "button", "aria-expanded": "false",
    "aria-controls": "create-key", onclick: () => unfold(newKey.getAttribute("aria-expanded") !== "true") }, "New key") : null;
  function unfold(open) {
    const form = root.querySelector("#create-key");
    if (!newKey || !form) return;
    form.classList.toggle("open", open);
    newKey.setAttribute("aria-expanded", String(open));
    if (open) form.querySelector("input").focus();
  }

  // a role that reads keys but may not change them is told so, rather than left to wonder where the buttons are
  const readOnly = canKeys ? null : h("p.role-note", { role: "note" },
    `Read only: your role (${session.me.role}) lists keys and teams; creating, editing, rotating and revoking keys `
    + "and setting team budgets needs the operator or admin role. Sign out and sign in with such a token to change them.");
  root.replaceChildren(heading("Keys & teams", newKey), readOnly || "", secretArea, notesArea, editArea, keysArea, teamsArea);
  await load();
  if (canKeys) root.insertBefore(createForm(), keysArea);
  return null;
}
