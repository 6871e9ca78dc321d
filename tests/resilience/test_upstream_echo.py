"""Some upstreams echo the credential they were sent in their error messages. The gateway relays
upstream errors to its clients, so it must never relay the provider key with them."""

from __future__ import annotations

import openai
import pytest

from tests.integration.gateway_harness import UPSTREAM_KEY, harness


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500, 503])
async def test_upstream_error_echoing_the_provider_key_is_scrubbed(database_url: str, status: int) -> None:
    async with harness(database_url, upstream_retries=1) as h:
        secret = await h.create_key("echo")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", status=status, times=None,
                          message=f"Incorrect API key provided: {UPSTREAM_KEY}. Check it.")
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        await client.close()
        text = err.value.response.text
        assert UPSTREAM_KEY not in text
        assert err.value.status_code < 500 or err.value.code in ("upstream_error", "upstream_timeout")
        if status in (401, 403):
            assert "provider key" in err.value.message and "Incorrect API key" not in err.value.message
        elif status < 500 and status != 429:
            assert "[redacted]" in err.value.message  # the rest of the upstream's message is kept
