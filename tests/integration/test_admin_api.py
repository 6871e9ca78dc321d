"""The admin REST API on one real node: CRUD through the same decide path as the CLI, roles,
idempotent creates, validation errors in the OpenAI shape, history, usage, and an OpenAPI document
that lists every route."""

from __future__ import annotations

import openai
import pytest

from shieldes.gateway.admin import ROUTES
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness, wait_until

BOOT = "boot-" + "admin-token-for-tests-" * 2
API = "/admin/v1"


async def chat(base: str, key: str, n: int = 1) -> None:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    try:
        for _ in range(n):
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b c"}])
    finally:
        await client.close()


async def test_keys_teams_budgets_and_tokens_through_the_api(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        status, team = await api.post(f"{API}/teams", {"name": "search", "budget": 50})
        assert status == 201 and team["name"] == "search" and team["budget_usd"] == 50

        status, created = await api.post(f"{API}/keys", {"name": "app", "models": ["gpt-4o"], "rpm": 100,
                                                         "budget": 5, "budget_period": "1d", "team": "search"})
        assert status == 201, created
        secret = created["key"]
        assert secret.startswith(created["prefix"]) and created["team"] == "search" and created["rpm"] == 100
        await chat(h.base, secret, 2)  # usable at once on the node that wrote it
        status, one_team = await api.get(f"{API}/teams/search")
        assert status == 200 and one_team["id"] == team["id"] and one_team["keys"] == 1
        assert (await api.get(f"{API}/teams/{team['id']}"))[1] == one_team
        status, missing = await api.get(f"{API}/teams/nope")
        assert status == 404 and missing["error"]["code"] == "team_not_found"

        # the secret is shown once: never in a read
        status, listed = await api.get(f"{API}/keys")
        assert status == 200 and [k["name"] for k in listed["data"]] == ["app"] and secret not in str(listed)
        status, one = await api.get(f"{API}/keys/app")
        assert one["id"] == created["id"] and "key" not in one

        status, updated = await api.call("PATCH", f"{API}/keys/app", {"rpm": None, "tpm": 1000})
        assert status == 200 and updated["rpm"] is None and updated["tpm"] == 1000
        status, budget = await api.call("PUT", f"{API}/budgets/key/app", {"amount_usd": 7.5, "period": "30d"})
        assert status == 200 and budget["amount_usd"] == 7.5
        status, budgets = await api.get(f"{API}/budgets")
        assert {(b["name"], b["amount_usd"]) for b in budgets["data"]} == {("app", 7.5), ("search", 50)}
        assert all(b["spent_usd"] > 0 for b in budgets["data"])

        status, rotated = await api.post(f"{API}/keys/app/rotate")
        assert status == 200 and rotated["key"] != secret
        with pytest.raises(openai.AuthenticationError):
            await chat(h.base, secret)
        await chat(h.base, rotated["key"])
        status, revoked = await api.post(f"{API}/keys/app/revoke")
        assert status == 200 and revoked["status"] == "revoked"
        assert (await api.get(f"{API}/teams/search"))[1]["keys"] == 0  # a revoked key is not counted
        await api.post(f"{API}/teams", {"name": "other"})
        await api.post(f"{API}/keys", {"name": "app2", "team": "other"})
        status, first = await api.get(f"{API}/teams", limit=1)
        assert [(t["name"], t["keys"]) for t in first["data"]] == [("other", 1)] and first["has_more"]
        status, rest = await api.get(f"{API}/teams", after=first["next_after"])
        assert [(t["name"], t["keys"]) for t in rest["data"]] == [("search", 0)] and not rest["has_more"]
        with pytest.raises(openai.AuthenticationError):
            await chat(h.base, rotated["key"])
        status, again = await api.post(f"{API}/keys/app/revoke")
        assert status == 400 and again["error"]["code"] == "command_rejected" and "already revoked" in \
            again["error"]["message"]

        # providers and pricing (admin scope), secrets never echoed
        status, prov = await api.post(f"{API}/providers", {"name": "backup", "type": "openai",
                                                            "base_url": h.upstream.url, "models": ["gpt-4o"],
                                                            "api_key_env": "BACKUP_KEY", "weight": 0.5})
        assert status == 201 and prov["api_key"] == "env:BACKUP_KEY"
        status, _ = await api.call("PATCH", f"{API}/providers/backup", {"weight": 2})
        assert status == 200
        status, price = await api.call("PUT", f"{API}/pricing/org/model-x", {"input_per_1m": 1, "output_per_1m": 2,
                                                                             "cache_read_per_1m": 0.1})
        assert status == 200 and price["model"] == "org/model-x" and price["cache_read_per_1m"] == 0.1
        long = {"above_tokens": 200000, "input_per_1m": 2, "output_per_1m": 4}
        status, price = await api.call("PUT", f"{API}/pricing/org/model-y", {"input_per_1m": 1, "output_per_1m": 2,
                                                                             "long_context": long})
        assert status == 200 and price["long_context"] == long
        status, listed = await api.get(f"{API}/pricing", source="override")
        assert [p["long_context"] for p in listed["data"] if p["model"] == "org/model-y"] == [long]
        status, bad = await api.call("PUT", f"{API}/pricing/org/model-y", {"input_per_1m": 1, "output_per_1m": 2,
                                                                           "long_context": {"input_per_1m": 2}})
        assert status == 400 and "above_tokens" in bad["error"]["message"]
        text_price = {"input_per_1m": 1, "output_per_1m": 2, "long_context": {**long, "input_per_1m": "2"}}
        status, bad = await api.call("PUT", f"{API}/pricing/org/model-y", text_price)
        assert status == 400 and "USD per 1M tokens" in bad["error"]["message"]
        status, _ = await api.call("DELETE", f"{API}/providers/backup")
        assert status == 200

        # every write is in audit_log with the principal as actor
        actors = h.sql("SELECT DISTINCT actor FROM audit_log WHERE position > 2")
        assert actors == [("bootstrap-token",)]


async def test_roles_idempotency_and_errors(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        tokens = {}
        for role in ("operator", "viewer", "auditor"):
            status, made = await api.post(f"{API}/admin-tokens", {"name": f"{role}-bot", "role": role})
            assert status == 201 and made["token"].startswith("shd-adm-") and made["role"] == role
            tokens[role] = made["token"]
        op, viewer, auditor = (AdminClient(h.base, tokens[r]) for r in ("operator", "viewer", "auditor"))
        status, me = await viewer.get(f"{API}/whoami")
        assert me["name"] == "viewer-bot" and me["role"] == "viewer" and "keys:write" not in me["scopes"]

        # operator: keys yes, providers no; its writes carry its name
        status, _ = await op.post(f"{API}/keys", {"name": "opkey"})
        assert status == 201
        status, err = await op.post(f"{API}/providers", {"name": "x", "type": "openai",
                                                         "base_url": "http://x", "models": ["m"]})
        assert status == 403 and err["error"]["code"] == "insufficient_role"
        # viewer reads everything but writes nothing; auditor sees audit and usage only
        assert (await viewer.get(f"{API}/keys"))[0] == 200
        status, err = await viewer.post(f"{API}/keys", {"name": "nope"})
        assert status == 403 and err["error"]["type"] == "permission_error" and "viewer" in err["error"]["message"]
        assert err["error"]["message"].endswith("; use a token of role operator or admin")  # what to do
        assert (await viewer.post(f"{API}/keys/opkey/revoke"))[0] == 403
        assert (await auditor.get(f"{API}/keys"))[0] == 403
        assert (await auditor.get(f"{API}/audit"))[0] == 200
        assert (await auditor.get(f"{API}/usage"))[0] == 200
        assert (await viewer.get(f"{API}/admin-tokens"))[0] == 403

        rows = h.sql("SELECT actor FROM audit_log WHERE type = 'virtual_key.created'")
        assert rows == [("token:operator-bot",)]

        # revoking a token is felt at once on this node
        status, _ = await api.post(f"{API}/admin-tokens/viewer-bot/revoke")
        assert status == 200
        status, err = await viewer.get(f"{API}/keys")
        assert status == 401 and err["error"]["code"] == "invalid_admin_token"

        # Idempotency-Key: a retry returns the first result (the secret is not shown again)
        hdr = {"Idempotency-Key": "create-svc-1"}
        status, first = await api.post(f"{API}/keys", {"name": "svc"}, headers=hdr)
        assert status == 201 and first["key"]
        status, second = await api.post(f"{API}/keys", {"name": "svc"}, headers=hdr)
        assert status == 200 and second["id"] == first["id"] and second["key"] is None
        status, err = await api.post(f"{API}/keys", {"name": "svc2"}, headers=hdr)
        assert status == 409 and err["error"]["code"] == "idempotency_key_reused"
        assert h.sql("SELECT count(*) FROM events WHERE type = 'virtual_key.created' AND data->>'name' LIKE 'svc%%'") \
            == [(1,)]

        # bad input: OpenAI-shaped 400s that say what to do, nothing appended
        before = h.sql("SELECT config_position FROM log_head")
        for body, needle in (({"name": "a", "rpm": "many"}, "integer"), ({"nam": "a"}, "unknown field"),
                             ({}, "missing required field 'name'"), ({"name": "a", "rpm": -1}, "positive"),
                             ({"name": "bad name"}, "invalid key name"), ({"name": "a", "team": "nope"}, "no team")):
            status, err = await api.post(f"{API}/keys", body)
            assert status == 400 and needle in err["error"]["message"], (body, err)
            assert set(err["error"]) == {"message", "type", "param", "code"}
        assert (await api.get(f"{API}/keys", limit=0))[0] == 400
        assert (await api.get(f"{API}/keys", colour="red"))[0] == 400
        assert (await api.get(f"{API}/keys/nope"))[0] == 404
        assert h.sql("SELECT config_position FROM log_head") == before
        assert (await api.get(f"{API}/keys", token="wrong"))[0] == 401
        assert (await api.get(f"{API}/keys", token=""))[0] == 401


async def test_teams_page_by_cursor_and_a_config_list_page_holds_ten_thousand(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        # teams page by cursor over names sorted once per version of the teams: a team created
        # between two pages is in the next one when its name sorts after the cursor
        for name in ("t3", "t1", "t5"):
            await api.post(f"{API}/teams", {"name": name})
        status, t1 = await api.get(f"{API}/teams", limit=2)
        assert [t["name"] for t in t1["data"]] == ["t1", "t3"] and t1["has_more"] and t1["next_after"] == "t3"
        await api.post(f"{API}/teams", {"name": "t4"})
        await api.post(f"{API}/teams", {"name": "t0"})
        status, t2 = await api.get(f"{API}/teams", limit=2, after=t1["next_after"])
        assert [t["name"] for t in t2["data"]] == ["t4", "t5"] and not t2["has_more"] and t2["next_after"] is None
        status, between = await api.get(f"{API}/teams", after="t3x")  # a cursor that is no team's name
        assert [t["name"] for t in between["data"]] == ["t4", "t5"]
        # `search` (in the name, any case) is answered by the node, a page at a time from the cursor
        await api.post(f"{API}/teams", {"name": "Ops-T9"})
        status, found = await api.get(f"{API}/teams", search="T", limit=2, after="t0")
        assert status == 200 and [t["name"] for t in found["data"]] == ["t1", "t3"] and found["next_after"] == "t3"
        status, found = await api.get(f"{API}/teams", search="ops")
        assert [t["name"] for t in found["data"]] == ["Ops-T9"] and not found["has_more"]
        assert (await api.get(f"{API}/teams", search="nothing-like-it"))[1]["data"] == []
        assert [t["name"] for t in (await api.get(f"{API}/teams", limit=10_000))[1]["data"]] == [
            "Ops-T9", "t0", "t1", "t3", "t4", "t5"]
        # a config list's page holds up to 10,000; the audit log's up to 1000
        status, err = await api.get(f"{API}/teams", limit=10_001)
        assert status == 400 and "limit must be between 1 and 10000" in err["error"]["message"]
        assert (await api.get(f"{API}/keys", limit=10_000))[0] == 200
        status, err = await api.get(f"{API}/audit", limit=1001)
        assert status == 400 and "limit must be between 1 and 1000" in err["error"]["message"]


async def test_budgets_page_by_cursor_and_stay_whole_without_one(database_url: str) -> None:
    """GET /budgets pages with `limit`/`after` (`key:NAME`, `team:NAME`: a key and a team may share a
    name) over keys then teams; without either it answers every budget at once, as it always did."""
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        for name in ("ops", "web"):
            assert (await api.post(f"{API}/teams", {"name": name, "budget": 9}))[0] == 201
        for name in ("web", "app", "cli"):
            assert (await api.post(f"{API}/keys", {"name": name, "budget": 3}))[0] == 201
        assert (await api.post(f"{API}/keys", {"name": "free"}))[0] == 201
        order = [("key", "app"), ("key", "cli"), ("key", "web"), ("team", "ops"), ("team", "web")]
        status, whole = await api.get(f"{API}/budgets")
        assert status == 200 and whole["has_more"] is False and whole["next_after"] is None
        assert [(b["subject_kind"], b["name"]) for b in whole["data"]] == order
        walked, params = [], {"limit": 2}
        while True:
            status, one = await api.get(f"{API}/budgets", **params)
            assert status == 200 and len(one["data"]) <= 2, one
            walked += [(b["subject_kind"], b["name"]) for b in one["data"]]
            if not one["has_more"]:
                assert one["next_after"] is None
                break
            params = {"limit": 2, "after": one["next_after"]}
        assert walked == order and params["after"] == "team:ops"
        status, teams = await api.get(f"{API}/budgets", after="team:")  # `after` alone: pages of 100
        assert status == 200 and [b["name"] for b in teams["data"]] == ["ops", "web"] and not teams["has_more"]
        status, bad = await api.get(f"{API}/budgets", after="web")
        assert status == 400 and bad["error"]["code"] == "invalid_request" and "key:NAME" in bad["error"]["message"]
        status, bad = await api.get(f"{API}/budgets", limit=0)
        assert status == 400 and bad["error"]["code"] == "invalid_request"


async def test_pagination_history_usage_and_openapi(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        secrets = {}
        for i in range(5):
            secrets[i] = (await api.post(f"{API}/keys", {"name": f"k{i}"}))[1]["key"]
        status, p1 = await api.get(f"{API}/keys", limit=2)
        assert [k["name"] for k in p1["data"]] == ["k0", "k1"] and p1["has_more"] and p1["next_after"] == "k1"
        status, p3 = await api.get(f"{API}/keys", limit=2, after="k3")
        assert [k["name"] for k in p3["data"]] == ["k4"] and not p3["has_more"]

        await chat(h.base, secrets[0], 3)
        await chat(h.base, secrets[1], 1)
        await h.flush()
        await h.sync()
        status, usage = await api.get(f"{API}/usage", group_by="key")
        assert {r["key"]: r["requests"] for r in usage["data"]} == {"k0": 3, "k1": 1}
        status, by_day_model = await api.get(f"{API}/usage", group_by="day,model", key="k0")
        [row] = by_day_model["data"]
        assert row["model"] == "gpt-4o" and row["requests"] == 3 and row["cost_usd"] > 0
        assert (await api.get(f"{API}/usage", group_by="colour"))[0] == 400
        # a misspelt key or team is a 404 naming it, not an empty list that reads as no traffic
        for path, query, code in (("usage", {"key": "nope"}, "key_not_found"),
                                  ("usage", {"team": "nope"}, "team_not_found"),
                                  ("requests", {"key": "nope"}, "key_not_found")):
            status, err = await api.get(f"{API}/{path}", **query)
            assert (status, err["error"]["code"]) == (404, code), (path, query, err)
            assert "'nope'" in err["error"]["message"] and "GET /admin/v1/" in err["error"]["message"], err

        # audit: newest first, paged with `before`; config as of a point and a diff
        status, page1 = await api.get(f"{API}/audit", limit=2)
        assert [r["type"] for r in page1["data"]] == ["virtual_key.created"] * 2 and page1["has_more"]
        status, page2 = await api.get(f"{API}/audit", limit=100, before=page1["next_before"])
        assert page2["data"][0]["position"] < page1["data"][-1]["position"]
        k2_pos = next(r["position"] for r in page1["data"] + page2["data"] if r["subject"] == "k2")
        status, then = await api.get(f"{API}/config", at=str(k2_pos))
        assert sorted(k["name"] for k in then["keys"]) == ["k0", "k1", "k2"]
        await api.post(f"{API}/keys/k1/revoke")
        status, d = await api.get(f"{API}/config/diff", **{"from": str(k2_pos)})
        assert {(c["name"], c["change"]) for c in d["changes"]} == {("k3", "added"), ("k4", "added"),
                                                                     ("k1", "changed")}
        assert (await api.get(f"{API}/config/diff", **{"from": "yesterday-ish"}))[0] == 400
        # a point past the end of the log is refused, as by `shieldes config show --at`, not answered as "now"
        status, err = await api.get(f"{API}/config", at="999999")
        assert status == 400 and err["error"]["code"] == "invalid_request", err
        assert "past the end of the log" in err["error"]["message"] and "omit `at`" in err["error"]["message"]
        status, err = await api.get(f"{API}/config", at="2999-01-01T00:00:00Z")
        assert status == 400 and "is in the future" in err["error"]["message"], err
        status, err = await api.get(f"{API}/config/diff", **{"from": str(k2_pos), "to": "999999"})
        assert status == 400 and "past the end of the log" in err["error"]["message"], err
        status, err = await api.get(f"{API}/config/diff", **{"from": "999999"})
        assert status == 400 and "past the end of the log" in err["error"]["message"], err
        status, d = await api.get(f"{API}/config/diff", **{"from": str(k2_pos), "to": "2999-01-01T00:00:00Z"})
        assert status == 200 and d["to"]["position"] >= k2_pos  # a time to come is "up to now" for `to`

        status, node = await api.get(f"{API}/node")
        assert node["node_id"] == h.node.node_id and node["requests"]["total"] >= 4
        status, health = await api.get(f"{API}/providers/health")
        openai_row = next(r for r in health["data"] if r["name"] == "openai")
        assert openai_row["breaker"] == "closed" and openai_row["traffic_share"] == 1.0
        status, snap = await api.post(f"{API}/snapshots")
        assert status == 201 and snap["position"] > 0
        # a look at a point after the snapshot starts from it (config_start.config_base), the same config
        await api.post(f"{API}/keys/k2/revoke")
        status, now = await api.get(f"{API}/config")
        status, since = await api.get(f"{API}/config", at=str(h.node.projector.position))
        assert status == 200 and since["keys"] == now["keys"] and since["position"] == now["position"]
        status, d = await api.get(f"{API}/config/diff", **{"from": str(snap["position"])})
        assert [(c["name"], c["change"]) for c in d["changes"]] == [("k2", "changed")], d

        # the OpenAPI document is public and lists every route of the table with its method
        status, doc = await AdminClient(h.base, None).get(f"{API}/openapi.json")
        assert status == 200 and doc["openapi"].startswith("3.")
        for route in ROUTES:
            op = doc["paths"][route.documented_path][route.method.lower()]
            assert op["summary"] == route.summary and op["x-required-scope"] == route.scope
        assert h.node.http is not None
        served = {(r.method, r.resource.canonical) for r in h.node.http.app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith(API)
                  and not r.resource.canonical.endswith("openapi.json")}
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() if p.startswith(API) for m in ops}
        assert served == documented


async def test_aliases_and_provider_type_settings_through_the_api(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        # per-type settings as top-level fields (the CLI's flags) or in `options`
        status, az = await api.post(f"{API}/providers", {
            "name": "az", "type": "azure", "base_url": h.upstream.url, "api_key_env": "AZ_KEY",
            "models": ["prod-gpt4o"], "api_version": "2024-10-21", "options": {"auth": "api-key"}})
        assert status == 201 and az["options"] == {"api_version": "2024-10-21", "auth": "api-key"}, az
        status, br = await api.post(f"{API}/providers", {"name": "br", "type": "bedrock", "region": "eu-west-1",
                                                          "models": ["anthropic.claude-3-haiku-20240307-v1:0"]})
        assert status == 201 and br["base_url"] == "https://bedrock-runtime.eu-west-1.amazonaws.com"
        status, vx = await api.post(f"{API}/providers", {"name": "vx", "type": "vertex", "project": "p1",
                                                          "location": "global", "models": ["gemini-2.0-flash"],
                                                          "credentials_file": "/etc/shieldes/sa.json"})
        assert status == 201 and vx["options"]["project"] == "p1" and vx["responses"] == "translate"
        # the deployment's own quotas (any type): JSON integers, stored like the CLI's --rpm/--tpm
        status, q = await api.call("PATCH", f"{API}/providers/vx", {"rpm": 600, "options": {"tpm": 90000},
                                                                    "region": "eu"})
        assert status == 200 and {k: q["options"][k] for k in ("rpm", "tpm", "region")} == {
            "rpm": "600", "tpm": "90000", "region": "eu"}, q
        for body, needle in (({"rpm": 0}, "above 0"), ({"rpm": "lots"}, "integer"), ({"tpm": 1.5}, "integer")):
            status, err = await api.call("PATCH", f"{API}/providers/vx", body)
            assert status == 400 and needle in err["error"]["message"], (body, err)
        status, upd = await api.call("PATCH", f"{API}/providers/az", {"api_version": "2025-01-01-preview"})
        assert status == 200 and upd["options"] == {"api_version": "2025-01-01-preview", "auth": "api-key"}
        for body, needle in (({"project": "p"}, "does not apply to type 'azure'"),
                             ({"api_version": "a", "options": {"api_version": "b"}}, "give it once"),
                             ({"options": {"auth": "magic"}}, "must be one of")):
            status, err = await api.call("PATCH", f"{API}/providers/az", body)
            assert status == 400 and needle in err["error"]["message"], (body, err)
        status, err = await api.post(f"{API}/providers", {"name": "az2", "type": "azure", "base_url": "http://x",
                                                          "models": ["m"]})
        assert status == 400 and "`api_version`" in err["error"]["message"]
        status, err = await api.post(f"{API}/providers", {"name": "r2", "type": "openai", "base_url": "http://x",
                                                          "models": ["m"], "responses": "sometimes"})
        assert status == 400 and "translate or native" in err["error"]["message"]

        # aliases: same decide path as `shieldes model alias`, served at once
        status, made = await api.call("PUT", f"{API}/aliases/team/smart", {
            "targets": ["openai/gpt-4o:3", "openai/gpt-4o-mini"], "fallbacks": ["gpt-4o-mini"]})
        assert status == 200 and made["targets"] == [
            {"provider": "openai", "model": "gpt-4o", "weight": 3.0},
            {"provider": "openai", "model": "gpt-4o-mini", "weight": 1.0}] and made["position"] > 0, made
        status, one = await api.get(f"{API}/aliases/team/smart")
        assert status == 200 and one["fallbacks"] == ["gpt-4o-mini"]
        await api.call("PUT", f"{API}/aliases/fast", {"targets": ["openai/gpt-4o-mini"], "fallbacks": ["team/smart"]})
        assert made["warnings"] == []  # team/smart is no model any provider serves
        # named like a served model, it takes that model's requests from the providers left out: said
        status, took = await api.call("PUT", f"{API}/aliases/gpt-4o", {"targets": ["openai/gpt-4o-mini"]})
        assert status == 200 and len(took["warnings"]) == 1, took
        assert "away from provider(s) openai" in took["warnings"][0] and "openai/gpt-4o " in took["warnings"][0]
        assert (await api.call("DELETE", f"{API}/aliases/gpt-4o"))[0] == 200
        status, listed = await api.get(f"{API}/aliases", limit=1)
        assert [a["name"] for a in listed["data"]] == ["fast"] and listed["has_more"]
        secret = (await api.post(f"{API}/keys", {"name": "aliased"}))[1]["key"]
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        try:
            answer = await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        finally:
            await client.close()
        assert answer.choices[0].message.content and h.upstream.last().body["model"] == "gpt-4o-mini"

        # refused: unknown targets, a fallback still in use, viewers; nothing appended
        made = (await api.post(f"{API}/admin-tokens", {"name": "v", "role": "viewer"}))[1]
        viewer = AdminClient(h.base, made["token"])
        before = h.sql("SELECT config_position FROM log_head")
        for body, needle in (({"targets": ["nope/gpt-4o"]}, "no provider named 'nope'"),
                             ({"targets": ["openai/claude-9"]}, "does not serve"),
                             ({"targets": []}, "at least one"), ({"fallbacks": ["x"]}, "missing required field")):
            status, err = await api.call("PUT", f"{API}/aliases/bad", body)
            assert status == 400 and needle in err["error"]["message"], (body, err)
        status, err = await api.call("DELETE", f"{API}/aliases/team/smart")
        assert status == 400 and "fallback of fast" in err["error"]["message"]
        assert (await viewer.call("PUT", f"{API}/aliases/v", {"targets": ["openai/gpt-4o"]}))[0] == 403
        assert (await viewer.get(f"{API}/aliases"))[0] == 200
        assert (await api.get(f"{API}/aliases/nope"))[1]["error"]["code"] == "alias_not_found"
        assert h.sql("SELECT config_position FROM log_head") == before

        status, gone = await api.call("DELETE", f"{API}/aliases/fast")
        assert status == 200 and gone["removed"]
        assert (await api.get(f"{API}/aliases/fast"))[0] == 404
        actors = h.sql("SELECT DISTINCT actor FROM audit_log WHERE type LIKE 'model_alias.%%'")
        assert actors == [("bootstrap-token",)], actors


async def test_request_log_list_filters_pages_and_detail(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT, capture_bodies="errors") as h:
        api = AdminClient(h.base, BOOT)
        secret = (await api.post(f"{API}/keys", {"name": "logged"}))[1]["key"]
        made = [(await api.post(f"{API}/admin-tokens", {"name": r, "role": r}))[1] for r in ("viewer", "auditor")]
        viewer, auditor = (AdminClient(h.base, m["token"]) for m in made)
        await chat(h.base, secret, 3)
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.NotFoundError) as refused:
            await client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        await client.close()
        failed_id = refused.value.response.headers["x-request-id"]
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 4, timeout=10)
        assert await writer.flush_all(10)

        # newest first, paged with `before` like the audit log, filtered like `shieldes logs`
        status, first = await api.get(f"{API}/requests", key="logged", limit=3)
        assert status == 200 and len(first["data"]) == 3 and first["has_more"], first
        assert all(r["key_name"] == "logged" for r in first["data"]) and first["data"][0]["request_id"] == failed_id
        status, rest = await api.get(f"{API}/requests", key="logged", before=first["next_before"])
        assert status == 200 and len(rest["data"]) == 1 and not rest["has_more"] and rest["next_before"] is None
        assert rest["data"][0]["started_at"] <= first["data"][-1]["started_at"]
        ok = (await api.get(f"{API}/requests", key="logged", status="ok"))[1]["data"]
        assert len(ok) == 3 and {r["model"] for r in ok} == {"gpt-4o"} and all(r["status"] == 200 for r in ok)
        assert [r["request_id"] for r in (await api.get(f"{API}/requests", key="logged", status="4xx"))[1]["data"]] \
            == [failed_id]
        assert (await api.get(f"{API}/requests", model="no-such-model"))[1]["data"][0]["request_id"] == failed_id
        assert len((await api.get(f"{API}/requests", request_id=failed_id))[1]["data"]) == 1
        assert (await api.get(f"{API}/requests", key="logged", until="2000-01-01"))[1]["data"] == []
        assert len((await api.get(f"{API}/requests", key="logged", since="2000-01-01"))[1]["data"]) == 4
        gateway = (await api.get(f"{API}/requests", route="/v1/*"))[1]["data"]
        assert len(gateway) == 4 and {r["route"] for r in gateway} == {"/v1/chat/completions"}
        admin = (await api.get(f"{API}/requests", route="/admin/*"))[1]["data"]
        assert admin and all(r["route"].startswith("/admin/v1/") and r["key_id"] is None for r in admin)

        # detail: captured bodies for admins only; viewers see the row, auditors not even that
        status, one = await api.get(f"{API}/requests/{failed_id}")
        [row] = one["data"]
        assert status == 200 and row["node_id"] == h.node.node_id and row["error_code"] == "model_not_found"
        assert row["bodies"] == "shown" and "no-such-model" in row["request_body"] and secret not in row["request_body"]
        status, seen = await viewer.get(f"{API}/requests/{failed_id}")
        assert status == 200 and seen["data"][0]["bodies"] == "withheld" and "request_body" not in seen["data"][0]
        assert (await api.get(f"{API}/requests/{ok[0]['request_id']}"))[1]["data"][0]["bodies"] == "not_captured"
        assert (await auditor.get(f"{API}/requests"))[0] == 403
        assert (await auditor.get(f"{API}/requests/{failed_id}"))[0] == 403

        # bad filters: OpenAI-shaped 400s naming the fix; unknown ids: 404
        for params, needle in (({"status": "teapot"}, "malformed status"), ({"before": "garbage"}, "next_before"),
                               ({"since": "2030-01-02", "until": "2030-01-01"}, "swap"),
                               ({"since": "last tuesday"}, "since")):
            status, err = await api.get(f"{API}/requests", **params)
            assert status == 400 and needle in err["error"]["message"], (params, err)
        status, err = await api.get(f"{API}/requests/no-such-request")
        assert status == 404 and err["error"]["code"] == "request_not_found"


async def test_money_is_written_as_decimals_in_every_answer(database_url: str) -> None:
    """A budget of a ten-millionth of a dollar and a price of two hundred-thousandths: orjson alone
    writes `1e-7` (and the CLI's config export wrote `1e-07`); every answer writes them out."""
    import aiohttp

    from tests.integration.test_cli_remote import direct

    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        status, _ = await api.post(f"{API}/keys", {"name": "tiny", "budget": 0.0000001})
        assert status == 201
        status, _ = await api.call("PUT", f"{API}/pricing/gpt-4o", {"input_per_1m": 0.00002, "output_per_1m": 1})
        assert status == 200
        bodies = {}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOOT}"}) as s:
            for path in ("/keys", "/keys/tiny", "/budgets", "/pricing?source=override", "/audit", "/config",
                         "/config?keys_limit=1", "/config/diff?from=1"):
                async with s.get(h.base + API + path) as r:
                    assert r.status == 200, path
                    bodies[path] = await r.read()
        exported = await direct(h, "config", "export")

    for path, body in bodies.items():
        assert b"e-7" not in body and b"e-5" not in body, (path, body[:300])
    for path in ("/keys", "/keys/tiny", "/budgets", "/config", "/config?keys_limit=1"):
        assert b'"amount_usd":0.0000001' in bodies[path], path
    assert b'"input_per_1m":0.00002' in bodies["/pricing?source=override"]
    assert exported.code == 0 and "0.0000001" in exported.out and "0.00002" in exported.out
    assert "e-07" not in exported.out and "e-05" not in exported.out
