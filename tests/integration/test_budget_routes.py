"""No route spends past a budget: every route that bills tokens is refused once the key's budget
cannot pay for it (in its API's own shape, nothing sent upstream), and a budgeted request naming no
bound on its output gets one at admission, whichever route admitted it. POST /v1/responses/compact
was billed as a turn but sent upstream unbounded: one long summary could spend a small budget
several times over."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from shieldes.projections.shared_commands import UpdateProvider
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_compaction import _socket

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
CONVERSATION: list[Any] = [{"role": "user", "content": "read the repo"},
                           {"role": "assistant", "content": "I read it."},
                           {"role": "user", "content": "now the tests"}]


def _client(h: Harness, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)


def _gemini(h: Harness, secret: str) -> genai.Client:
    return genai.Client(api_key=secret, http_options=types.HttpOptions(
        base_url=h.base, retry_options=types.HttpRetryOptions(attempts=1)))


async def test_every_route_that_bills_a_completion_sends_the_bound_upstream(database_url: str) -> None:
    """A budgeted request naming no output limit reaches the upstream with the one its hold was
    made for, whichever API it came in by; a Messages request always names its own."""
    async with harness(database_url, budget_max_tokens=321) as h:
        secret = await h.create_key("budgeted", budget_usd=5.0)
        await h.sync()
        client = _client(h, secret)
        await client.chat.completions.create(model="gpt-4o", messages=CONVERSATION)
        assert h.upstream.last(CHAT).body["max_completion_tokens"] == 321
        await client.completions.create(model="gpt-4o", prompt="hi")
        assert h.upstream.last("/v1/completions").body["max_tokens"] == 321
        await client.responses.create(model="gpt-4o", input="hi")
        assert h.upstream.last(CHAT).body["max_tokens"] == 321
        await client.responses.compact(model="gpt-4o", input=CONVERSATION)
        assert h.upstream.last(CHAT).body["max_tokens"] == 321
        await client.responses.create(model="gpt-4o", input=[*CONVERSATION, {"type": "compaction_trigger"}],
                                      store=False)  # a compaction as Codex asks for it: the summary's bound
        assert h.upstream.last(CHAT).body["max_tokens"] == 321
        await client.close()
        gemini = _gemini(h, secret)
        await gemini.aio.models.generate_content(model="gpt-4o-mini", contents="hi")
        sent = h.upstream.last(CHAT).body
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 321, sent
        async for _ in await gemini.aio.models.generate_content_stream(model="gpt-4o-mini", contents="hi"):
            pass
        sent = h.upstream.last(CHAT).body
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 321, sent
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=99,
                                     messages=[{"role": "user", "content": "hi"}])
        await claude.close()
        assert h.upstream.last("/v1/messages").body["max_tokens"] == 99


async def test_a_budgeted_compaction_gets_the_bound_a_turn_gets(database_url: str) -> None:
    """On a translate deployment (the summary asked of a chat model) and a native one (OpenAI
    compacts), through the openai SDK's responses.compact(): a budgeted key's compaction reaches
    the upstream with the bound; an unbudgeted key's without one; one naming its own bound keeps it."""
    async with harness(database_url, budget_max_tokens=321) as h:
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        for mode in ("translate", "native"):
            if mode == "native":
                await h.admin(UpdateProvider("openai", responses="native"))
                await h.sync()
            path, bound = (CHAT, "max_tokens") if mode == "translate" else (RESPONSES, "max_output_tokens")
            for secret in (budgeted, free):
                client = _client(h, secret)
                compacted = await client.responses.compact(model="gpt-4o", input=CONVERSATION)
                assert compacted.output[-1].type == "compaction"
                sent = h.upstream.last(path).body
                if secret == budgeted:
                    assert sent.get(bound) == 321, (mode, sent)
                else:
                    assert bound not in sent and "max_completion_tokens" not in sent, (mode, sent)
                await client.close()
            client = _client(h, budgeted)
            await client.responses.compact(model="gpt-4o", input=CONVERSATION, extra_body={"max_output_tokens": 77})
            await client.close()
            assert h.upstream.last(path).body.get(bound) == 77, mode


