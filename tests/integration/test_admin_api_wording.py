"""The admin API's refusals name its JSON fields, query parameters and routes, never the CLI's
flags or commands (the decisions behind both are shared and were worded for the CLI); the CLI in
remote mode asks for its own words. A budget period without an amount is refused, as by the CLI."""

from __future__ import annotations

import re
from typing import Any

from shieldes.gateway.admin.wording import CLI_WORDING
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness

BOOT = "boot-" + "admin-token-for-tests-" * 2
API = "/admin/v1"
CLI_TERMS = re.compile(r"--[a-z]|`shieldes ")

BAD: list[tuple[str, str, Any, dict[str, str], str]] = [
    # (method, path, body, query, a fragment of the answer's message)
    ("POST", "/keys", {"name": "k", "rpm": -1}, {}, "`rpm` must be a positive whole number"),
    ("POST", "/keys", {"name": "k", "budget": -1}, {}, "`budget` must be a number"),
    ("POST", "/keys", {"name": "k", "team": "nope"}, {}, "create it with POST /admin/v1/teams"),
    ("POST", "/keys", {"name": "k", "models": []}, {}, "send `models` as a non-empty list"),
    ("POST", "/keys", {"name": "k", "models": ["a", "a"]}, {}, "listed twice in `models`"),
    ("POST", "/keys", {"name": "k", "expires_in": "soon"}, {}, "malformed `expires_in`"),
    ("POST", "/keys", {"name": "k", "expires_in": "1d", "expires_at": "2030-01-01"}, {},
     "`expires_in` or `expires_at`"),
    ("POST", "/keys", {"name": "k", "expires_at": "2001-01-01"}, {}, "`expires_at` '2001-01-01' is in the past"),
    ("POST", "/keys", {"name": "k", "budget_period": "7d"}, {}, "`budget_period` needs `budget`"),
    ("POST", "/teams", {"name": "t", "budget_period": "1d"}, {}, "`budget_period` needs `budget`"),
    ("PATCH", "/keys/app", {"tpm": -5}, {}, "`tpm` must be"),
    ("PATCH", "/keys/nope", {"rpm": 5}, {}, "see GET /admin/v1/keys"),
    ("POST", "/keys/nope/revoke", None, {}, "see GET /admin/v1/keys"),
    ("PUT", "/budgets/key/app", {"amount_usd": -1}, {}, "`amount_usd` must be"),
    ("PUT", "/budgets/team/nope", {"amount_usd": 1}, {}, "create it with POST /admin/v1/teams"),
    ("POST", "/teams", {"name": "t2", "budget": -3}, {}, "`budget` must be"),
    ("POST", "/providers", {"name": "p", "type": "openai", "base_url": "ftp://x", "models": ["a"]}, {},
     "invalid `base_url`"),
    ("POST", "/providers", {"name": "p", "type": "openai", "base_url": "http://x", "models": ["a"], "weight": -1}, {},
     "`weight` must be"),
    ("POST", "/providers", {"name": "p", "type": "anthropic", "base_url": "http://x", "models": ["a"],
                            "responses": "native"}, {}, 'send "responses": "translate"'),
    ("PATCH", "/providers/nope", {"weight": 2}, {}, "see GET /admin/v1/providers"),
    ("PUT", "/aliases/al", {"targets": ["bad"]}, {}, "invalid `targets` entry 'bad'"),
    ("PUT", "/aliases/al", {"targets": ["nope/x"]}, {}, "see GET /admin/v1/providers"),
    ("PUT", "/aliases/al", {"targets": ["openai/zzz"]}, {}, "PATCH /admin/v1/providers/{name} with `models`"),
    ("PUT", "/aliases/al", {"targets": ["openai/gpt-4o"], "fallbacks": ["zzz"]}, {}, "`fallbacks` entry 'zzz'"),
    ("DELETE", "/aliases/nope", None, {}, "see GET /admin/v1/aliases"),
    ("PUT", "/pricing/gpt-4o", {"input_per_1m": -1, "output_per_1m": 1}, {}, "`input_per_1m` must be"),
    ("PUT", "/pricing/gpt-4o", {"input_per_1m": 1, "output_per_1m": 1, "cache_write_per_1m": -1}, {},
     "`cache_write_per_1m` must be"),
    ("POST", "/admin-tokens/nope/revoke", None, {}, "see GET /admin/v1/admin-tokens"),
    ("DELETE", "/pricing/never-priced", None, {}, "list the prices set with GET /admin/v1/pricing?source=override"),
    # prices by place, tool and modality, a long-context tier: the JSON objects' words
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1, "multipliers": {"foo": 2}}, {},
     '`multipliers` entry foo=...: unknown; use one of flex, priority, regional (e.g. {"flex": 0.5, "priority": 2})'),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1, "multipliers": {"flex": 500}}, {},
     "`multipliers` entry flex=500: the factor must be"),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1, "per_use": {"bar": 1}}, {},
     '(e.g. {"file_search": 0.0025, "container": 0.03}; web searches: `per_web_search`)'),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1, "modalities": {"audio": 1}}, {},
     '`modalities` entry audio=...: unknown kind'),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1, "per_web_search": -1}, {},
     "`per_web_search` must be"),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1,
                           "long_context": {"above_tokens": 5, "input_per_1m": -1, "output_per_1m": 1}}, {},
     "`long_context.input_per_1m` must be"),
    ("PUT", "/pricing/m", {"input_per_1m": 1, "output_per_1m": 1,
                           "long_context": {"above_tokens": -5, "input_per_1m": 1, "output_per_1m": 1}}, {},
     "`long_context.above_tokens` must be"),
    # a type's own settings, and one no type has
    ("POST", "/providers", {"name": "p", "type": "vertex", "models": ["a"]}, {}, "needs `project` and `location`"),
    ("POST", "/providers", {"name": "p", "type": "azure", "base_url": "http://x", "models": ["a"], "auth": "x"}, {},
     "`auth` must be one of"),
    ("POST", "/providers", {"name": "p", "type": "azure", "base_url": "http://x", "models": ["a"],
                            "credentials_file": "/x"}, {}, "`credentials_file` does not apply to type 'azure'"),
    ("POST", "/providers", {"name": "p", "type": "openai", "base_url": "http://x", "models": ["a"],
                            "options": {"bogus": "1"}}, {}, "`bogus` does not apply to type 'openai'"),
    # a variable name no environment holds: the caller's input (a 400), not a secret the node lacks (a 500)
    ("POST", "/providers", {"name": "p", "type": "openai", "base_url": "http://x", "models": ["a"],
                            "api_key_env": "bad-var"}, {}, "invalid environment variable name 'bad-var'"),
    ("POST", "/mcp-servers", {"name": "m", "url": "http://x/mcp", "header_envs": {"X-Key": "bad-var"}}, {},
     "invalid environment variable name 'bad-var'"),
    # a time ago from before the year 1: a 400, not a 500
    ("GET", "/usage", None, {"since": "999999999d"}, "since '999999999d' reaches back before the year 1"),
    ("GET", "/requests", None, {"since": "999999999d"}, "reaches back before the year 1"),
    ("GET", "/audit", None, {"until": "999999999d"}, "until '999999999d' reaches back before the year 1"),
    ("POST", "/mcp-servers", {"name": "m0", "url": "http://x/mcp"}, {},
     "MCP server 'm0' already exists; remove it first (DELETE /admin/v1/mcp-servers/m0) or pick another name"),
    ("GET", "/audit", None, {"type": ""}, "unknown event type '': use a family"),
    ("GET", "/audit", None, {"actor": ""}, "the actor filter is empty and would match nothing"),
    ("GET", "/requests", None, {"tag": ""}, "the tag filter is empty and would match nothing"),
    ("GET", "/sessions", None, {"user": ""}, "the user filter is empty and would match nothing"),
    ("GET", "/usage", None, {"key": ""}, "the key filter is empty and would match nothing"),
    ("GET", "/keys", None, {"team": ""}, "the team filter is empty and would match nothing"),
    # an empty name in the path: the thing's own 404, not "no such endpoint"
    ("GET", "/keys/", None, {}, "no virtual key named or with id ''; see GET /admin/v1/keys"),
    # an item with no read of its own (changed or removed in place): read it in its collection's list
    ("GET", "/providers/openai", None, {}, "this path takes DELETE, PATCH; read providers from the list: "
                                           "GET /admin/v1/providers"),
    ("GET", "/pricing/gpt-4o", None, {}, "read pricing from the list: GET /admin/v1/pricing"),
    ("GET", "/budgets/key/app", None, {}, "read budgets from the list: GET /admin/v1/budgets"),
    ("DELETE", "/providers/", None, {}, "no provider named ''; see GET /admin/v1/providers"),
    ("GET", "/audit", None, {"type": "virtual_key.revokd"}, "(GET /admin/v1/audit shows every type)"),
    ("GET", "/requests", None, {"route": "chat"}, "malformed route 'chat': use a route such as /v1/chat/completions"),
    ("POST", "/sessions/ses_nope/revoke", None, {}, "never existed); see GET /admin/v1/sessions"),
    ("POST", "/sessions/revoke", {"user": "nobody@example.com"}, {},
     "has no console session running; see GET /admin/v1/sessions for the users signed in"),
    # a body that is JSON but no object: the example is one this route takes, not a chat request
    ("POST", "/keys", [], {}, 'the request body must be a JSON object, e.g. {"name": ..., "models": ..., ...}'),
    ("PUT", "/budgets/key/app", 5, {}, 'the request body must be a JSON object, e.g. {"amount_usd": ..., '
                                       '"period": ...}'),
    # a secret to store on a node without SHIELDES_ENCRYPTION_KEY (an external database): sent another way
    ("POST", "/providers", {"name": "p", "type": "openai", "base_url": "http://x", "models": ["a"], "api_key": "sk"},
     {}, "or send `api_key_env` (a variable each node reads) instead"),
    ("POST", "/mcp-servers", {"name": "m", "url": "http://x/mcp", "headers": {"Authorization": "Bearer t"}}, {},
     'SHIELDES_ENCRYPTION_KEY on the node; set it (`base64:` and 32 random bytes in base64 make one), or send it '
     'in `header_envs` ({"Name": "VAR"}) instead'),
]


