"""Budgets fail closed: admission counts spent + reserved + this request's estimate, a model without a
price is refused under a budget (unless the operator allows it), a budgeted request without
max_tokens gets a bound, and budget refusals tell the SDKs not to retry."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing, UpdateProvider
from tests.cli import invoke, ok
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

MSGS = [{"role": "user", "content": "hello there"}]


async def test_unpriced_model_under_a_budget_is_refused_unless_allowed(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(AddProvider("local", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("local-llm",)))
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=budgeted, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as err:
            await client.chat.completions.create(model="local-llm", messages=MSGS)  # type: ignore[arg-type]
        assert err.value.code == "model_not_priced"
        assert "shieldes pricing set local-llm" in err.value.message
        assert "SHIELDES_ALLOW_UNPRICED" in err.value.message
        assert h.upstream.requests_to("/v1/chat/completions") == []
        # a key without a budget has nothing to hold: served
        plain = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=free, max_retries=0)
        await plain.chat.completions.create(model="local-llm", messages=MSGS)  # type: ignore[arg-type]
        # once priced, the budgeted key is served too
        await h.admin(SetPricing("local-llm", 1.0, 2.0))
        await h.sync()
        await client.chat.completions.create(model="local-llm", messages=MSGS)  # type: ignore[arg-type]
        await client.close()
        await plain.close()


async def test_operator_may_allow_unpriced_models(database_url: str) -> None:
    async with harness(database_url, allow_unpriced=True) as h:
        await h.admin(AddProvider("local", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("local-llm",)))
        secret = await h.create_key("budgeted", budget_usd=5.0)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="local-llm", messages=MSGS)  # type: ignore[arg-type]
        await client.close()


async def test_admission_counts_the_estimate_and_reservations_and_says_do_not_retry(database_url: str) -> None:
    async with harness(database_url) as h:
        # gpt-4o output: $10 / 1M tokens, so max_tokens=600 estimates > $0.006
        secret = await h.create_key("tight", budget_usd=0.01)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=3)
        # alone, spent 0 + estimate fits
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=600)  # type: ignore[arg-type]
        # two at once: the first one's reservation plus the second one's estimate do not fit
        h.upstream.inject("/v1/chat/completions", delay=1.0)
        first = asyncio.ensure_future(
            client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=600))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        before = len(h.upstream.requests_to("/v1/chat/completions"))
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=600)  # type: ignore[arg-type]
        assert err.value.code == "budget_exceeded"
        assert err.value.response.headers["x-should-retry"] == "false"
        assert "lower max_tokens" in err.value.message
        # the SDK (max_retries=3) did not retry it: nothing more reached the gateway's upstream
        assert len(h.upstream.requests_to("/v1/chat/completions")) == before
        await first
        await client.close()


async def test_budgeted_request_without_max_tokens_gets_a_bound(database_url: str) -> None:
    async with harness(database_url, budget_max_tokens=321) as h:
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        for secret in (budgeted, free):
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            await client.close()
        sent = [r.body for r in h.upstream.requests_to("/v1/chat/completions")]
        assert sent[0]["max_completion_tokens"] == 321
        assert "max_completion_tokens" not in sent[1] and "max_tokens" not in sent[1]


def test_cli_warns_about_unpriced_models(database_url: str) -> None:
    added = invoke(database_url, "--json", "provider", "add", "local", "--type", "openai", "--base-url",
                   "http://127.0.0.1:9/v1", "--api-key-env", "X", "--models", "gpt-4o,local-llm")
    assert added.exit_code == 0
    assert "warning: no price for local-llm" in added.stderr and "shieldes pricing set local-llm" in added.stderr
    assert json.loads(added.stdout)["unpriced_models"] == ["local-llm"]
    key = invoke(database_url, "key", "create", "--name", "b", "--budget", "5")
    assert key.exit_code == 0 and "warning: no price for local-llm" in key.stderr
    unbudgeted = invoke(database_url, "key", "create", "--name", "u")
    assert unbudgeted.exit_code == 0 and "warning" not in unbudgeted.stderr
    ok(database_url, "pricing", "set", "local-llm", "--input", "1", "--output", "2")
    quiet = invoke(database_url, "key", "create", "--name", "c", "--budget", "5")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_a_key_allowed_only_an_alias_is_warned_of_its_unpriced_target(database_url: str) -> None:
    """An alias bills as its target's model: a budgeted key allowed only the alias would be refused
    every request (403 model_not_priced) without a word at `key create`."""
    ok(database_url, "provider", "add", "local", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1",
       "--api-key-env", "X", "--models", "local-llm")
    ok(database_url, "model", "alias", "fast", "--target", "local/local-llm")
    key = invoke(database_url, "--json", "key", "create", "--name", "b", "--models", "fast", "--budget", "5")
    assert key.exit_code == 0 and "warning: no price for local-llm" in key.stderr, key.stderr
    assert json.loads(key.stdout)["unpriced_models"] == ["local-llm"]
    ok(database_url, "pricing", "set", "local-llm", "--input", "1", "--output", "2")
    quiet = invoke(database_url, "key", "create", "--name", "c", "--models", "fast", "--budget", "5")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


async def test_the_bound_is_no_more_than_the_budget_has_left(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("small", budget_usd=0.01)  # gpt-4o output: $10 / 1M = 1000 tokens
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        await client.close()
        cap = h.upstream.last("/v1/chat/completions").body["max_completion_tokens"]
        assert 900 < cap < 1000  # what $0.01 buys after the prompt's estimate, not 4096 (refused)


async def test_the_estimate_holds_every_choice_asked_for(database_url: str) -> None:
    """`n` completions may each run to max_tokens and are all billed: the estimate held one, so a
    request for several passed a budget that could not pay for them."""
    async with harness(database_url) as h:
        tight = await h.create_key("tight", budget_usd=0.01)  # gpt-4o output: $10 / 1M = 1000 tokens
        capped = await h.create_key("capped", budget_usd=0.01)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=tight, max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:  # 2 x 600 tokens: $0.012
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=600, n=2)  # type: ignore[arg-type]
        assert err.value.code == "budget_exceeded"
        with pytest.raises(openai.RateLimitError):
            await client.completions.create(model="gpt-4o", prompt="hi", max_tokens=600, best_of=2)
        for odd, fragment in (({"n": 0}, "field 'n' must be a positive integer"),
                              ({"n": "2"}, "field 'n' has the wrong type")):
            with pytest.raises(openai.BadRequestError) as bad:
                await client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_body=odd)  # type: ignore[arg-type]
            assert fragment in bad.value.message
        assert h.upstream.requests_to("/v1/chat/completions") == []
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=600)  # type: ignore[arg-type]
        await client.close()
        # no max_tokens: the bound is shared by the choices, each of which may run to it
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=capped, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, n=4)  # type: ignore[arg-type]
        await client.close()
        sent = h.upstream.last("/v1/chat/completions").body
        assert sent["n"] == 4 and 200 < sent["max_completion_tokens"] < 250, sent


async def test_a_budget_smaller_than_one_request_says_so_in_dollars(database_url: str) -> None:
    """Through a node: the refusal of a request whose estimate alone passes a tiny budget gives the
    amounts as dollars (not `$1e-05`) and does not send the client to wait for the next day."""
    async with harness(database_url) as h:
        secret = await h.create_key("tiny", budget_usd=0.00001, budget_period="1mo")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=100)  # type: ignore[arg-type]
        await client.close()
        assert err.value.code == "budget_exceeded"
        message = err.value.message
        assert "$0.00 of $0.00001 spent" in message and "e-05" not in message
        assert "more than the whole budget" in message and "wait" not in message


async def test_a_budgeted_responses_turn_without_max_output_tokens_gets_a_bound(database_url: str) -> None:
    """A Responses turn naming no max_output_tokens was held at a guess (256 tokens) and sent
    without a bound: one long answer spent a small budget several times over. It gets the bound
    chat gets, on translate and native deployments, JSON and streamed; an unbudgeted turn none."""
    async with harness(database_url, budget_max_tokens=321) as h:
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        free = await h.create_key("free")
        await h.sync()
        for mode in ("translate", "native"):
            if mode == "native":
                await h.admin(UpdateProvider("openai", responses="native"))
                await h.sync()
            path = "/v1/chat/completions" if mode == "translate" else "/v1/responses"
            bound = "max_tokens" if mode == "translate" else "max_output_tokens"
            for streaming in (False, True):
                for secret in (budgeted, free):
                    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
                    if streaming:
                        async with await client.responses.create(model="gpt-4o", input="hello there",
                                                                 stream=True) as events:
                            async for _ in events:
                                pass
                    else:
                        await client.responses.create(model="gpt-4o", input=[{"role": "user", "content": "hi"}])
                    await client.close()
                    sent = h.upstream.last(path).body
                    if secret == budgeted:
                        assert sent.get(bound) == 321, (mode, streaming, sent)
                    else:
                        assert bound not in sent and "max_completion_tokens" not in sent, (mode, streaming, sent)
