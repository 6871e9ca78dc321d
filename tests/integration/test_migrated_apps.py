"""Applications that talked to a LiteLLM proxy or to Bifrost work unchanged once their base URL
names shieldes: the headers they send their virtual key in, the body fields only those gateways
knew, the routes they call."""

from __future__ import annotations

import anthropic
import openai

from tests.integration.gateway_harness import harness

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


async def test_litellm_and_bifrost_key_headers_name_the_virtual_key(database_url: str) -> None:
    """`x-litellm-api-key` (with or without `Bearer `) and Bifrost's `x-bf-vk` were refused 401
    "missing API key"; the `Authorization` such an app sends beside them holds a placeholder or
    someone else's token, so they come first, and never reach the upstream."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        for header in ({"x-bf-vk": secret}, {"x-litellm-api-key": f"Bearer {secret}"},
                       {"x-litellm-api-key": secret}):
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key="placeholder", max_retries=0,
                                        default_headers=header)
            answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
            assert answer.choices[0].message.content
            sent = {k.lower() for k in h.upstream.last("/v1/chat/completions").headers}
            assert "x-bf-vk" not in sent and "x-litellm-api-key" not in sent
            claude = anthropic.AsyncAnthropic(base_url=h.base, api_key="placeholder", max_retries=0,
                                              default_headers=header)
            message = await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=16,
                                                   messages=MESSAGES)  # type: ignore[arg-type]
            assert message.content
            sent = {k.lower() for k in h.upstream.last("/v1/messages").headers}
            assert "x-bf-vk" not in sent and "x-litellm-api-key" not in sent
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0,
                                    default_headers={"x-bf-vk": "sk-bf-revoked"})
        try:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
            raise AssertionError("a wrong x-bf-vk must not fall back to Authorization")
        except openai.AuthenticationError as e:
            assert "invalid or revoked API key" in str(e)
