"""The admin HTTP surface: token required (constant-time check), disabled without a token, read-only
content that matches the node's state, and no secret in any admin response."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai

from shieldes.secrets import hash_key
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

TOKEN = "adm-" + "t0ken-for-tests-" * 2
PATHS = ("/admin/status", "/admin/keys", "/admin/usage")


async def get(base: str, path: str, token: str | None = None, raw_auth: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": raw_auth if raw_auth is not None else f"Bearer {token}"} if token or raw_auth else {}
    async with aiohttp.ClientSession() as s, s.get(base + path, headers=headers) as r:
        return r.status, await r.json()


async def test_admin_routes_are_off_without_a_configured_token(database_url: str) -> None:
    async with harness(database_url) as h:
        for path in PATHS:
            status, body = await get(h.base, path, token="anything")
            assert status == 404, path
            assert body["error"]["code"] == "admin_disabled"
            assert "SHIELDES_ADMIN_TOKEN" in body["error"]["message"]


async def test_admin_needs_the_token_and_shows_state_without_secrets(database_url: str) -> None:
    # dozens of wrong tokens from one address: the sign-in bound is off here (its own test covers it)
    async with harness(database_url, admin_token=TOKEN, admin_sign_in_failures=0,
                       admin_sign_in_failures_total=0) as h:
        secret = await h.create_key("app", rpm=100, budget_usd=5.0, budget_period="1d")
        other = await h.create_key("other")
        await h.sync()
        for path in PATHS:
            for auth in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer " + TOKEN[:-1]):
                status, body = await get(h.base, path, raw_auth=auth)
                assert status == 401, (path, auth)
                assert body["error"]["type"] == "authentication_error"
                assert body["error"]["code"] == "invalid_admin_token"
            # a virtual key is not an admin token
            assert (await get(h.base, path, token=secret))[0] == 401

        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b c"}])
        await client.close()
        # the usage of those calls appended and read back: nothing moves the log during the reads
        await h.flush()
        await h.sync()

        status, st = await get(h.base, "/admin/status", TOKEN)
        assert status == 200
        assert st["node_id"] == h.node.node_id and st["database"] == "ok" and st["status"] == "ready"
        assert st["position"] == h.node.projector.position and st["lag"] == 0
        assert st["usage_buffer_max"] == h.node.settings.usage_buffer_max
        assert st["peers"] == [] and st["leader"] in (True, False) and st["asyncio_tasks"] > 0

        status, keys = await get(h.base, "/admin/keys", TOKEN)
        assert status == 200
        by_name = {k["name"]: k for k in keys["data"]}
        assert set(by_name) == {"app", "other"}
        app = by_name["app"]
        assert app["rpm"] == 100 and app["budget"] == {"amount_usd": 5.0, "period": "1d"}
        assert app["revoked"] is False and secret.startswith(app["prefix"]) and len(app["prefix"]) < len(secret)
        cost = 3 * (3 * 2500 + 5 * 10000) / 1e9  # shipped gpt-4o price, 3 prompt + 5 completion tokens
        assert abs(app["spend_usd_in_period"] - cost) < 1e-12
        assert by_name["other"]["spend_usd_in_period"] is None

        status, usage = await get(h.base, "/admin/usage", TOKEN)
        assert status == 200
        [row] = usage["data"]
        assert (row["key"], row["requests"], row["prompt_tokens"], row["completion_tokens"]) == ("app", 3, 9, 15)
        await h.flush()
        await h.sync()
        _, usage = await get(h.base, "/admin/usage", TOKEN)
        assert usage["data"][0]["requests"] == 3 and usage["data"][0]["unflushed_requests"] == 0

        texts = []
        for path in PATHS:
            async with aiohttp.ClientSession() as s, s.get(h.base + path,
                                                           headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                texts.append(await r.text())
        blob = "\n".join(texts)
        for needle in (TOKEN, secret, other, hash_key(secret), hash_key(other), UPSTREAM_KEY, "env:"):
            assert needle not in blob


async def test_admin_status_in_a_cluster_names_peers_and_one_leader(database_url: str) -> None:
    from tests.integration.gateway_harness import wait_until
    from tests.resilience.support import in_process_cluster

    async with in_process_cluster(database_url, 2, admin_token=TOKEN) as c:
        ids = [n.node_id for n in c.nodes]
        await wait_until(lambda: all(n.cluster is not None and n.cluster.alive_count() == 2 for n in c.nodes)
                         and sum(bool(n.cluster and n.cluster.leader.is_leader) for n in c.nodes) == 1, 10)
        statuses = [(await get(c.base(i), "/admin/status", TOKEN))[1] for i in range(2)]
        assert [s["node_id"] for s in statuses] == ids
        assert [s["peers"] for s in statuses] == [[ids[1]], [ids[0]]]
        assert sorted(s["leader"] for s in statuses) == [False, True]
        assert TOKEN not in str(statuses) and "resilience-cluster-secret" not in str(statuses)


async def test_no_cross_origin_access_and_no_cookie_credentials(database_url: str) -> None:
    """A page on another site can neither read an answer of /v1 or /admin (no CORS header, the
    preflight a browser sends before an Authorization header is refused) nor ride on a cookie: no
    credential is taken from one, so there is no cross-site request forgery to make."""
    async with harness(database_url, admin_token=TOKEN) as h:
        secret = await h.create_key("app")
        await h.sync()
        origin = {"Origin": "https://evil.example"}
        preflight = {**origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        seen = []
        async with aiohttp.ClientSession() as s:
            for path, auth in (("/v1/chat/completions", secret), ("/admin/v1/keys", TOKEN)):
                async with s.options(h.base + path, headers=preflight) as r:
                    seen.append((path, "OPTIONS", r.status, r.headers))
                async with s.get(h.base + path, headers={**origin, "Authorization": f"Bearer {auth}"}) as r:
                    seen.append((path, "GET", r.status, r.headers))
                for cookie in (f"token={auth}", f"shieldes.token={auth}", f"session={auth}"):
                    async with s.post(h.base + path, json={"name": "csrf", "model": "gpt-4o", "messages": []},
                                      headers={**origin, "Cookie": cookie}) as r:
                        seen.append((path, "cookie", r.status, r.headers))
    for path, how, status, headers in seen:
        assert not [k for k in headers if k.lower().startswith("access-control-")], (path, how, headers)
        if how == "OPTIONS":  # (the admin API's: a 401, as any admin path asked without a token)
            assert status == (401 if path.startswith("/admin/") else 405), (path, status)
        if how == "cookie":
            assert status == 401, (path, status)
    assert [s for p, how, s, _ in seen if how == "GET"] == [405, 200]  # chat is a POST; the token works
