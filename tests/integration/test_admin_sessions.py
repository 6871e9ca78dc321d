"""Console sessions from SSO end on every node: signing out, an admin's revocation through the API
and the CLI's `session revoke --user` append `oidc_session.ended`, and two nodes on one log refuse
the session's token once they apply it. Sign-ins and their ends are in the audit log with their
actors."""

from __future__ import annotations

import asyncio
import base64
from contextlib import AsyncExitStack

from shieldes.gateway.admin.oidc import HANDOFF_PATH
from tests.cli import ok, refused
from tests.fake_oidc import FakeOidc
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness, wait_until
from tests.integration.sso_client import handoff_cookie, redeem, sign_in

BOOT = "sessions-bootstrap-token-0123456789abcdef"


async def _refused_on(base: str, session: str, timeout: float = 5.0) -> None:
    """Wait until `base` refuses `session` (a node applies the event within milliseconds)."""
    seen: list[int] = []

    async def probe() -> None:
        seen.append((await AdminClient(base, session).get("/admin/v1/whoami"))[0])

    for _ in range(int(timeout / 0.05)):
        await probe()
        if seen[-1] == 401:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base} still accepts the session: {seen[-3:]}")


async def test_sessions_end_on_every_node_and_are_audited(database_url: str, idp: FakeOidc) -> None:
    oidc = idp.node_settings(oidc_role_map="platform=operator", admin_token=BOOT)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(harness(database_url, **oidc))
        b = await stack.enter_async_context(harness(database_url, providers=False, **oidc))
        admin_b = AdminClient(b.base, BOOT)

        # signing out ends the session on the other node too
        status, first = await sign_in(a.base)
        assert status == 200, first
        me = (await AdminClient(a.base, first).get("/admin/v1/whoami"))[1]
        assert me["kind"] == "oidc" and me["session"].startswith("ses_")
        await wait_until(lambda: me["session"] in b.node.projector.config.oidc_sessions)
        assert (await AdminClient(b.base, first).get("/admin/v1/whoami"))[0] == 200
        status, out = await AdminClient(a.base, first).post("/admin/v1/sign-out")
        assert status == 200 and out["signed_out"] is True and out["data"][0]["status"] == "signed_out"
        await _refused_on(b.base, first)
        assert (await AdminClient(a.base, first).get("/admin/v1/whoami"))[0] == 401

        # an admin lists the running sessions and revokes one by id on node B: node A refuses it
        status, second = await sign_in(a.base)
        status, listed = await admin_b.get("/admin/v1/sessions")
        await wait_until(lambda: len(b.node.projector.config.oidc_sessions) == 2)
        status, listed = await admin_b.get("/admin/v1/sessions")
        assert status == 200 and [(s["user"], s["role"], s["status"]) for s in listed["data"]] == [
            ("ana@example.com", "operator", "active")], listed
        status, everything = await admin_b.get("/admin/v1/sessions", status="all")
        assert [s["status"] for s in everything["data"]] == ["active", "signed_out"]
        sid = listed["data"][0]["id"]
        status, out = await admin_b.post(f"/admin/v1/sessions/{sid}/revoke")
        assert status == 200 and out["data"][0]["status"] == "revoked", out
        await _refused_on(a.base, second)
        status, again = await admin_b.post(f"/admin/v1/sessions/{sid}/revoke")
        assert status == 400 and "ended already" in again["error"]["message"], again
        # an operator may not list or end other people's sessions
        status, third = await sign_in(a.base)
        assert (await AdminClient(a.base, third).get("/admin/v1/sessions"))[0] == 403

        # the CLI ends every session of a user (the user removed from the provider's groups)
        rows = await asyncio.to_thread(ok, database_url, "session", "list", "--user", "ana@example.com")
        assert [r["status"] for r in rows] == ["active"]
        remote = {"SHIELDES_ADMIN_URL": b.base, "SHIELDES_ADMIN_TOKEN": BOOT}  # through a node's API
        assert await asyncio.to_thread(ok, database_url, "session", "list", "--user", "ana@example.com",
                                       env=remote) == rows
        listed_all = await asyncio.to_thread(ok, database_url, "session", "list", "--all", env=remote)
        assert [r["status"] for r in listed_all] == ["active", "revoked", "signed_out"]
        ended = await asyncio.to_thread(ok, database_url, "session", "revoke", "--user", "ana@example.com")
        assert [r["status"] for r in ended] == ["revoked"]
        await _refused_on(a.base, third)
        await _refused_on(b.base, third)
        line = await asyncio.to_thread(refused, database_url, "session", "revoke", "--user", "ana@example.com")
        assert "has no console session running" in line, line
        status, none = await admin_b.post("/admin/v1/sessions/revoke", {"user": "nobody@example.com"})
        assert status == 404 and none["error"]["code"] == "session_not_found"
        # an admin token has no session to end
        status, out = await admin_b.post("/admin/v1/sign-out")
        assert status == 200 and out["signed_out"] is False

        audit = a.sql("SELECT type, actor, subject FROM audit_log WHERE type LIKE 'oidc_session.%%' "
                      "ORDER BY position")
    user = "ana@example.com"
    assert audit == [
        ("oidc_session.started", f"oidc:{user}", user), ("oidc_session.ended", f"oidc:{user}", user),
        ("oidc_session.started", f"oidc:{user}", user), ("oidc_session.ended", "bootstrap-token", user),
        ("oidc_session.started", f"oidc:{user}", user), ("oidc_session.ended", "tester", user),
    ], audit


