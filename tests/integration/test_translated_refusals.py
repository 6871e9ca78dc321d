"""A translated request (an OpenAI chat client on an Anthropic deployment, a Messages client on an
OpenAI one) with a malformed `response_format` (or Responses `text.format`), an image whose base64
does not decode, audio output or a tool_choice forcing a tool without tools: a 400 in
the client's own API shape that says what to fix, and nothing sent upstream. Before, a bad
`response_format` was dropped (free text to a client that asked for JSON) and bad base64 went on
to the upstream. Official SDKs, a real node."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.gateway_harness import harness

ASK: Any = [{"role": "user", "content": "hi"}]
BAD_FORMATS: list[tuple[Any, str]] = [
    ({"type": "xml"}, "response_format.type 'xml' is not one of text, json_object, json_schema"),
    ("json", "response_format must be an object with a `type`"),
    ({"type": "json_schema"}, "needs a `json_schema` object"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}, "must be a JSON Schema object"),
]


def _image(url: str) -> Any:
    return [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


async def test_bad_response_format_and_bad_base64_are_refused_in_the_clients_shape(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for fmt, fragment in BAD_FORMATS:
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ASK,
                                                     response_format=fmt)
            assert fragment in err.value.message, (fmt, err.value.message)
            assert err.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        for url in ("data:image/png;base64,not base64!", "data:image/png;base64,"):
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=_image(url))
            assert "image data URL" in err.value.message and "base64" in err.value.message, err.value.message
        # audio output, and a tool_choice forcing a tool with no tools: neither can be given
        with pytest.raises(openai.BadRequestError, match="answers text only"):
            await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ASK,
                                                 modalities=["text", "audio"])
        for choice in ("required", {"type": "function", "function": {"name": "f"}}):
            with pytest.raises(openai.BadRequestError, match="has no `tools`"):
                await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ASK,
                                                     tool_choice=choice)  # type: ignore[arg-type]
        # a Responses request's text.format that is not an object
        with pytest.raises(openai.BadRequestError, match=r"text\.format must be an object"):
            await client.responses.create(model="claude-3-5-haiku-latest", input="hi",
                                          text={"format": "json"})  # type: ignore[typeddict-item]
        assert h.upstream.requests_to("/v1/messages") == []  # nothing of it went upstream
        auto = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ASK, tool_choice="auto",
                                                    modalities=["text"])
        assert auto.choices[0].finish_reason == "stop"
        # well-formed ones still pass
        fine = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ASK,
                                                    response_format={"type": "json_object"})
        assert fine.choices[0].finish_reason == "stop"
        png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
        pictured = await client.chat.completions.create(model="claude-3-5-haiku-latest",
                                                        messages=_image(f"data:image/png;base64,{png}"))
        assert pictured.choices[0].message.content

        # a Messages client on an OpenAI deployment: an image block whose data is not base64
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        image: Any = [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}]}]
        sent = len(h.upstream.requests_to("/v1/chat/completions"))
        with pytest.raises(anthropic.BadRequestError) as refused:
            await claude.messages.create(model="gpt-4o", max_tokens=20, messages=image)
        assert refused.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's error shape
        assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "source.data does not hold valid base64" in refused.value.message, refused.value.message
        # a tool_choice forcing a call with no tools, a non-image media type, an output format that
        # is not a JSON schema: refused as Anthropic refuses them, not dropped
        for kw, fragment in (({"tool_choice": {"type": "any"}}, "no tools this deployment can call"),
                             ({"tool_choice": {"type": "tool", "name": "f"}}, "no tools this deployment can call"),
                             ({"extra_body": {"output_config": {"format": {"type": "xml"}}}},
                              "`output_config.format` must be"),
                             ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
                                 "type": "base64", "media_type": "text/plain", "data": "aGk="}}]}]},
                              "is not an image type")):
            args: Any = {"model": "gpt-4o", "max_tokens": 20, "messages": ASK, **kw}
            with pytest.raises(anthropic.BadRequestError) as refused:
                await claude.messages.create(**args)
            assert fragment in refused.value.message, refused.value.message
        assert len(h.upstream.requests_to("/v1/chat/completions")) == sent