async def test_a_compaction_is_bounded_by_what_the_budget_has_left(database_url: str) -> None:
    """$0.01 of gpt-4o output ($10 / 1M) buys 1000 tokens: the compaction's bound is what is left
    after its prompt's estimate, not SHIELDES_BUDGET_MAX_TOKENS, as a chat request's is."""
    async with harness(database_url) as h:
        secret = await h.create_key("small", budget_usd=0.01)
        await h.sync()
        client = _client(h, secret)
        await client.responses.compact(model="gpt-4o", input=CONVERSATION)
        await client.close()
        cap = h.upstream.last(CHAT).body["max_tokens"]
        assert 900 < cap < 1000, cap


async def test_every_billed_route_is_refused_when_the_budget_cannot_pay(database_url: str) -> None:
    """A key whose budget is nearly nothing: each route that bills tokens is a 429 `budget_exceeded`
    in its API's shape that tells the SDKs not to retry, before anything reaches the upstream;
    counting tokens, which costs nothing, is still answered."""
    async with harness(database_url) as h:
        broke = await h.create_key("broke", budget_usd=0.000001, budget_period="1d")
        await h.sync()
        client = _client(h, broke)
        calls: list[tuple[str, Any]] = [
            ("chat", lambda: client.chat.completions.create(model="gpt-4o", messages=CONVERSATION)),
            ("completions", lambda: client.completions.create(model="gpt-4o", prompt="hi")),
            ("embeddings", lambda: client.embeddings.create(model="text-embedding-3-small", input="x" * 400)),
            ("responses", lambda: client.responses.create(model="gpt-4o", input=CONVERSATION)),
            ("streamed", lambda: client.responses.create(model="gpt-4o", input="hi", stream=True)),
            ("background", lambda: client.responses.create(model="gpt-4o", input="hi", background=True)),
            ("trigger", lambda: client.responses.create(
                model="gpt-4o", input=[*CONVERSATION, {"type": "compaction_trigger"}], store=False)),
            ("compact", lambda: client.responses.compact(model="gpt-4o", input=CONVERSATION)),
        ]
        for name, call in calls:
            with pytest.raises(openai.RateLimitError) as err:
                await call()
            assert err.value.code == "budget_exceeded", name
            assert err.value.response.headers["x-should-retry"] == "false", name
            assert "raise it with `shieldes budget set`" in err.value.message, name
        await client.close()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=broke, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as refused:
            await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=100,
                                         messages=[{"role": "user", "content": "hi"}])
        assert "budget exceeded" in str(refused.value.message)
        assert refused.value.response.headers["x-should-retry"] == "false"
        async with _socket(h, broke) as ws:  # a WebSocket turn, as Codex sends it: an error event
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi", "store": False})
            event = json.loads(await ws.receive_str(timeout=10))
            assert event["type"] == "error" and event["status"] == 429, event
            assert event["error"]["code"] == "budget_exceeded", event
        gemini = _gemini(h, broke)
        for name, google in (("generate", lambda: gemini.aio.models.generate_content(model="gpt-4o-mini",
                                                                                      contents="hi")),
                             ("embed", lambda: gemini.aio.models.embed_content(model="text-embedding-3-small",
                                                                               contents=["x" * 400]))):
            with pytest.raises(errors.ClientError) as exhausted:
                await google()
            assert (exhausted.value.code, exhausted.value.status) == (429, "RESOURCE_EXHAUSTED"), name
            assert "budget exceeded" in (exhausted.value.message or ""), name
        assert h.upstream.requests == [], [r.path for r in h.upstream.requests]
        counted = await claude.messages.count_tokens(model="claude-3-5-haiku-latest",
                                                     messages=[{"role": "user", "content": "hi"}])
        assert counted.input_tokens > 0
        await claude.close()


async def test_a_fallbacks_own_output_limit_stays_within_a_budgeted_requests_own(database_url: str) -> None:
    """A budgeted request naming its own max_tokens is held for that many: a LiteLLM fallback entry
    asking more (`fallbacks: [{"model": M, "max_tokens": N}]`) was applied to the fallback's attempts,
    which could spend past the hold; it is held to the request's bound and named, as it is under the
    gateway's bound. A lower one applies; an unbudgeted key's applies whatever it is."""
    async with harness(database_url, upstream_retries=0) as h:
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        up = h.upstream
        for secret, limit, sent, named in ((budgeted, 10**6, 50, "fallbacks[0].max_tokens"), (budgeted, 20, 20, None),
                                           (free, 10**6, 10**6, None)):
            client = _client(h, secret)
            up.inject(CHAT, status=500, message="down")  # the requested model's one attempt fails
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=CONVERSATION, max_tokens=50,
                extra_body={"fallbacks": [{"model": "gpt-4o-mini", "max_tokens": limit}]})
            await client.close()
            assert raw.headers["x-shieldes-fallback"] == "gpt-4o-mini"
            assert raw.headers.get("x-shieldes-dropped") == named, (secret == free, limit)
            first, second = up.requests_to(CHAT)[-2:]
            assert first.body["max_tokens"] == 50 and second.body["max_tokens"] == sent, (secret == free, limit)


