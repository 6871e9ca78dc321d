"""What a user meets from the outside, through the official SDKs and raw HTTP against a real node:
each header style a client sends its key in, request bodies in encodings the node cannot read,
an upstream answering a web page where an event stream belongs, and the errors of unknown admin
routes and wrong methods, always in the API's own shape."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from shieldes.projections.commands import RevokeKey
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness

MSGS = [{"role": "user", "content": "hello there"}]
BOOT = "boot-" + "admin-token-for-outside-in-tests"


async def test_azure_style_clients_send_the_key_as_api_key(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("azure-app")
        revoked = await h.create_key("gone")
        await h.admin(RevokeKey("gone"))
        await h.sync()
        # The Azure client sends `api-key: <key>` and `?api-version=`, never a Bearer token.
        azure = openai.AsyncAzureOpenAI(base_url=h.base + "/v1", api_key=secret, api_version="2024-10-21",
                                        max_retries=0)
        chat = await azure.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        assert "api-key" not in h.upstream.last("/v1/chat/completions").headers  # the virtual key stays here
        stream = await azure.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in [c async for c in stream] if c.choices)
        await azure.close()

        gone = openai.AsyncAzureOpenAI(base_url=h.base + "/v1", api_key=revoked, api_version="2024-10-21",
                                       max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            await gone.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert "invalid or revoked API key" in err.value.message
        await gone.close()

        async with aiohttp.ClientSession() as s:
            async with s.get(h.base + "/v1/models", headers={"Authorization": "Basic dXNlcjpwdw=="}) as r:
                assert r.status == 401
                message = (await r.json())["error"]["message"]
            assert "scheme is 'Basic', not Bearer" in message and "Authorization: Bearer" in message
            async with s.post(h.base + "/v1/messages", headers={"api-key": secret, "anthropic-version": "2023-06-01"},
                              json={"model": "gpt-4o", "max_tokens": 5, "messages": MSGS}) as r:
                assert r.status == 200, await r.text()


async def test_azure_clients_reach_the_routes_azure_serves_outside_deployments(database_url: str) -> None:
    """The AzureOpenAI client (`azure_endpoint`) sends what is not per deployment (Responses, models)
    to /openai/..., and Azure's v1 API (`OpenAI(base_url=".../openai/v1")`) everything to
    /openai/v1/...: both are the gateway's routes, counted under their /v1 label."""
    async with harness(database_url, request_log_interval=0.05) as h:
        secret = await h.create_key("azure-app")
        await h.sync()
        azure = openai.AsyncAzureOpenAI(azure_endpoint=h.base, api_key=secret, api_version="2025-04-01-preview",
                                        max_retries=0)
        first = await azure.responses.create(model="gpt-4o", input="hello there")
        assert first.output_text == "Hello from the fake upstream"
        assert (await azure.responses.retrieve(first.id)).id == first.id
        assert "gpt-4o" in [m.id async for m in azure.models.list()]
        await azure.close()
        v1 = openai.AsyncOpenAI(base_url=h.base + "/openai/v1", api_key=secret, max_retries=0)
        chat = await v1.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        again = await v1.responses.create(model="gpt-4o", input="and again", previous_response_id=first.id)
        assert again.output_text == "Hello from the fake upstream"
        await v1.close()
        async with aiohttp.ClientSession() as s:
            async with s.get(h.base + "/metrics") as r:
                metrics = await r.text()
            async with s.post(h.base + "/openai/v2/chat/completions", json={}) as r:  # a path served nowhere
                assert r.status == 404
                assert "under Azure's /openai and /openai/v1" in (await r.json())["error"]["message"]
        assert 'route="/v1/responses"' in metrics and 'route="/openai' not in metrics


