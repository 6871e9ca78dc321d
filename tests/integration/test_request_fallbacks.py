"""A request's own fallbacks, as apps moved from LiteLLM (`fallbacks: ["gpt-4o-mini"]`, `[{"model":
...}]`, `disable_fallbacks`) and Bifrost (`fallbacks: ["openai/gpt-4o-mini"]`) send them, through a
real node and the official SDKs: tried in order once the requested model's deployments fail (before
a stream's first byte only), never forwarded, held to the key's models, billed to the model that
answered, and said in the answer's headers and the request log. Before, they were dropped (named
in x-shieldes-dropped) and an app that relied on them lost its failover silently."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetModelAlias, SetPricing
from shieldes.projections.state import AliasTarget
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness, wait_until
from tests.integration.test_request_log import flushed

HELLO: Any = [{"role": "user", "content": "say hello"}]
CLAUDE = "claude-3-5-haiku-latest"
TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")
DEAD = "http://127.0.0.1:1"  # nothing listens: every call to it fails to connect (retryable)


async def _dead_deployments(h: Harness) -> None:
    """`big-model` (OpenAI-compatible) and `claude-old` (Anthropic) are served only by deployments
    that cannot be reached; the harness's `openai` and `claude` deployments answer."""
    ref = "env:" + UPSTREAM_KEY_ENV
    await h.admin(AddProvider("dead", "openai", DEAD, ref, ("big-model",)))
    await h.admin(AddProvider("deadclaude", "anthropic", DEAD, ref, ("claude-old",)))


def _fell_back(headers: Any, name: str, model: str) -> None:
    assert headers["x-shieldes-fallback"] == name, dict(headers)
    assert headers["x-shieldes-upstream-model"] == model
    assert "x-shieldes-dropped" not in headers  # honoured, not dropped


async def test_openai_routes_fall_back_to_the_models_the_request_names(database_url: str) -> None:
    async with harness(database_url, request_log_interval=0.05) as h:
        await _dead_deployments(h)
        await h.admin(SetPricing("gpt-4o-mini", 1.0, 4.0))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        up = h.upstream
        fell: dict[str, str] = {}  # request id -> the fallback that answered

        # LiteLLM's strings: the dead model fails, the next names answer in order
        raw: Any = await client.chat.completions.with_raw_response.create(
            model="big-model", messages=HELLO, extra_body={"fallbacks": ["claude-old", "gpt-4o-mini"]})
        _fell_back(raw.headers, "gpt-4o-mini", "gpt-4o-mini")
        assert raw.parse().choices[0].message.content == "Hello from the fake upstream"
        sent = up.last("/v1/chat/completions").body
        assert sent["model"] == "gpt-4o-mini" and "fallbacks" not in sent
        fell[raw.headers["x-request-id"]] = "gpt-4o-mini"

        # Bifrost's provider/model, to a model of another API (translated there)
        raw = await client.chat.completions.with_raw_response.create(
            model="big-model", messages=HELLO, stream=True, extra_body={"fallbacks": [f"claude/{CLAUDE}"]})
        _fell_back(raw.headers, f"claude/{CLAUDE}", CLAUDE)
        assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        assert "fallbacks" not in up.last("/v1/messages").body
        fell[raw.headers["x-request-id"]] = f"claude/{CLAUDE}"

        # LiteLLM's objects: the model is tried with its settings (test_fallback_overrides.py); other keys named
        raw = await client.completions.with_raw_response.create(
            model="big-model", prompt="say hello",
            extra_body={"fallbacks": [{"model": "gpt-4o-mini", "temperature": 0.1, "mock_response": "hi"}]})
        assert raw.headers["x-shieldes-fallback"] == "gpt-4o-mini"
        assert raw.headers["x-shieldes-dropped"] == "fallbacks[0].mock_response"
        assert up.last("/v1/completions").body["model"] == "gpt-4o-mini"
        assert up.last("/v1/completions").body["temperature"] == 0.1
        fell[raw.headers["x-request-id"]] = "gpt-4o-mini"

        # the requested model answers: no fallback tried, nothing said
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO, extra_body={"fallbacks": ["gpt-4o-mini"]})
        assert "x-shieldes-fallback" not in raw.headers and up.last().body["model"] == "gpt-4o"
        fell[raw.headers["x-request-id"]] = ""

        # Responses, JSON and stream
        raw = await client.responses.with_raw_response.create(model="big-model", input="hi",
                                                              extra_body={"fallbacks": ["gpt-4o-mini"]})
        _fell_back(raw.headers, "gpt-4o-mini", "gpt-4o-mini")
        assert raw.parse().output_text
        fell[raw.headers["x-request-id"]] = "gpt-4o-mini"
        raw = await client.responses.with_raw_response.create(model="big-model", input="hi", stream=True,
                                                              extra_body={"fallbacks": ["gpt-4o-mini"]})
        _fell_back(raw.headers, "gpt-4o-mini", "gpt-4o-mini")
        assert [e async for e in raw.parse()][-1].type == "response.completed"
        fell[raw.headers["x-request-id"]] = "gpt-4o-mini"

        # embeddings do not fall back (another model's vectors are in another space): left out, named
        raw = await client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi",
                                                               extra_body={"fallbacks": ["gpt-4o-mini"]})
        assert raw.headers["x-shieldes-dropped"] == "fallbacks" and "x-shieldes-fallback" not in raw.headers
        assert "fallbacks" not in up.last("/v1/embeddings").body

        # the request log says which model served and which fallback; the bill is the model that answered
        await flushed(h, len(fell))
        rows = h.sql("SELECT request_id, model, upstream_model, fallback, cost_nusd, prompt_tokens,"
                     " completion_tokens, failover_path FROM request_log")
        logged = {r[0]: r for r in rows if r[0] in fell}
        assert {rid: r[3] or "" for rid, r in logged.items()} == fell
        first = logged[next(iter(fell))]
        assert first[1:3] == ("big-model", "gpt-4o-mini") and first[7][0] == "dead" and first[7][-1] == "openai"
        assert first[4] == first[5] * 1000 + first[6] * 4000  # gpt-4o-mini's price ($1/$4 per 1M: nUSD per token)


