"""Context-window-aware fallback per provider kind: when Bedrock ("Input is too long"), the Gemini
API ("The input token count ... exceeds the maximum") or Azure (`context_length_exceeded`) says the
prompt does not fit, the alias moves on to its fallback group (another model) and the client gets
that answer; without a fallback it gets 400 `context_length_exceeded`."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetModelAlias
from shieldes.projections.state import AliasTarget
from tests.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, FakeBedrock
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LONG: Any = [{"role": "user", "content": "a prompt of more words than these models take"}]


async def test_too_long_prompts_fall_back_to_another_model_for_each_kind(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_SESSION_TOKEN", SESSION_TOKEN), ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    async with FakeBedrock(max_prompt=3) as bedrock, FakeGoogle(max_prompt=3) as google, \
            harness(database_url, upstream_retries=0) as h:
        monkeypatch.setenv("SHIELDES_TEST_GEMINI_KEY", google.api_key)
        ref = "env:" + UPSTREAM_KEY_ENV
        await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (CLAUDE,), options={"region": "us-east-1"}))
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                  ("gemini-2.5-flash",)))
        await h.admin(AddProvider("az", "azure", h.upstream.url, ref, ("prod-gpt4o",),
                                  options={"api_version": "2024-10-21"}))
        for alias, target in (("br-chat", AliasTarget("br", CLAUDE)),
                              ("gem-chat", AliasTarget("gem", "gemini-2.5-flash")),
                              ("az-chat", AliasTarget("az", "prod-gpt4o"))):
            await h.admin(SetModelAlias(alias, (target,), ("gpt-4o-mini",)))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        h.upstream.inject("/openai/deployments/prod-gpt4o/chat/completions", status=400,
                          code="context_length_exceeded", message="This model's maximum context length is 3 tokens.")
        for alias in ("br-chat", "gem-chat", "az-chat"):
            chat = await client.chat.completions.create(model=alias, messages=LONG)
            assert chat.model == "gpt-4o-mini", alias  # the fallback model answered
            assert h.upstream.last().path == "/v1/chat/completions"
        assert [r.path for r in bedrock.requests] == [f"/model/{CLAUDE.replace(':', '%3A')}/converse"]
        assert [r.path for r in google.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]
        assert "/openai/deployments/prod-gpt4o/chat/completions" in [r.path for r in h.upstream.requests]

        # no fallback: the upstream's refusal, in the OpenAI shape
        for model in (CLAUDE, "gemini-2.5-flash"):
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model=model, messages=LONG)
            assert err.value.code == "context_length_exceeded", model