async def test_admin_bodies_in_encodings_the_node_cannot_read_get_a_400(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h, aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {BOOT}", "Content-Type": "application/json"}
        body = b'{"name": "zipped"}'
        for encoding, data, fragment in (("gzip", body, "not valid gzip data"),
                                         ("deflate", body, "not valid deflate data"),
                                         ("gzip", gzip.compress(body)[:-6], "not valid gzip data"),
                                         ("br", body, "Content-Encoding 'br' is not supported"),
                                         ("zstd", body, "Content-Encoding 'zstd' is not supported")):
            async with s.post(h.base + "/admin/v1/keys", data=data,
                              headers={**auth, "Content-Encoding": encoding}) as r:
                got = await r.json()
                assert r.status == 400, (encoding, got)
                assert got["error"]["code"] == "invalid_request" and fragment in got["error"]["message"], got
        async with s.post(h.base + "/admin/v1/keys", data=gzip.compress(body),
                          headers={**auth, "Content-Encoding": "gzip"}) as r:
            assert r.status == 201 and (await r.json())["name"] == "zipped"
        bomb = gzip.compress(b'{"name": "' + b"x" * (h.settings.max_body_bytes + 10) + b'"}')
        async with s.post(h.base + "/admin/v1/keys", data=bomb, headers={**auth, "Content-Encoding": "gzip"}) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "request_too_large"
        assert h.sql("SELECT count(*) FROM events WHERE type = 'virtual_key.created'")[0][0] == 1


async def test_a_web_page_where_an_event_stream_belongs_is_an_upstream_error(database_url: str) -> None:
    """A base URL pointing at a web UI answers 200 with HTML: relayed, a stream of it was an empty
    answer that looked complete (and was billed)."""
    page = "<html><body>Welcome to the chat UI</body></html>"
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        h.upstream.inject("/v1/chat/completions", page=page, times=None)
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        assert err.value.status_code == 502
        assert "without any server-sent event (Content-Type text/html)" in err.value.message
        assert "check the provider's base URL" in err.value.message
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert err.value.status_code == 502 and "body is not JSON" in err.value.message
        with pytest.raises(openai.APIStatusError) as err:
            await client.responses.create(model="gpt-4o", input="hi", stream=True)
        assert err.value.status_code == 502
        await client.close()

        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as aerr:
            async with claude.messages.stream(model="gpt-4o", max_tokens=5, messages=MSGS) as stream:  # type: ignore[arg-type]
                async for _ in stream:
                    pass
        assert aerr.value.status_code == 502 and "server-sent event" in aerr.value.message
        await claude.close()

        h.upstream.clear_faults()
        await h.flush()
        assert h.usage_totals() == {}  # nothing answered, nothing billed


async def test_admin_paths_are_told_apart_only_to_an_admin(database_url: str) -> None:
    """Without a valid admin token a wrong method on a real admin path and a path no route serves
    get the same 401 as any admin route, so the status does not tell which paths exist; an admin
    gets the 405 (naming the methods the path takes) and the 404."""
    probes = (("DELETE", "/admin/v1/keys"), ("PUT", "/admin/v1/node"), ("GET", "/admin/v1/tokens"),
              ("POST", "/admin/nope"), ("GET", "/admin"), ("OPTIONS", "/admin/v1/keys"))
    async with harness(database_url, admin_token=BOOT) as h, aiohttp.ClientSession() as s:
        # (8 failed sign-ins: under the 10 a minute an address may fail before a 429)
        for credential, asked in ((None, probes), ("Bearer wrong-token", probes[1:3])):
            for method, path in asked:
                headers = {"Authorization": credential} if credential else {}
                async with s.request(method, h.base + path, headers=headers) as r:
                    got = await r.json()
                assert (r.status, got["error"]["code"]) == (401, "invalid_admin_token"), (credential, method, path)
                assert r.headers["Cache-Control"] == "no-store", (method, path)
        auth = {"Authorization": f"Bearer {BOOT}"}
        seen = []
        for method, path in probes:
            async with s.request(method, h.base + path, headers=auth) as r:
                seen.append((r.status, (await r.json())["error"]["code"]))
        assert seen == [(405, "method_not_allowed"), (405, "method_not_allowed"), (404, "not_found"),
                        (404, "not_found"), (404, "not_found"), (405, "method_not_allowed")]
        async with s.delete(h.base + "/admin/v1/keys", headers=auth) as r:
            assert "this path takes GET, POST" in (await r.json())["error"]["message"]
        async with s.get(h.base + "/admin/v1/openapi.json") as r:  # public: it holds no data
            assert r.status == 200


async def test_unknown_admin_routes_and_wrong_methods_say_where_to_look(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h, aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {BOOT}"}
        async with s.get(h.base + "/admin/v1/tokens", headers=auth) as r:
            got = await r.json()
        assert r.status == 404 and got["error"]["code"] == "not_found"
        assert "GET /admin/v1/tokens" in got["error"]["message"] and "/admin/v1/openapi.json" in got["error"]["message"]
        async with s.get(h.base + "/admin/v1/node?verbose=1", headers=auth) as r:
            got = await r.json()
        assert r.status == 400 and "GET /admin/v1/node takes none; send it without a query string" in \
            got["error"]["message"], got
        async with s.delete(h.base + "/v1/messages", headers={"x-api-key": "x"}) as r:
            got = await r.json()
        assert r.status == 405 and got["type"] == "error"
        assert got["error"]["type"] == "invalid_request_error" and got["error"]["code"] == "method_not_allowed"
        assert "this path takes POST" in got["error"]["message"]


async def test_count_tokens_refuses_what_the_messages_route_refuses(database_url: str) -> None:
    """On an OpenAI-compatible deployment the count is an estimate that reads any shape: a body the
    Messages route refuses got a count (200) instead of the same 400."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        counted = await claude.messages.count_tokens(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert counted.input_tokens > 0
        for odd, fragment in (({"system": 5}, "`system` must be"), ({"tools": "search"}, "`tools` must be a list"),
                              ({"messages": [{"role": "robot", "content": "x"}]}, "role must be")):
            with pytest.raises(anthropic.BadRequestError) as err:
                await claude.messages.create(model="gpt-4o", max_tokens=5, messages=MSGS, extra_body=odd)  # type: ignore[arg-type]
            assert fragment in err.value.message, (odd, err.value.message)
            with pytest.raises(anthropic.BadRequestError) as err:
                await claude.messages.count_tokens(model="gpt-4o", messages=MSGS, extra_body=odd)  # type: ignore[arg-type]
            assert fragment in err.value.message, (odd, err.value.message)
        await claude.close()


async def test_malformed_http_on_any_route_is_a_json_400(database_url: str) -> None:
    """Requests the HTTP parser refuses before any route, on the routes aiohttp serves (admin API,
    GET routes, unknown paths), got aiohttp's text/plain 400 echoing the offending bytes."""
    async with harness(database_url, admin_token=BOOT) as h:
        for raw, fragment in (
            (b"GET /v1/models/a b HTTP/1.1\r\nHost: gw\r\n\r\n", "BadStatusLine"),
            (b"POST /admin/v1/keys HTTP/1.1\r\nHost: gw\r\nContent-Length: ten\r\n\r\n", "malformed HTTP request"),
            (b"FOO /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n", "BadHttpMethod"),
            (b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", "over 8190 bytes"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", h.node.port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 10)  # the connection closes after it
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], answer[:200]
            assert b"content-type: application/json" in head.lower() and b"x-request-id: " in head.lower()
            error = json.loads(body)["error"]
            assert error["code"] == "malformed_request" and fragment in error["message"], error
            assert b"ten" not in body and b"aaaa" not in body  # the offending bytes are not echoed


async def test_anthropic_model_list_pages_as_the_sdk_asks(database_url: str) -> None:
    """`limit`, `after_id` and `before_id` were ignored: every model came back whatever the page asked."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        every = sorted(["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "claude-3-5-haiku-latest"])
        assert [m.id async for m in claude.models.list()] == every
        first = await claude.models.list(limit=2)
        assert [m.id for m in first.data] == every[:2] and first.has_more and first.last_id == every[1]
        assert [m.id async for m in claude.models.list(limit=3)] == every  # the SDK follows has_more
        before = await claude.models.list(limit=1, before_id=every[2])
        assert [m.id for m in before.data] == [every[1]] and before.has_more
        with pytest.raises(anthropic.BadRequestError) as err:
            await claude.models.list(limit=0)
        assert "from 1 to 1000" in err.value.message
        await claude.close()
        async with aiohttp.ClientSession() as s, s.get(h.base + "/ui/no-such-page") as r:
            assert r.status == 404 and "the web console starts at GET /ui/" in (await r.json())["error"]["message"]


async def test_a_text_part_without_text_is_named_as_such(database_url: str) -> None:
    """Translated for an Anthropic deployment, a text part whose `text` is missing or not a string
    was refused as 'content part type 'text' is not supported here; use text or image_url'."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for part in ({"type": "text"}, {"type": "text", "text": 5}):
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model="claude-3-5-haiku-latest",
                                                     messages=[{"role": "user", "content": [part]}])  # type: ignore[list-item]
            assert "a text part needs `text` as a string" in err.value.message, err.value.message
        await client.close()


async def test_the_anthropic_sdk_gets_its_own_error_shape_from_the_model_routes(database_url: str) -> None:
    """`models.retrieve` of an unknown model and `models.list` with a wrong key answered the OpenAI
    shape to the anthropic SDK (no `"type": "error"`, `invalid_request_error` for a 404)."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as err:
            await claude.models.retrieve("claude-9")
        assert err.value.body == {"type": "error", "error": {"type": "not_found_error", "code": "model_not_found",
                                                             "message": err.value.body["error"]["message"]},
                                  "request_id": err.value.request_id}
        assert "GET /v1/models" in err.value.body["error"]["message"]
        wrong = anthropic.AsyncAnthropic(base_url=h.base, api_key="sk-shd-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as aerr:
            await wrong.models.list()
        assert isinstance(aerr.value.body, dict) and aerr.value.body["type"] == "error"
        assert aerr.value.body["error"]["type"] == "authentication_error"
        await claude.close()
        await wrong.close()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.NotFoundError) as oerr:
            await client.models.retrieve("claude-9")
        assert isinstance(oerr.value.body, dict)  # the openai SDK hands over the `error` object
        assert (oerr.value.body["type"], oerr.value.body["code"]) == ("invalid_request_error", "model_not_found")
        await client.close()


async def test_admin_writes_on_a_missing_subject_are_404s_as_reads_are(database_url: str) -> None:
    """Revoking, rotating or changing a key that does not exist (and a missing team, provider, alias
    or admin token) answered 400 `command_rejected`, while reading it answered 404 `key_not_found`."""
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        api_ = "/admin/v1"
        for method, path, body, code in (
            ("POST", "/keys/nope/revoke", None, "key_not_found"),
            ("POST", "/keys/nope/rotate", None, "key_not_found"),
            ("PATCH", "/keys/nope", {"rpm": 5}, "key_not_found"),
            ("PUT", "/budgets/key/nope", {"amount_usd": 5}, "key_not_found"),
            ("DELETE", "/budgets/key/nope", None, "key_not_found"),
            ("PUT", "/budgets/team/nope", {"amount_usd": 5}, "team_not_found"),
            ("PATCH", "/providers/nope", {"weight": 2}, "provider_not_found"),
            ("DELETE", "/providers/nope", None, "provider_not_found"),
            ("DELETE", "/aliases/nope", None, "alias_not_found"),
            ("POST", "/admin-tokens/nope/revoke", None, "admin_token_not_found"),
        ):
            status, got = await api.call(method, api_ + path, body)
            assert (status, got["error"]["code"]) == (404, code), (method, path, got)
            assert "'nope'" in got["error"]["message"]
        # a missing team named in the body is a wrong request, not a missing resource
        status, got = await api.post(api_ + "/keys", {"name": "k", "team": "nope"})
        assert status == 400 and got["error"]["code"] == "command_rejected" and "no team named" in \
            got["error"]["message"]
        assert h.sql("SELECT count(*) FROM events WHERE type = 'virtual_key.created'")[0][0] == 0


async def test_a_misspelt_audit_type_is_refused_not_an_empty_history(database_url: str) -> None:
    """`type=virtual_key.revokd` matched no row: an empty page that read as "never revoked"."""
    async with harness(database_url, admin_token=BOOT) as h:
        api = AdminClient(h.base, BOOT)
        status, got = await api.get("/admin/v1/audit", type="virtual_key.revokd")
        assert status == 400 and "did you mean 'virtual_key.revoked'?" in got["error"]["message"], got
        for known in ("virtual_key.revoked", "virtual_key", "provider"):
            status, got = await api.get("/admin/v1/audit", type=known)
            assert status == 200, got
        assert [e["type"] for e in got["data"]] == ["provider.added", "provider.added"]


async def test_an_input_of_the_wrong_type_is_not_called_missing(database_url: str) -> None:
    """`input: 5` on /v1/responses and /v1/embeddings and `prompt: 5` on /v1/completions were refused
    as "field ... is required", which sends the user looking for a field they did send; and an empty
    embeddings input as missing too."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for odd in (5, {"text": "hi"}, True):
            with pytest.raises(openai.BadRequestError) as err:
                await client.responses.create(model="gpt-4o", input=odd)  # type: ignore[arg-type]
            assert "field 'input' has the wrong type: a string or a list of input items" in err.value.message
            with pytest.raises(openai.BadRequestError) as err:
                await client.embeddings.create(model="text-embedding-3-small", input=odd)  # type: ignore[arg-type]
            assert "field 'input' has the wrong type: a non-empty string, a list of strings, or token ids" \
                in err.value.message
            with pytest.raises(openai.BadRequestError) as err:
                await client.completions.create(model="gpt-4o", prompt=odd)  # type: ignore[arg-type]
            assert "field 'prompt' has the wrong type: a string, a list of strings, or token ids" in err.value.message
        with pytest.raises(openai.BadRequestError) as err:
            await client.responses.create(model="gpt-4o")  # type: ignore[call-overload]
        assert "field 'input' is required" in err.value.message
        for empty in ("", []):
            with pytest.raises(openai.BadRequestError) as err:
                await client.embeddings.create(model="text-embedding-3-small", input=empty)
            assert "field 'input' is empty" in err.value.message
        async with aiohttp.ClientSession() as s:
            for path, field in (("/v1/embeddings", "input"), ("/v1/completions", "prompt")):
                async with s.post(h.base + path, json={"model": "gpt-4o"},
                                  headers={"Authorization": f"Bearer {secret}"}) as r:
                    assert r.status == 400
                    assert f"missing required field {field!r}" in (await r.json())["error"]["message"]
        assert (await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]])).data
        await client.close()


