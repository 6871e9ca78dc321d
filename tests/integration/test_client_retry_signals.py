"""What a refusal tells a client's retry loop: refusals that no retry can change carry
`x-should-retry: false`, and a rate limit's Retry-After is one a client waits for.

Claude Code retries by its own rules on top of the anthropic SDK's: it retries a 401 (it takes the
key for a rotated one) and a 403 unless the answer says `x-should-retry: false`, and it gives up at
once on a 429 whose Retry-After is over 60 s. Claude Code 2.1.197 sent a revoked or unknown key
19 times in 150 s, and stopped at the first rate-limit refusal of a key with `--rpm 1` (the
sliding minute said 98 s). The anthropic and openai SDKs read the same headers.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from shieldes.projections.commands import RevokeKey
from tests.integration.gateway_harness import harness

MSGS = [{"role": "user", "content": "hello there"}]
CLAUDE = "claude-3-5-haiku-latest"


async def test_refusals_no_retry_can_change_say_so(database_url: str) -> None:
    async with harness(database_url) as h:
        gone = await h.create_key("gone")
        narrow = await h.create_key("narrow", models=("gpt-4o",))
        await h.admin(RevokeKey("gone"))
        await h.sync()
        ask = dict(model=CLAUDE, max_tokens=5, messages=MSGS)
        refusals: list[tuple[str, type[anthropic.APIStatusError], dict[str, object]]] = [
            (gone, anthropic.AuthenticationError, ask),  # revoked
            ("sk-shd-never-issued", anthropic.AuthenticationError, ask),  # unknown
            (narrow, anthropic.PermissionDeniedError, ask),  # model not allowed
            (narrow, anthropic.NotFoundError, dict(ask, model="no-such-model")),  # unknown model
        ]
        for key, error, body in refusals:
            client = anthropic.AsyncAnthropic(base_url=h.base, api_key=key, max_retries=0)
            with pytest.raises(error) as info:
                await client.messages.create(**body)  # type: ignore[call-overload]
            assert info.value.response.headers.get("x-should-retry") == "false", (key, body)
        ok = await h.create_key("ok")
        await h.sync()
        oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=ok, max_retries=0)
        with pytest.raises(openai.NotFoundError) as missing:
            await oai.chat.completions.create(model="no-such-model", messages=MSGS)  # type: ignore[arg-type]
        assert missing.value.response.headers.get("x-should-retry") == "false"
        with pytest.raises(openai.BadRequestError) as bad:
            await oai.chat.completions.create(model="gpt-4o", messages="not a list")  # type: ignore[arg-type]
        assert bad.value.response.headers.get("x-should-retry") == "false"


async def test_a_rate_limit_retry_after_is_at_most_a_minute(database_url: str) -> None:
    async with harness(database_url) as h:
        limited = await h.create_key("limited", rpm=1)
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=limited, max_retries=0)
        ask = dict(model=CLAUDE, max_tokens=5, messages=MSGS)
        await client.messages.create(**ask)  # type: ignore[call-overload]
        # this minute's one request fades only as the next minute passes: up to 120 s of sliding window
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(**ask)  # type: ignore[call-overload]
        headers = info.value.response.headers
        assert 1 <= int(headers["retry-after"]) <= 60
        assert "x-should-retry" not in headers  # retrying after the wait is what it should do
        assert f"retry after {headers['retry-after']}s" in info.value.message
        # x-ratelimit-reset-requests still says when one more request fits, to the millisecond
        assert float(headers["x-ratelimit-reset-requests"].removesuffix("s")) > int(headers["retry-after"]) - 1


async def test_a_refusal_on_the_responses_websocket_carries_the_http_headers(database_url: str) -> None:
    """Codex reads an `error` event's `headers` as an HTTP answer's: without Retry-After there,
    Codex 0.171.0 on its built-in provider stopped at once on a rate limit it waited out over HTTP."""
    async with harness(database_url) as h:
        limited = await h.create_key("limited", rpm=1)
        narrow = await h.create_key("narrow", models=("gpt-4o",))
        await h.sync()
        for key, status in ((limited, 429), (narrow, 403)):
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=key, max_retries=0)
            async with client.responses.connect() as conn:
                for _ in range(2 if status == 429 else 1):
                    await conn.send({"type": "response.create", "model": "gpt-4o-mini", "input": "hi"})
                    async for event in conn:
                        if event.type in ("response.completed", "error"):
                            break
            assert event.type == "error" and event.status == status  # type: ignore[attr-defined]
            headers = event.model_dump()["headers"]
            assert headers["x-request-id"]
            if status == 429:
                assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-remaining-requests"] == "0"
                assert "x-should-retry" not in headers
            else:
                assert headers["x-should-retry"] == "false" and "retry-after" not in headers
