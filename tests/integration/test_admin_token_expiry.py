"""Admin tokens can be made to expire (`expires_in` / `expires_at`, `--expires-in`): an expired
token is refused like a revoked one, on the API, and listed as expired; a token without an expiry
keeps working. A token that never expires was the only kind an operator could make."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from tests.cli import ok, refused
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness

BOOT = "token-expiry-bootstrap-token-0123456789ab"


async def test_an_admin_token_expires(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT, providers=False) as h:
        admin = AdminClient(h.base, BOOT)
        soon = datetime.fromtimestamp(time.time() + 2, UTC).isoformat()
        status, short = await admin.post("/admin/v1/admin-tokens", {"name": "short", "role": "viewer",
                                                                     "expires_at": soon})
        assert status == 201 and short["expires_at"] and short["status"] == "active", short
        status, past = await admin.post("/admin/v1/admin-tokens", {"name": "late", "role": "viewer",
                                                                    "expires_in": "0s"})
        assert status == 400 and "not in the future" in past["error"]["message"], past
        made = await asyncio.to_thread(ok, database_url, "admin-token", "create", "--name", "ci", "--role",
                                       "operator", "--expires-in", "90d")
        in_90d = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00")).timestamp() - time.time()
        assert 89.9 * 86400 < in_90d <= 90 * 86400 and made["status"] == "active", made
        await h.sync()
        assert (await AdminClient(h.base, short["token"]).get("/admin/v1/whoami"))[0] == 200
        for _ in range(200):  # until its expiry passes (2 s)
            status, body = await AdminClient(h.base, short["token"]).get("/admin/v1/whoami")
            if status == 401:
                break
            await asyncio.sleep(0.05)
        assert status == 401 and "expired" in body["error"]["message"], body
        assert (await AdminClient(h.base, made["token"]).get("/admin/v1/whoami"))[0] == 200
        listed = {t["name"]: t["status"] for t in (await admin.get("/admin/v1/admin-tokens"))[1]["data"]}
        assert listed == {"short": "expired", "ci": "active"}, listed
        rows = await asyncio.to_thread(ok, database_url, "admin-token", "list")
        assert {r["name"]: r["status"] for r in rows} == listed
        line = await asyncio.to_thread(refused, database_url, "admin-token", "create", "--name", "x", "--role",
                                       "viewer", "--expires-at", "2001-01-01")
        assert "in the past" in line, line
