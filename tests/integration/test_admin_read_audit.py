"""Admin API reads are attributed: every admin request's row in the request log names its caller
(`actor`, as audit_log names the author of a change), so an auditor can tell who listed keys or read
usage, with the path, the time and the result. Nothing of it goes to the event log."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from shieldes import secrets
from shieldes.projections.shared_commands import CreateAdminToken
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness, wait_until

BOOT = "read-audit-bootstrap-token-0123456789abc"


async def test_admin_reads_are_in_the_request_log_with_their_caller(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT, providers=False) as h:
        minted = secrets.new_admin_token()
        await h.admin(CreateAdminToken(secrets.new_id("adm"), "vera", "viewer", secrets.hash_key(minted),
                                       secrets.display_prefix(minted)))
        await h.sync()
        events_before = h.sql("SELECT count(*) FROM events")
        vera, boot = AdminClient(h.base, minted), AdminClient(h.base, BOOT)
        assert (await vera.get("/admin/v1/keys"))[0] == 200
        assert (await boot.get("/admin/v1/usage"))[0] == 200
        assert (await vera.post("/admin/v1/teams", {"name": "nope"}))[0] == 403  # a refused attempt too
        assert (await AdminClient(h.base, "shd-adm-wrong").get("/admin/v1/keys"))[0] == 401
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 4, timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql("SELECT actor, method, path, status FROM request_log WHERE route LIKE '/admin/%%' "
                     "ORDER BY started_at")
        assert h.sql("SELECT count(*) FROM events") == events_before  # reads append nothing to the log
    assert rows == [("token:vera", "GET", "/admin/v1/keys", 200), ("bootstrap-token", "GET", "/admin/v1/usage", 200),
                    ("token:vera", "POST", "/admin/v1/teams", 403), (None, "GET", "/admin/v1/keys", 401)], rows


async def test_probes_of_admin_paths_without_a_token_are_found_by_the_documented_query(database_url: str) -> None:
    """docs/audit.md's "who called the admin API" query: a token-less probe of a path the admin API does
    not serve (route `unmatched`) is a 401 there, with the path as sent, beside the refused reads."""
    async with harness(database_url, admin_token=BOOT, providers=False) as h:
        anonymous = AdminClient(h.base, None)
        assert (await anonymous.get("/admin/v1/no-such-thing"))[0] == 401
        assert (await anonymous.call("DELETE", "/admin/v1/usage"))[0] == 401  # served path, unserved method
        assert (await AdminClient(h.base, BOOT).get("/admin/v1/keys"))[0] == 200
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 3, timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql("SELECT actor, method, path, route, status FROM request_log "
                     "WHERE path LIKE '/admin/%%' AND started_at > now() - interval '7 days' ORDER BY started_at")
    assert rows == [(None, "GET", "/admin/v1/no-such-thing", "unmatched", 401),
                    (None, "DELETE", "/admin/v1/usage", "unmatched", 401),
                    ("bootstrap-token", "GET", "/admin/v1/keys", "/admin/v1/keys", 200)], rows


async def test_the_documented_failures_per_deployment_are_the_clients_requests(database_url: str) -> None:
    """docs/audit.md's "failures per deployment" query counts the gateway's failures, not the admin
    API's refusals (a wrong token, a role refused, a probe of a path it does not serve)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    query = re.search(r"```sql\n(-- failures per deployment.*?)```", doc, re.S)
    assert query is not None
    async with harness(database_url, admin_token=BOOT) as h:
        assert (await AdminClient(h.base, "shd-adm-wrong").get("/admin/v1/keys"))[0] == 401
        assert (await AdminClient(h.base, None).get("/admin/v1/no-such-thing"))[0] == 401
        assert (await AdminClient(h.base, BOOT).get("/admin/v1/keys/nope"))[0] == 404
        async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/chat/completions", json={},
                                                        headers={"Authorization": "Bearer sk-shd-wrong"}) as r:
            assert r.status == 401
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 4, timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql(query.group(1).replace("%", "%%"))
    assert rows == [("(none)", 401, "invalid_api_key", 1)], rows