async def test_a_streamed_call_without_arguments_reaches_chat_and_responses_clients_as_an_empty_object(
        database_url: str) -> None:
    """Anthropic streams a call of a tool without parameters as one empty `partial_json`: chat
    clients got `arguments: ""` (OpenAI sends "{}"), which `json.loads` refuses, and so did
    Responses clients in `function_call.arguments`."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        now: Any = {"type": "function", "function": {"name": "current_time", "parameters": {"type": "object"}}}
        stream = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=MSGS, tools=[now],
                                                      stream=True)
        calls = [t async for c in stream if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert calls[0].function is not None and calls[0].function.name == "current_time"
        assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {}
        async with await client.responses.create(model="claude-3-5-haiku-latest", input="what time is it?", stream=True,
                                                 tools=[{"type": "function", "name": "current_time",
                                                         "parameters": {"type": "object"}}]) as events:
            seen = [e async for e in events]
        done = next(e for e in seen if e.type == "response.completed")
        call = done.response.output[0]
        assert call.type == "function_call" and json.loads(call.arguments) == {}
        await client.close()


async def test_a_body_nested_a_thousand_levels_deep_is_a_400_in_each_apis_shape(database_url: str) -> None:
    """The top-level split of a request body (msgspec) raised RecursionError past Python's recursion
    limit: /v1/messages answered a 500. Each hot route now refuses it as the client's error."""
    deep = "[" * 1100 + "]" * 1100
    async with harness(database_url) as h, aiohttp.ClientSession() as s:
        secret = await h.create_key("deep")
        await h.sync()
        for path, body in (
            ("/v1/messages", '{"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": %s}]}'),
            ("/v1/chat/completions", '{"model": "gpt-4o", "messages": [{"role": "user", "content": %s}]}'),
            ("/v1/responses", '{"model": "gpt-4o", "input": [{"role": "user", "content": %s}]}'),
            ("/v1/embeddings", '{"model": "text-embedding-3-small", "input": %s}'),
        ):
            headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
                       "anthropic-version": "2023-06-01"}
            async with s.post(h.base + path, data=body % deep, headers=headers) as r:
                assert r.status == 400, (path, r.status, await r.text())
                answer = await r.json()
            error = answer["error"]
            if path == "/v1/messages":
                assert answer["type"] == "error" and error["type"] == "invalid_request_error", answer
            else:
                assert error["code"] == "invalid_request", answer
            assert "nested less deeply" in error["message"], (path, error)
        assert not h.upstream.requests  # nothing reached the upstream