async def test_a_stream_falls_back_only_before_its_first_byte(database_url: str) -> None:
    async with harness(database_url, upstream_retries=0) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        up = h.upstream
        # the upstream says it is overloaded in the stream's first event: nothing went out yet
        up.inject("/v1/chat/completions", stream_error="server_error")
        raw: Any = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO, stream=True, extra_body={"fallbacks": [CLAUDE]})
        _fell_back(raw.headers, CLAUDE, CLAUDE)
        assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        # it breaks after two frames: the client has them, so it gets the error, not another model's text
        to_claude = len(up.requests_to("/v1/messages"))
        up.inject("/v1/chat/completions", disconnect_after=2)
        stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                      extra_body={"fallbacks": [CLAUDE]})
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass
        assert len(up.requests_to("/v1/messages")) == to_claude


async def test_messages_fall_back_through_the_anthropic_sdk(database_url: str) -> None:
    async with harness(database_url) as h:
        await _dead_deployments(h)
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        for stream in (False, True):
            raw: Any = await claude.messages.with_raw_response.create(
                model="claude-old", max_tokens=16, messages=HELLO, stream=stream,
                extra_body={"fallbacks": [CLAUDE], "num_retries": 1})
            assert raw.headers["x-shieldes-fallback"] == CLAUDE and raw.headers["x-shieldes-dropped"] == "num_retries"
            if stream:
                assert [e.type async for e in await raw.parse()][-1] == "message_stop"
            sent = h.upstream.last("/v1/messages").body
            assert sent["model"] == CLAUDE and not {"fallbacks", "num_retries"} & set(sent)
        # an OpenAI model as a Messages fallback: translated there
        msg = await claude.messages.create(model="claude-old", max_tokens=16, messages=HELLO,
                                           extra_body={"fallbacks": ["gpt-4o-mini"]})
        assert msg.content and h.upstream.last().path == "/v1/chat/completions"


async def test_fallbacks_the_key_may_not_use_or_nobody_serves_are_refused_before_any_call(database_url: str) -> None:
    async with harness(database_url) as h:
        await _dead_deployments(h)
        secret = await h.create_key("narrow", models=("big-model", "gpt-4o", "claude-old"))
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        calls = len(h.upstream.requests)
        refusals: list[tuple[Any, type[Exception], str]] = [
            (["gpt-4o", "gpt-4o-mini"], openai.PermissionDeniedError,
             "fallbacks[1]: key 'narrow' may not use model 'gpt-4o-mini'; remove it from `fallbacks`"),
            (["nope"], openai.NotFoundError, "fallbacks[0]: model 'nope' is not served by any provider"),
            ("gpt-4o", openai.BadRequestError, "field 'fallbacks' has the wrong type"),
            ([7], openai.BadRequestError, "fallbacks[0] must be a model name"),
            ([{"messages": []}], openai.BadRequestError, "fallbacks[0].model must be a model name"),
            (["gpt-4o"] * 6, openai.BadRequestError, "field 'fallbacks' has 6 entries"),
        ]
        for fallbacks, error, message in refusals:
            with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")) as got:
                await client.chat.completions.create(model="big-model", messages=HELLO,
                                                     extra_body={"fallbacks": fallbacks})
            body: Any = got.value.body
            if error is openai.BadRequestError:
                assert body["param"].startswith("fallbacks")
        with pytest.raises(openai.BadRequestError, match="'disable_fallbacks' has the wrong type"):
            await client.responses.create(model="big-model", input="hi", extra_body={"disable_fallbacks": "yes"})
        with pytest.raises(anthropic.PermissionDeniedError, match=r"fallbacks\[0\]: key 'narrow' may not use") as err:
            await claude.messages.create(model="claude-old", max_tokens=16, messages=HELLO,
                                         extra_body={"fallbacks": [CLAUDE]})
        assert err.value.body["type"] == "error"  # (Anthropic's shape)  # type: ignore[index]
        assert len(h.upstream.requests) == calls  # no upstream saw any of them


