// The console shell: sign-in (token or SSO), navigation between pages, and the live refresh loop.
import { activity, api, session, h, toast, errorBox } from "./core.js";
import { overviewPage } from "./overview.js";
import { keysPage } from "./keys.js";
import { usagePage } from "./usage.js";
import { auditPage } from "./audit.js";
import { providersPage } from "./providers.js";
import { requestsPage } from "./requests.js";
import { sessionsPage } from "./sessions.js";

const PAGES = {
  overview: overviewPage, keys: keysPage, usage: usagePage, requests: requestsPage, audit: auditPage,
  providers: providersPage, sessions: sessionsPage,
};
const main = () => document.getElementById("main");
// The page on screen ({stop()} or null) and the number of the latest navigation: a page that
// finishes loading after the user moved on is stopped and never touches the screen.
const view = { current: null, seq: 0 };
// A console signed in with an admin token forgets it once unused for the nodes' idle timeout
// (whoami's idle_seconds, SHIELDES_OIDC_IDLE_SECONDS): the token stays valid for the CLI, but an
// unattended screen is not left signed in. The nodes themselves refuse an idle SSO session.
const idle = { timer: null };
const SIGNED_OUT = "shieldes.signed_out"; // what the sign-in form says after the provider's logout

// After SSO the node sends the browser to /ui/#sso with the session in an HttpOnly cookie only this
// browser holds; the page redeems it with a same-origin POST. A session is never read from the
// address: a link carrying one (#session=...) would sign whoever opens it in as someone else.
// A 503 (the database did not confirm the sign-in) is tried again with the same random key: a
// sign-in that was written after all is then finished, not refused as redeemed already.
const SSO_RETRIES_MS = [700, 2000];
async function finishSso() {
  const sso = location.hash === "#sso";
  if (sso || location.hash.startsWith("#session=")) history.replaceState(null, "", "/ui/");
  if (!sso) return null;
  const key = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  const redeem = () => fetch("/ui/oidc/session", { method: "POST", credentials: "same-origin",
                                                   headers: { "Idempotency-Key": key } });
  let resp = await redeem();
  for (const ms of SSO_RETRIES_MS) {
    if (resp.status !== 503) break;
    await new Promise((done) => setTimeout(done, ms));
    resp = await redeem();
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok || !data || !data.session) {
    throw new Error((data && data.error && data.error.message) || `The SSO sign-in could not be finished (HTTP ${resp.status}); sign in again.`);
  }
  session.token = data.session;
  session.idToken = data.id_token;
  return data.session;
}

// `message`: why the user is here (a refusal, in the alert); `notice`: news that is not an error
async function signInView(message, notice) {
  stopPage();
  clearInterval(idle.timer);
  view.seq += 1;
  const m = main();
  delete m.dataset.page;
  m.removeAttribute("aria-busy");
  session.token = null;
  session.me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("p.error", { role: "alert" }, message || "");
  const form = h("form.panel.signin", { "aria-labelledby": "signin-title" },
    h("h1#signin-title", "Sign in"),
    h("p", "Use an admin token: SHIELDES_ADMIN_TOKEN or one made with ", h("code", "shieldes admin-token create"), "."),
    h("div.field", h("label", { for: "token" }, "Admin token"), Object.assign(input, { id: "token" })),
    notice ? h("p.notice", { role: "status" }, notice) : null,
    status,
    h("button.primary", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    session.token = input.value.trim();
    try {
      await start();
    } catch (err) {
      session.token = null;
      status.textContent = refused(err);
      input.focus();
    }
  });
  m.replaceChildren(form);
  try {
    const opts = await (await fetch("/ui/sign-in.json")).json();
    if (opts.oidc) {
      form.append(h("p.or", "or"), h("a.button", { href: "/ui/oidc/login" }, "Sign in with SSO"));
    }
  } catch { /* the token form still works */ }
  input.focus();
}

// Why a token did not sign in, in the console's words: the API's 401 speaks of headers to send.
function refused(err) {
  if (err.status !== 401) return err.message;
  return "This token was refused: it is mistyped, revoked or not an admin token. Use the nodes' "
    + "SHIELDES_ADMIN_TOKEN or a token from `shieldes admin-token create`.";
}

function stopPage() {
  if (view.current && view.current.stop) view.current.stop();
  view.current = null;
}

// The pages this principal's role may open (an auditor sees usage and the audit log only).
function allowedPages() {
  return [...document.querySelectorAll("#nav a")]
    .filter((a) => PAGES[a.dataset.page] && session.can(a.dataset.scope)).map((a) => a.dataset.page);
}

// The roles that open each nav scope (shieldes/roles.py), named in a refusal so the user knows what to ask for.
const ROLES_FOR = { read: "viewer, operator or admin", usage: "auditor, viewer, operator or admin",
  audit: "auditor, viewer, operator or admin", admin: "admin" };

function refusal(page) {
  const link = document.querySelector(`#nav a[data-page="${page}"]`);
  const title = link ? link.textContent : page;
  const roles = link ? ROLES_FOR[link.dataset.scope] || "another" : "another";
  return `The ${title} page needs the ${roles} role; this token's role is ${session.me.role}. `
    + "Sign out and sign in with such a token to open it.";
}

