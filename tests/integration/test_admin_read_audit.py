"""Admin API reads are attributed: every admin request's row in the request log names its caller
(`actor`, as audit_log names the author of a change), so an auditor can tell who listed keys or read
usage, with the path, the time and the result. Nothing of it goes to the event log."""

from __future__ import annotations

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