async def test_disable_fallbacks_turns_off_the_aliases_own(database_url: str) -> None:
    async with harness(database_url, upstream_retries=0) as h:
        await _dead_deployments(h)
        await h.admin(SetModelAlias("smart", (AliasTarget("dead", "big-model"),), ("gpt-4o-mini",)))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        raw: Any = await client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
        assert raw.headers["x-shieldes-fallback"] == "gpt-4o-mini"  # (the alias's own, said the same way)
        calls = len(h.upstream.requests)
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="smart", messages=HELLO, extra_body={"disable_fallbacks": True})
        assert err.value.status_code == 502 and len(h.upstream.requests) == calls
        # the request's own still apply, before the alias's (which are off here)
        raw = await client.chat.completions.with_raw_response.create(
            model="smart", messages=HELLO, extra_body={"fallbacks": [CLAUDE], "disable_fallbacks": True})
        assert raw.headers["x-shieldes-fallback"] == CLAUDE


async def test_an_aliases_unpriced_fallback_is_left_out_for_a_budgeted_key(database_url: str) -> None:
    """A configured fallback the budget cannot be held to is never tried for a budgeted key, and the
    requested model still serves it (refusing the request for it had cost migrated configs their
    models); a key without a budget still falls back to it."""
    async with harness(database_url, upstream_retries=0) as h:
        await _dead_deployments(h)
        await h.admin(SetPricing("big-model", 1.0, 1.0))
        # a model nobody priced (no shipped price either), served by the answering upstream
        await h.admin(AddProvider("house", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("house-model",)))
        await h.admin(SetModelAlias("smart", (AliasTarget("dead", "big-model"),), ("house-model",)))
        await h.admin(SetModelAlias("fine", (AliasTarget("openai", "gpt-4o"),), ("house-model",)))
        budgeted = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("b", budget_usd=5.0),
                                      max_retries=0)
        free = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("f"), max_retries=0)
        await h.sync()
        answer = await budgeted.chat.completions.create(model="fine", messages=HELLO)  # its own model serves
        assert answer.choices[0].message.content and h.upstream.last().body["model"] == "gpt-4o"
        calls = len(h.upstream.requests)
        with pytest.raises(openai.APIStatusError) as err:  # the dead model fails; the unpriced one is not tried
            await budgeted.chat.completions.create(model="smart", messages=HELLO)
        assert err.value.status_code == 502 and len(h.upstream.requests) == calls
        raw: Any = await free.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
        assert raw.headers["x-shieldes-fallback"] == "house-model"


async def test_a_budgeted_keys_fallbacks_are_decided_once_per_config_and_a_change_is_seen_at_once(
        database_url: str) -> None:
    """Which configured fallbacks a budgeted key keeps (and every route's fallback groups) is
    decided once per config, not on every request; a price or alias change made meanwhile is seen
    by the very next request."""
    async with harness(database_url, upstream_retries=0) as h:
        await _dead_deployments(h)
        await h.admin(SetPricing("big-model", 1.0, 1.0))
        await h.admin(AddProvider("house", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("house-model",)))
        await h.admin(SetModelAlias("smart", (AliasTarget("dead", "big-model"),), ("house-model",)))
        secret = await h.create_key("b", budget_usd=5.0)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        gw = h.node.gateway
        key = gw.authenticate(f"Bearer {secret}")
        kept = gw.route(key, "smart")
        assert kept.fallbacks == () and gw.route(key, "smart") is kept  # (unpriced: left out, once)
        assert gw.fallback_groups(kept) is gw.fallback_groups(kept)
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="smart", messages=HELLO)
        assert err.value.status_code == 502
        await h.admin(SetPricing("house-model", 1.0, 1.0))  # priced now: the next request may fall back to it
        await h.sync()
        raw: Any = await client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
        assert raw.headers["x-shieldes-fallback"] == "house-model"
        await h.admin(SetModelAlias("smart", (AliasTarget("dead", "big-model"),), ("gpt-4o-mini",)))
        await h.sync()
        raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
        assert raw.headers["x-shieldes-fallback"] == "gpt-4o-mini"  # (no price of its own: the shipped one)


