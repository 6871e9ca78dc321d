// Console sessions from SSO (admins only): who is signed in, and ending one session, or every
// session of a user, on every node (each end is in the audit log).
import { api, h, fmt, table, heading, errorBox, toast, qs, session } from "./core.js";

export async function sessionsPage(root) {
  const area = h("div");
  let showEnded = false;
  const toggle = h("label.inline", h("input", { type: "checkbox", onchange: (ev) => { showEnded = ev.target.checked; load(); } }),
    " Show ended and expired sessions");
  root.replaceChildren(heading("Sessions"),
    h("p.muted.small", "Console sessions from SSO sign-in. Revoking one signs its browser out at its next request, "
      + "on every node. Admin tokens are not sessions: revoke them with ", h("code", "shieldes admin-token revoke"), "."),
    toggle, area);

  async function act(done, call) {
    try {
      await call();
      toast(done, "ok");
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function load() {
    try {
      const data = await api("GET", `/sessions${qs({ status: showEnded ? "all" : "active" })}`);
      area.replaceChildren(table("Console sessions", [
        { label: "User", header: true, cls: "name", cell: (s) => (session.me && s.id === session.me.session
          ? [s.user, " ", h("span.muted.small", "(this session)")] : s.user) },
        { label: "Role", cell: (s) => s.role },
        { label: "Status", cell: (s) => h(`span.badge.${s.status === "active" ? "ok" : "bad"}`, s.status.replace("_", " ")) },
        { label: "Signed in", cell: (s) => fmt.time(s.started_at) },
        { label: "Expires", cell: (s) => fmt.time(s.expires_at) },
        { label: "", cls: "stack-phone", cell: (s) => (s.status !== "active" ? "" : [
          h("button.danger", { type: "button", "aria-label": `Revoke this session of ${s.user}`, onclick: () => {
            if (!confirm(`End this session of ${s.user}? Its browser is signed out at its next request.`)) return;
            act(`Ended a session of ${s.user}.`, () => api("POST", `/sessions/${encodeURIComponent(s.id)}/revoke`));
          } }, "Revoke"),
          " ",
          h("button", { type: "button", "aria-label": `Revoke every session of ${s.user}`, onclick: () => {
            if (!confirm(`End every session of ${s.user}?`)) return;
            act(`Ended every session of ${s.user}.`, () => api("POST", "/sessions/revoke", { user: s.user }));
          } }, "Revoke all of user")]) },
      ], data.data, { empty: showEnded ? "No console sessions held." : "Nobody is signed in with SSO." }));
    } catch (err) {
      area.replaceChildren(errorBox(err));
    }
  }

  await load();
  return null;
}