async def test_refusals_name_fields_and_routes_not_cli_flags(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        assert (await api.post(f"{API}/teams", {"name": "eng"}))[0] == 201
        assert (await api.post(f"{API}/keys", {"name": "app"}))[0] == 201
        assert (await api.post(f"{API}/mcp-servers", {"name": "m0", "url": "http://x/mcp"}))[0] == 201
        for method, path, body, query, fragment in BAD:
            status, answer = await api.call(method, API + path, body, **query)
            message = answer["error"]["message"]
            assert 400 <= status < 500 and fragment in message, (method, path, body, query, status, message)
            assert not CLI_TERMS.search(message), (method, path, message)
        # removing the last provider of an alias's fallback: refused in the API's words too
        assert (await api.post(f"{API}/providers", {"name": "solo", "type": "openai", "base_url": "http://x",
                                                    "models": ["solo-model"]}))[0] == 201
        assert (await api.call("PUT", f"{API}/aliases/al2", {"targets": ["openai/gpt-4o"],
                                                             "fallbacks": ["solo-model"]}))[0] == 200
        status, answer = await api.call("DELETE", f"{API}/providers/solo", None)
        message = answer["error"]["message"]
        assert status == 400 and "(PUT /admin/v1/aliases/{name})" in message, message
        assert not CLI_TERMS.search(message), message
        # a cursor is a place in the name order (docs/admin-api.md): past the last name, the end
        assert (await api.post(f"{API}/keys", {"name": "zed"}))[0] == 201
        status, first = await api.get(f"{API}/keys", limit=1)
        assert status == 200 and first["next_after"] == "app"
        status, second = await api.get(f"{API}/keys", limit=1, after=first["next_after"])
        assert status == 200 and [k["name"] for k in second["data"]] == ["zed"] and not second["has_more"]
        status, between = await api.get(f"{API}/keys", after="b")  # no key's name: the names after it
        assert status == 200 and [k["name"] for k in between["data"]] == ["zed"]
        status, end = await api.get(f"{API}/keys", after="zzz")
        assert (status, end["data"], end["has_more"], end["next_after"]) == (200, [], False, None)
        # what is said beside a write (`warnings`) is in the API's words too
        status, key = await api.post(f"{API}/keys", {"name": "w", "models": ["no-such-model"]})
        assert status == 201 and key["warnings"] == [
            "no provider serves model 'no-such-model' yet: requests for it get 404 until a provider lists it (POST "
            "/admin/v1/providers, or PATCH /admin/v1/providers/{name}, with no-such-model in `models`)"]
        status, alias = await api.call("PUT", f"{API}/aliases/gpt-4o", {"targets": ["solo/solo-model"]})
        assert status == 200 and len(alias["warnings"]) == 1 and alias["warnings"][0].endswith(
            "add openai/gpt-4o to `targets` if they should keep serving it"), alias
        assert not any(CLI_TERMS.search(w) for w in key["warnings"] + alias["warnings"])
        # the CLI in remote mode asks for its own words: the same refusal names the flag (remote and
        # direct mode print the same line: test_cli_remote.py)
        status, answer = await api.call("POST", f"{API}/keys", {"name": "k", "rpm": -1},
                                        headers={CLI_WORDING: "cli"})
        assert status == 400 and answer["error"]["message"].startswith("--rpm must be")

