"""The fake upstream refuses a top-level field the real API does not take, in that API's words, as
the official SDKs see it: a gateway forwarding a field no upstream knows fails in tests as it would
against OpenAI or Anthropic."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


async def test_each_api_refuses_an_unknown_field_in_its_own_words() -> None:
    async with FakeUpstream() as up:
        client = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: tags"):
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                                 extra_body={"tags": ["a"]})
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: num_retries"):
            await client.embeddings.create(model="text-embedding-3-small", input="hi", extra_body={"num_retries": 1})
        with pytest.raises(openai.BadRequestError, match=r"Unknown parameter: 'fallbacks'\.") as refused:
            await client.responses.create(model="gpt-4o", input="hi", extra_body={"fallbacks": ["x"]})
        assert refused.value.code == "unknown_parameter"
        claude = anthropic.AsyncAnthropic(base_url=up.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match=r"metadata\.tags: Extra inputs are not permitted"):
            await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=MESSAGES,  # type: ignore[arg-type]
                                         metadata={"user_id": "u", "tags": ["a"]})  # type: ignore[typeddict-unknown-key]
        with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
            await claude.messages.count_tokens(model="claude-3-5-haiku-latest", messages=MESSAGES,  # type: ignore[arg-type]
                                               extra_body={"max_tokens": 5})
        # every field the SDKs send passes
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="u", seed=1,  # type: ignore[arg-type]
                                             metadata={"a": "b"}, stream_options=None)
        await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=MESSAGES,  # type: ignore[arg-type]
                                     metadata={"user_id": "u"}, stop_sequences=["x"],
                                     extra_body={"temperature": 0.5, "top_k": 5})  # (older models' sampling)


async def test_a_test_may_take_extension_fields() -> None:
    async with FakeUpstream(extra_fields=("chat_template_kwargs",)) as up:
        client = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                             extra_body={"chat_template_kwargs": {"thinking": True}})
    async with FakeUpstream(extra_fields=None) as up:  # None: anything
        client = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                             extra_body={"anything": 1})


async def test_gemini_refuses_an_unknown_field_as_googles_parser_does() -> None:
    async with FakeGoogle() as google:
        client = genai.Client(api_key=google.api_key)

        def options(**extra: Any) -> genai_types.GenerateContentConfig:
            return genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(
                base_url=google.url, api_version="v1beta", extra_body=extra or None))

        with pytest.raises(genai_errors.ClientError, match='Unknown name "tags": Cannot find field'):
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                                     config=options(tags=["a"]))
        answer = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi", config=options())
        assert answer.text