async def test_a_budgeted_turn_offering_searches_is_sent_the_tool_calls_held(database_url: str) -> None:
    """A budget holds 5 uses of a web or file search a Responses request offers; naming no
    max_tool_calls, an answer could run more and spend past the hold. A budgeted request is sent
    max_tool_calls = 5 (a turn, a compaction); its own bound is kept; an unbudgeted one, or one
    offering no per-use search, gets none."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        search: Any = [{"type": "web_search"}]
        files: Any = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]
        function: Any = [{"type": "function", "name": "ls", "parameters": {"type": "object", "properties": {}}}]
        code: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        for secret, tools, extra, held in ((budgeted, search, {}, 5), (budgeted, files, {}, 5),
                                           (budgeted, [*function, *search], {"max_tool_calls": 2}, 2),
                                           (budgeted, function, {}, None), (budgeted, code, {}, None),
                                           (free, search, {}, None)):
            client = _client(h, secret)
            await client.responses.create(model="gpt-4o", input="what changed?", tools=tools, extra_body=extra)
            await client.close()
            sent = h.upstream.last(RESPONSES).body
            assert sent.get("max_tool_calls") == held, (secret == free, tools, sent)
        client = _client(h, budgeted)
        await client.responses.compact(model="gpt-4o", input=CONVERSATION, extra_body={"tools": search})
        await client.close()
        assert h.upstream.last(RESPONSES).body["max_tool_calls"] == 5


async def test_a_budgeted_turn_naming_more_tool_calls_than_it_can_pay_is_refused(database_url: str) -> None:
    """A Responses request naming its own max_tool_calls may run that many searches: it is held for
    them, as for its own max_output_tokens, and refused when the budget cannot pay them (it was
    held for 5 and sent its own bound: an answer could search past the budget)."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        budgeted = await h.create_key("budgeted", budget_usd=1.0)
        await h.sync()
        client = _client(h, budgeted)
        before = len(h.upstream.requests_to(RESPONSES))
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o", input="what changed?", tools=[{"type": "web_search"}],
                                          max_tool_calls=100_000)
        body: Any = refused.value.body
        assert body["code"] == "budget_exceeded", body
        assert len(h.upstream.requests_to(RESPONSES)) == before  # nothing sent
        # a bound the budget can pay is held and sent as it came
        await client.responses.create(model="gpt-4o", input="what changed?", tools=[{"type": "web_search"}],
                                      max_tool_calls=8)
        assert h.upstream.last(RESPONSES).body["max_tool_calls"] == 8
        await client.close()


async def test_a_budgeted_messages_web_search_is_sent_the_uses_held(database_url: str) -> None:
    """Claude's web search without `max_uses` is held at 5 searches; the answer could run more and
    spend past the hold. A budgeted request is sent `max_uses: 5` on each such tool (the rest of the
    body as it came); its own bound is kept; an unbudgeted request is sent as it came."""
    async with harness(database_url) as h:
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        search: Any = {"type": "web_search_20250305", "name": "web_search"}
        ls: Any = {"name": "ls", "description": "list files", "input_schema": {"type": "object", "properties": {}}}
        for secret, tools, uses in ((budgeted, [ls, search], [None, 5]), (budgeted, [{**search, "max_uses": 2}], [2]),
                                    (free, [search], [None]), (budgeted, [ls], [None])):
            claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
            await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=100, tools=tools,
                                         messages=[{"role": "user", "content": "what is new?"}])
            await claude.close()
            sent = h.upstream.last("/v1/messages").body
            assert [tool.get("max_uses") for tool in sent["tools"]] == uses, (secret == free, sent["tools"])
            assert sent["messages"] == [{"role": "user", "content": "what is new?"}]