async def test_a_stream_options_include_usage_that_is_not_a_boolean_is_refused(database_url: str) -> None:
    """`stream_options: {"include_usage": "x"}` was read as false and the stream sent without the
    usage chunk the client may have meant to ask for; OpenAI refuses it with a 400, as here now."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        for odd in ("x", 1, "true"):
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                                     stream=True, stream_options={"include_usage": odd})  # type: ignore[typeddict-item]
            assert "field 'stream_options.include_usage' has the wrong type: true or false" in err.value.message
        assert h.upstream.requests_to("/v1/chat/completions") == []
        for fine in (True, False, None):
            stream = await client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                                          stream=True, stream_options={"include_usage": fine})  # type: ignore[typeddict-item]
            chunks = [c async for c in stream]
            assert (chunks[-1].usage is not None) is (fine is True)
        await client.close()


async def test_an_endpoint_the_gateway_lacks_is_refused_in_the_callers_shape(database_url: str) -> None:
    """A 404 on a path no route serves was in OpenAI's shape unless the path said otherwise: the
    anthropic SDK's files list, a google-genai client on Google's v1 API, /anthropic/... got an
    error object their SDK does not read (google-genai raised no ClientError code)."""
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types

    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as missing:
            await claude.beta.files.list()
        assert isinstance(missing.value.body, dict) and missing.value.body["type"] == "error", missing.value.body
        assert missing.value.body["error"]["type"] == "not_found_error"
        assert "GET /v1/files" in missing.value.body["error"]["message"]
        await claude.close()
        gemini = genai.Client(api_key=secret, http_options=genai_types.HttpOptions(
            base_url=h.base, api_version="v1", retry_options=genai_types.HttpRetryOptions(attempts=1)))
        with pytest.raises(genai_errors.ClientError) as google_missing:
            await gemini.aio.files.get(name="files/abc")
        assert google_missing.value.code == 404 and google_missing.value.status == "NOT_FOUND"
        async with aiohttp.ClientSession() as s, s.get(h.base + "/anthropic/v1/models") as r:
            got = await r.json()
            assert r.status == 404 and got["type"] == "error" and got["error"]["type"] == "not_found_error", got


async def test_a_wrong_method_names_the_methods_in_allow_on_every_route_family(database_url: str) -> None:
    """HTTP's 405 carries `Allow`; the gateway's named the methods only in its message."""
    probes = (("GET", "/v1/chat/completions", "POST", "error"), ("PUT", "/v1/models", "GET, HEAD", "error"),
              ("GET", "/v1/messages", "POST", "type"), ("PUT", "/v1beta/models", "GET, HEAD", "error"),
              ("GET", "/openai/deployments/x/chat/completions", "POST", "error"),
              ("DELETE", "/admin/v1/keys", "GET, POST", "error"))
    async with harness(database_url, admin_token=BOOT) as h, aiohttp.ClientSession() as s:
        for method, path, allow, top in probes:
            async with s.request(method, h.base + path, headers={"Authorization": f"Bearer {BOOT}"}) as r:
                got = await r.json()
            assert (r.status, r.headers.get("Allow")) == (405, allow), (method, path, dict(r.headers))
            assert top in got and "this path takes " + allow in json.dumps(got), (method, path, got)


async def test_a_model_request_refused_before_its_headers_are_read_gets_its_apis_shape(database_url: str) -> None:
    """A head too large on a model route is refused by the front before any handler, in OpenAI's
    shape whatever the route: Claude Code on /v1/messages got an error object not Anthropic's."""
    big = b"X-Big: " + b"b" * 8000 + b"\r\n"
    async with harness(database_url) as h:
        for raw, top in (
            (b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n" + big * 9 + b"\r\n", "anthropic"),
            (b"POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\n" + big * 9 + b"\r\n", "anthropic"),
            (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n" + big * 9 + b"\r\n", "openai"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", h.node.port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 10)  # the connection closes after it
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            assert status in (400, 414, 431) and b"application/json" in head.lower(), answer[:300]
            got = json.loads(body)
            assert ("anthropic" if got.get("type") == "error" else "openai") == top, (raw[:40], got)