async function route() {
  // pages live at #/<name>; any other fragment is a place on the current page (the skip link's #main)
  if (!session.me || (location.hash && !location.hash.startsWith("#/"))) return;
  const allowed = allowedPages();
  const asked = (location.hash.match(/^#\/(\w+)/) || [])[1];
  let name = asked || allowed[0];
  if (!allowed.includes(name) || !PAGES[name]) name = allowed[0];
  // a link to a page this role may not open lands on its first page, saying why (not a silent switch)
  const denied = asked && asked !== name && PAGES[asked] ? refusal(asked) : null;
  if (denied) history.replaceState(null, "", `/ui/#/${name}`);
  const page = PAGES[name];
  stopPage();
  const seq = ++view.seq;
  document.getElementById("toast").className = "toast";
  if (denied) toast(denied, "warn");
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const m = main();
  m.dataset.page = name;
  m.setAttribute("aria-busy", "true"); // until the page's data is in: tests and screen readers wait on it
  m.replaceChildren(h("p.muted", "Loading…"));
  let shown = null;
  let failed = null;
  try {
    shown = (await page(m)) || null;
  } catch (err) {
    failed = err;
  }
  if (seq !== view.seq) { // the user moved on while this page loaded
    if (shown && shown.stop) shown.stop();
    return;
  }
  view.current = shown;
  if (failed) m.replaceChildren(errorBox(failed));
  const title = m.querySelector("h1");
  if (title) title.focus({ preventScroll: true });
  document.title = `${title ? title.textContent : "shieldes"} · shieldes console`;
  m.removeAttribute("aria-busy");
}

async function start() {
  session.me = await api("GET", "/whoami");
  document.getElementById("nav").hidden = false;
  for (const a of document.querySelectorAll("#nav a")) {
    a.parentElement.hidden = !PAGES[a.dataset.page] || !session.can(a.dataset.scope);
  }
  const who = document.getElementById("who");
  who.hidden = false;
  document.getElementById("who-name").textContent = `${session.me.name} · ${session.me.role} · node ${session.me.node_id}`;
  if (!location.hash.startsWith("#/")) history.replaceState(null, "", `/ui/#/${allowedPages()[0]}`);
  watchIdle(session.me);
  await route();
}

function watchIdle(me) {
  clearInterval(idle.timer);
  if (me.kind === "oidc" || !(me.idle_seconds > 0)) return;
  const limit = me.idle_seconds * 1000;
  idle.timer = setInterval(() => {
    if (Date.now() - activity.at < limit) return;
    signInView(`Signed out: this console was unused for longer than the idle timeout (${me.idle_seconds} s, `
      + "SHIELDES_OIDC_IDLE_SECONDS). The token itself stays valid; sign in again to go on.");
  }, Math.min(1000, limit));
}

window.addEventListener("hashchange", route);
document.querySelector("a.skip").addEventListener("click", (ev) => {
  ev.preventDefault(); // focus the content without touching the address, which names the page
  main().focus();
});
window.addEventListener("shieldes:signed-out", (ev) => {
  // before the sign-in went through there is nothing to sign out of: the form says why it failed
  if (!session.me) return;
  signInView(session.me.kind === "oidc"
    ? (ev.detail && ev.detail.code === "session_role_gone" ? `Signed out: ${ev.detail.message}`
      : ev.detail && ev.detail.code === "session_idle"
      ? "Signed out: your SSO session was unused for longer than the idle timeout (SHIELDES_OIDC_IDLE_SECONDS). "
        + "Sign in again."
      : "Signed out: your SSO session ended (it expired after SHIELDES_OIDC_SESSION_SECONDS, or was signed out "
        + "or revoked by an administrator). Sign in again.")
    : "Signed out: the nodes no longer accept this token (revoked, or SHIELDES_ADMIN_TOKEN changed). "
      + "Sign in with an active token.");
});
document.getElementById("sign-out").addEventListener("click", async () => {
  // an SSO session is ended on every node (its token would otherwise stay valid until it expires)
  let note = "Signed out.";
  let provider = null;
  if (session.me && session.me.kind === "oidc") {
    try {
      const hint = session.idToken;
      const out = await api("POST", "/sign-out", hint ? { id_token_hint: hint } : {});
      note = "Signed out: this session is ended on every node.";
      provider = out.logout_url || null;
    } catch (err) {
      // the node's words on a 503 speak of the database: here what matters is what became of the session
      const why = err.status === 503 ? "the database did not confirm it" : err.message;
      note = `Signed out here, but the node could not end the session (${why}). This tab forgot it; unused, it `
        + "times out after SHIELDES_OIDC_IDLE_SECONDS, and an admin can revoke it now on the Sessions page.";
    }
  }
  signInView("");
  if (provider) {
    // signed in at the provider too: end that as well; it sends the browser back to /ui/, whose
    // sign-in form says what happened
    sessionStorage.setItem(SIGNED_OUT, `${note} You are signed out at your identity provider too.`);
    location.assign(provider);
  } else {
    toast(note);
  }
});

finishSso().then(() => {
  const note = sessionStorage.getItem(SIGNED_OUT); // back from the provider's logout
  sessionStorage.removeItem(SIGNED_OUT);
  if (session.token) start().catch((err) => signInView(refused(err))); else signInView("", note);
}, (err) => signInView(err.message));