async def test_a_hand_off_is_redeemed_once_in_the_cluster(database_url: str, idp: FakeOidc) -> None:
    """A captured hand-off cookie replayed after the browser redeemed it, on the same node or on
    another behind the load balancer, signs nobody in; and the cookie holds no usable token."""
    oidc = idp.node_settings(oidc_role_map="platform=operator", admin_token=BOOT)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(harness(database_url, **oidc))
        b = await stack.enter_async_context(harness(database_url, providers=False, **oidc))
        cookie = await handoff_cookie(a.base)
        body = base64.urlsafe_b64decode(cookie.split(".")[0] + "==")
        assert b"shd-oidc-" not in body, body  # a thief reading the cookie finds no session token in it
        status, first = await redeem(a.base, cookie)
        assert status == 200 and first["session"].startswith("shd-oidc-"), first
        for base in (a.base, b.base):  # the replay, on the same node and on another
            status, again = await redeem(base, cookie)
            assert status == 401 and again["error"]["code"] == "oidc_no_sign_in", again
            assert "finished already" in again["error"]["message"], again
        # two redeems at once on two nodes: one wins
        cookie = await handoff_cookie(b.base)
        results = await asyncio.gather(redeem(a.base, cookie), redeem(b.base, cookie))
        assert sorted(r[0] for r in results) == [200, 401], results
        assert (await AdminClient(a.base, first["session"]).get("/admin/v1/whoami"))[0] == 200
        rows = a.sql("SELECT count(*) FROM audit_log WHERE type = 'oidc_session.started'")
        assert rows == [(2,)], rows
        # the request log's rows of the redeems name who signed in (a refused replay: nobody)
        writer = a.node.request_log
        assert writer is not None and await writer.flush_all(10)
        actors = a.sql("SELECT actor, status FROM request_log WHERE route = %s ORDER BY started_at", HANDOFF_PATH)
        assert actors[:2] == [("oidc:ana@example.com", 200), (None, 401)], actors


async def test_a_retry_of_the_pages_redeem_finishes_the_same_sign_in_and_nothing_else_does(
        database_url: str, idp: FakeOidc) -> None:
    """The page's redeem was written but its answer lost (a 503 after the COMMIT, a dropped
    connection): its retry with the same Idempotency-Key, on any node, finishes that sign-in; the
    cookie without the page's key, or with another, is still refused; one start in the log."""
    oidc = idp.node_settings(oidc_role_map="platform=operator", admin_token=BOOT)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(harness(database_url, **oidc))
        b = await stack.enter_async_context(harness(database_url, providers=False, **oidc))
        cookie = await handoff_cookie(a.base)
        status, first = await redeem(a.base, cookie, "page-key-1")
        assert status == 200, first  # ... and the answer never reached the page
        for base in (a.base, b.base):
            status, again = await redeem(base, cookie, "page-key-1")
            assert status == 200, again
            assert again["session"] != first["session"]  # a token of its own, for the same session
            who = await AdminClient(base, again["session"]).get("/admin/v1/whoami")
            assert who[0] == 200 and who[1]["session"] == (await AdminClient(a.base, first["session"]).get(
                "/admin/v1/whoami"))[1]["session"], who
        for key in (None, "a-thiefs-key"):  # a replay of the cookie alone
            status, replay = await redeem(b.base, cookie, key)
            assert status == 401 and replay["error"]["code"] == "oidc_no_sign_in", replay
        status, odd = await redeem(a.base, cookie, "x" * 201)
        assert status == 400 and "Idempotency-Key" in odd["error"]["message"], odd
        rows = a.sql("SELECT count(*) FROM audit_log WHERE type = 'oidc_session.started'")
        assert rows == [(1,)], rows


async def test_a_changed_role_map_takes_effect_on_sessions_signed_in(database_url: str, idp: FakeOidc) -> None:
    """The operator narrows SHIELDES_OIDC_ROLE_MAP (a rolling restart with the new value): a
    session signed in as admin is a viewer on a node with the new map at its next request, and
    refused on a node whose map no longer grants its groups any role."""
    oidc = idp.node_settings()
    async with harness(database_url, oidc_role_map="platform=admin", **oidc) as a:
        idp.user = {"sub": "u-1", "email": "ana@example.com", "roles": ["platform", *[f"g{i}" for i in range(300)]]}
        status, session = await sign_in(a.base)
        assert status == 200, session
        assert len(session) < 1000  # the 300 groups that grant nothing are not carried
        assert (await AdminClient(a.base, session).get("/admin/v1/whoami"))[1]["role"] == "admin"
        async with harness(database_url, providers=False, oidc_role_map="platform=viewer", **oidc) as b:
            status, me = await AdminClient(b.base, session).get("/admin/v1/whoami")
            assert status == 200 and me["role"] == "viewer", me
            assert (await AdminClient(b.base, session).post("/admin/v1/teams", {"name": "t"}))[0] == 403
        async with harness(database_url, providers=False, oidc_role_map="sre=admin", **oidc) as c:
            status, body = await AdminClient(c.base, session).get("/admin/v1/whoami")
            assert status == 401 and body["error"]["code"] == "session_role_gone", body
            assert "SHIELDES_OIDC_ROLE_MAP" in body["error"]["message"]