async def test_a_budget_holds_the_request_at_its_dearest_fallback(database_url: str) -> None:
    async with harness(database_url) as h:
        await _dead_deployments(h)
        await h.admin(SetPricing("gpt-4o", 0.01, 0.01))
        await h.admin(SetPricing("big-model", 0.01, 0.01))
        await h.admin(SetPricing("gpt-4o-mini", 1000.0, 1000.0))  # $1 buys about a thousand tokens of it
        secret = await h.create_key("app", budget_usd=1.0)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        up = h.upstream
        # a budgeted request naming no max_tokens is capped at what the budget buys of the model it may reach
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert up.last().body["max_completion_tokens"] == 4096  # (gpt-4o alone: the setting's cap)
        await client.chat.completions.create(model="gpt-4o", messages=HELLO, extra_body={"fallbacks": ["gpt-4o-mini"]})
        held = up.last().body["max_completion_tokens"]
        assert up.last().body["model"] == "gpt-4o" and 900 < held < 1000  # held as if the dear one answered
        # an unpriced fallback cannot be held to the budget: refused, naming it
        calls = len(up.requests)
        with pytest.raises(openai.PermissionDeniedError, match=r"model 'claude-old' \(a fallback, via 'claude-old'\) "
                                                               "has no price"):
            await client.chat.completions.create(model="gpt-4o", messages=HELLO,
                                                 extra_body={"fallbacks": ["claude-old"]})
        assert len(up.requests) == calls


async def test_a_fallback_whose_answer_is_dear_caps_the_completion_though_the_model_asked_has_a_dear_prompt(
        database_url: str) -> None:
    """Held at each price the dearest of the models it may reach has: a requested model with a dear
    prompt and a cheap answer, and a fallback with the opposite, held the request at the requested
    one (the dearer for a guessed 256-token answer), so its completion cap was what the budget buys
    of the cheap answer (4096 tokens), which the fallback would have billed far past the budget."""
    async with harness(database_url) as h:
        await h.admin(SetPricing("gpt-4o", 1000.0, 0.01))  # $1 per 1000 prompt tokens; answers nearly free
        await h.admin(SetPricing("gpt-4o-mini", 0.01, 1000.0))  # the opposite
        secret = await h.create_key("app", budget_usd=1.0)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        long: Any = [{"role": "user", "content": "word " * 300}]  # about 375 prompt tokens: $0.375 at gpt-4o
        await client.chat.completions.create(model="gpt-4o", messages=long, extra_body={"fallbacks": ["gpt-4o-mini"]})
        cap = h.upstream.last().body["max_completion_tokens"]
        # what is left after the prompt at the dearer prompt price buys ~600 tokens at the dearer answer price
        assert 500 < cap < 700, cap
        await h.admin(SetPricing("gpt-4o-mini", 0.01, 0.01))  # (decided once per config: a new price counts)
        await h.sync()
        await client.chat.completions.create(model="gpt-4o", messages=long, extra_body={"fallbacks": ["gpt-4o-mini"]})
        assert h.upstream.last().body["max_completion_tokens"] == 4096  # (the setting's cap)


async def test_a_responses_websocket_turn_falls_back_and_the_request_log_says_so(database_url: str) -> None:
    """Over the WebSocket each `response.create` is a request of its own: its fallbacks are
    honoured; with no per-answer headers there, the request log says which fallback served."""
    async with harness(database_url, request_log_interval=0.05) as h:
        await _dead_deployments(h)
        secret = await h.create_key("app")
        await h.sync()
        url = h.base.replace("http://", "ws://") + "/v1/responses"
        async with aiohttp.ClientSession() as s, s.ws_connect(url, headers={"Authorization": f"Bearer {secret}"}) as ws:
            await ws.send_json({"type": "response.create", "model": "big-model", "input": "hi",
                                "fallbacks": ["gpt-4o-mini"]})
            while (event := json.loads(await ws.receive_str(timeout=10)))["type"] not in TERMINAL:
                pass
            assert event["type"] == "response.completed", event
            await ws.send_json({"type": "response.create", "model": "big-model", "input": "hi", "fallbacks": "x"})
            while (event := json.loads(await ws.receive_str(timeout=10)))["type"] not in TERMINAL:
                pass
            assert event["type"] == "error" and "field 'fallbacks' has the wrong type" in json.dumps(event)
        assert h.upstream.last("/v1/chat/completions").body["model"] == "gpt-4o-mini"
        await flushed(h, 3)  # (the handshake's row, then a row per turn)
        rows = h.sql("SELECT model, upstream_model, fallback FROM request_log WHERE fallback IS NOT NULL")
        assert rows == [("big-model", "gpt-4o-mini", "gpt-4o-mini")]


async def test_a_background_response_falls_back_and_the_request_log_says_so(database_url: str) -> None:
    """A background run answers later, with no headers of its own: the request log says which
    fallback served it."""
    async with harness(database_url, request_log_interval=0.05) as h:
        await _dead_deployments(h)
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        created = await client.responses.create(model="big-model", input="hi", background=True,
                                                extra_body={"fallbacks": ["gpt-4o-mini"]})
        done: list[Any] = []

        async def finished() -> bool:
            done.append(await client.responses.retrieve(created.id))
            return done[-1].status not in ("queued", "in_progress")

        while not await finished():
            await asyncio.sleep(0.02)
        assert done[-1].status == "completed" and done[-1].output_text
        writer = h.node.request_log
        assert writer is not None
        query = ("SELECT model, upstream_model, fallback FROM request_log WHERE route = '/v1/responses'"
                 " AND method = 'POST'")
        # (a background run's row is handed to the writer when the run ends, just after its status)
        await wait_until(lambda: writer.buffer.added >= 1 + len(done), timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql(query)
        assert rows == [("big-model", "gpt-4o-mini", "gpt-4o-mini")]


async def test_when_every_fallback_fails_the_error_names_each_model_tried_and_why(database_url: str) -> None:
    """Every model tried is named with why it failed, in each API's own error shape and in the
    request log (the console's opened request): before, the 502 named only the requested model and
    the last failure, so a client could not tell its fallbacks had been tried at all."""
    async with harness(database_url, upstream_retries=0, request_log_interval=0.05) as h:
        await _dead_deployments(h)
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        for path in ("/v1/chat/completions", "/v1/messages"):
            h.upstream.inject(path, status=500, times=None, message="the fake is down")
        every = ("every model tried for 'big-model' failed (4 attempt(s)): 'big-model' (deployment 'dead': "
                 "cannot connect to upstream deployment 'dead' at http://127.0.0.1:1")
        then = (", then fallback 'claude-old' (deployment 'deadclaude': cannot connect to upstream deployment",
                f", then fallback '{CLAUDE}' (deployment 'claude': 500: the fake is down), then fallback "
                "'gpt-4o-mini' (deployment 'openai': 500: the fake is down); retry later, or check the "
                "deployments named (`shieldes provider list`)")
        fallbacks = ["claude-old", CLAUDE, "gpt-4o-mini"]
        told: list[str] = []
        for stream in (False, True):  # a stream that fails before its first byte: the same error
            with pytest.raises(openai.APIStatusError) as err:
                await client.chat.completions.create(model="big-model", messages=HELLO, stream=stream,
                                                     extra_body={"fallbacks": fallbacks})
            assert err.value.status_code == 502
            told.append(err.value.message)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as err:
                await client.responses.create(model="big-model", input="hi", stream=stream,
                                              extra_body={"fallbacks": fallbacks})
            assert err.value.status_code == 502
            told.append(err.value.message)
        for stream in (False, True):
            with pytest.raises(anthropic.APIStatusError) as got:
                await claude.messages.create(model="big-model", max_tokens=16, messages=HELLO, stream=stream,
                                             extra_body={"fallbacks": fallbacks})
            assert got.value.status_code == 502
            body: Any = got.value.body
            assert body["type"] == "error"  # (Anthropic's shape)
            told.append(body["error"]["message"])
        for message in told:
            assert every in message and all(part in message for part in then), message
        # a background response, which fails later: its error says the same
        created = await client.responses.create(model="big-model", input="hi", background=True,
                                                extra_body={"fallbacks": fallbacks})
        done: Any = created
        while done.status in ("queued", "in_progress"):
            await asyncio.sleep(0.02)
            done = await client.responses.retrieve(created.id)
        assert done.status == "failed" and every in done.error.message and then[-1] in done.error.message
        await flushed(h, len(told))
        logged = h.sql("SELECT error_message, failover_path FROM request_log WHERE status = 502")
        assert len(logged) == len(told)
        for message, path in logged:
            assert every in message and then[-1] in message
            assert path == ["dead", "deadclaude", "claude", "openai"]
