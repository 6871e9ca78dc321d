"""Fuzzing the agent-era and media routes with bodies shaped like each API's requests, odd in every
field: never a 5xx, never a traceback, and every error in the API's own shape (OpenAI's on the
OpenAI routes, Anthropic's on the Messages routes, Google's on the Gemini API's)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness
from tests.integration.test_gateway_fuzz import READ_WAIT, Running, json_values, send, started
from tests.integration.test_gateway_fuzz import node as node  # the fixture: a node in a thread of its own
from tests.pool_jitter import POOL_JITTER

CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI = "gemini-2.5-flash"
GEMINI_KEY_ENV = "SHIELDES_TEST_FUZZ_GEMINI_KEY"

MODELS = ["gpt-4o", "claude-3-5-haiku-latest"]
odd = json_values | st.sampled_from(["", "nope", "x" * 70, "resp_nope", "msg_1", "call_1", "conv_nope"])


@st.composite
def either(draw: st.DrawFn, good: st.SearchStrategy[Any]) -> Any:
    """Mostly what a client sends (9 times in 10), now and then anything at all: most bodies then
    pass the gateway's checks and go on to translation, the upstream and back."""
    return draw(odd if draw(st.randoms(use_true_random=True)).random() < 0.1 else good)


def obj(fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """An object with the `required` fields (each left out now and then) and some of the others."""
    must = {name: fields[name] for name in required}
    rest = {name: value for name, value in fields.items() if name not in required}
    return either(st.fixed_dictionaries(must, optional=rest)) | st.fixed_dictionaries({}, optional=must | rest)


text = st.text(max_size=12)
calls = st.sampled_from(["call_1", "call_2", "toolu_1", "functions.f:0", "x" * 70])
RESPONSES_ITEM = either(st.one_of(
    obj({"role": either(st.sampled_from(["user", "assistant", "system", "developer"])), "content": either(text)},
        ("role", "content")),
    obj({"type": st.just("message"), "role": either(st.just("user")), "content": either(st.lists(obj({
        "type": either(st.sampled_from(["input_text", "input_image", "input_file", "output_text"])),
        "text": either(text), "image_url": either(st.just("data:image/png;base64,iVBORw0KGgo=")),
        "file_id": odd}, ("type",)), max_size=2))}, ("type", "role", "content")),
    obj({"type": st.just("function_call"), "call_id": either(calls), "name": either(st.just("f")),
         "arguments": either(st.just("{}"))}, ("type", "call_id", "name", "arguments")),
    obj({"type": either(st.sampled_from(["function_call_output", "custom_tool_call_output"])),
         "call_id": either(calls), "output": either(text)}, ("type", "call_id", "output")),
    obj({"type": st.just("reasoning"), "id": either(st.just("rs_1")), "summary": either(st.just([])),
         "encrypted_content": odd}, ("type",)),
    obj({"type": either(st.sampled_from(["item_reference", "compaction", "custom_tool_call", "x"])),
         "id": odd, "call_id": odd, "name": odd, "input": odd}),
))
RESPONSES_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": either(st.sampled_from(MODELS)),
    "input": either(text | st.lists(RESPONSES_ITEM, min_size=1, max_size=4)),
    "instructions": either(text), "stream": either(st.booleans()), "store": either(st.booleans()),
    "background": either(st.booleans()), "max_output_tokens": either(st.integers(1, 100)),
    "tools": either(st.lists(obj({"type": either(st.sampled_from(["function", "custom", "web_search", "mcp"])),
                                  "name": either(st.just("f")), "parameters": either(st.just({"type": "object"}))},
                                 ("type", "name")), max_size=2)),
    "tool_choice": either(st.sampled_from(["auto", "none", "required"])),
    "truncation": either(st.sampled_from(["auto", "disabled"])),
    "include": either(st.lists(st.sampled_from(["reasoning.encrypted_content", "message.output_text.logprobs"]))),
    "reasoning": either(obj({"effort": either(st.sampled_from(["low", "medium", "high"])), "summary": odd})),
    "text": either(obj({"format": either(obj({"type": either(st.sampled_from(["text", "json_schema"]))}))})),
    "metadata": either(st.just({"k": "v"})), "parallel_tool_calls": either(st.booleans()),
    "temperature": either(st.floats(0, 2)),
}
# a continuation of what is not there, or not a continuation at all
CONTINUED = RESPONSES_FIELDS | {"previous_response_id": odd, "conversation": odd}
MESSAGES_BLOCK = either(st.one_of(
    obj({"type": st.just("text"), "text": either(text)}, ("type", "text")),
    obj({"type": st.just("tool_use"), "id": either(calls), "name": either(st.just("f")),
         "input": either(st.just({}))}, ("type", "id", "name", "input")),
    obj({"type": st.just("tool_result"), "tool_use_id": either(calls), "content": either(text)},
        ("type", "tool_use_id")),
    obj({"type": st.just("image"), "source": either(obj({"type": st.just("base64"), "media_type": st.just("image/png"),
                                                            "data": st.just("iVBORw0KGgo=")}))}, ("type", "source")),
    obj({"type": either(st.sampled_from(["thinking", "redacted_thinking", "document", "x"])), "thinking": odd,
         "signature": odd, "data": odd, "cache_control": odd}),
))
MESSAGES_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": either(st.sampled_from(MODELS)),
    "messages": either(st.lists(obj({"role": either(st.sampled_from(["user", "assistant"])),
                                     "content": either(text | st.lists(MESSAGES_BLOCK, max_size=3))},
                                    ("role", "content")), min_size=1, max_size=3)),
    "max_tokens": either(st.integers(1, 100)), "system": either(text), "stream": either(st.booleans()),
    "tools": either(st.lists(obj({"name": either(st.just("f")), "input_schema": either(st.just({"type": "object"}))},
                                 ("name", "input_schema")), max_size=2)),
    "tool_choice": either(obj({"type": either(st.sampled_from(["auto", "any", "tool", "none"]))}, ("type",))),
    "thinking": either(obj({"type": either(st.just("enabled")), "budget_tokens": either(st.integers(1, 50))})),
    "metadata": either(st.just({"user_id": "u1"})), "stop_sequences": either(st.lists(text, max_size=2)),
    "temperature": either(st.floats(0, 1)),
}
GEMINI_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "contents": either(st.lists(obj({"role": either(st.sampled_from(["user", "model"])), "parts": either(st.lists(
        either(st.one_of(obj({"text": either(text)}, ("text",)),
                         obj({"functionCall": either(obj({"name": either(st.just("f")), "args": either(st.just({}))},
                                                         ("name",)))}, ("functionCall",)),
                         obj({"functionResponse": either(obj({"name": either(st.just("f")),
                                                              "response": either(st.just({}))}, ("name",)))},
                             ("functionResponse",)),
                         obj({"inlineData": odd, "thoughtSignature": odd}))), min_size=1, max_size=2))},
        ("parts",)), min_size=1, max_size=3)),
    "generationConfig": either(obj({"maxOutputTokens": either(st.integers(1, 100)), "temperature": odd})),
    "systemInstruction": either(obj({"parts": either(st.just([{"text": "be brief"}]))})),
    "tools": odd, "toolConfig": odd, "content": either(obj({"parts": either(st.just([{"text": "hi"}]))})),
}
MEDIA_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": either(st.sampled_from(["dall-e-2", "tts-1", "omni-moderation-latest", "nope"])),
    "prompt": either(text), "input": either(text), "n": either(st.integers(1, 3)),
    "size": either(st.sampled_from(["256x256", "1024x1024"])), "voice": either(st.sampled_from(["alloy", "nova"])),
    "response_format": odd, "quality": odd, "speed": odd,
}
ITEMS = {"items": either(st.lists(RESPONSES_ITEM, max_size=3)), "metadata": either(st.just({"k": "v"}))}
# (method, path, the body's fields and those it needs, the error's shape)
ROUTES: list[tuple[str, str, dict[str, st.SearchStrategy[Any]], tuple[str, ...], str]] = [
    ("POST", "/v1/responses", RESPONSES_FIELDS, ("model", "input"), "openai"),
    ("POST", "/v1/responses", RESPONSES_FIELDS, ("model", "input", "stream"), "openai"),
    ("POST", "/v1/responses", CONTINUED, ("model", "input"), "openai"),
    ("POST", "/v1/responses/input_tokens", CONTINUED, ("model", "input"), "openai"),
    ("POST", "/v1/responses/compact", RESPONSES_FIELDS, ("model", "input"), "openai"),
    ("GET", "/v1/responses/resp_nope", {}, (), "openai"),
    ("GET", "/v1/responses/resp_nope/input_items?limit=x&order=sideways", {}, (), "openai"),
    ("DELETE", "/v1/responses/resp_nope", {}, (), "openai"),
    ("POST", "/v1/responses/resp_nope/cancel", {}, (), "openai"),
    ("POST", "/v1/conversations", ITEMS, (), "openai"),
    ("POST", "/v1/conversations/conv_nope/items", ITEMS, ("items",), "openai"),
    ("GET", "/v1/conversations/conv_nope/items?limit=-1", {}, (), "openai"),
    ("POST", "/v1/messages", MESSAGES_FIELDS, ("model", "messages", "max_tokens"), "anthropic"),
    ("POST", "/v1/messages", MESSAGES_FIELDS, ("model", "messages", "max_tokens", "stream"), "anthropic"),
    ("POST", "/v1/messages/count_tokens", MESSAGES_FIELDS, ("model", "messages"), "anthropic"),
    ("POST", "/v1beta/models/gpt-4o:generateContent", GEMINI_FIELDS, ("contents",), "google"),
    ("POST", "/v1beta/models/claude-3-5-haiku-latest:streamGenerateContent?alt=sse", GEMINI_FIELDS, ("contents",),
     "google"),
    ("POST", "/v1beta/models/gpt-4o:countTokens", GEMINI_FIELDS, ("contents",), "google"),
    ("POST", "/v1beta/models/text-embedding-3-small:embedContent", GEMINI_FIELDS, ("content",), "google"),
    ("POST", "/v1/images/generations", MEDIA_FIELDS, ("prompt",), "openai"),
    ("POST", "/v1/audio/speech", MEDIA_FIELDS, ("model", "input", "voice"), "openai"),
    ("POST", "/v1/moderations", MEDIA_FIELDS, ("input",), "openai"),
]
CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": either(st.sampled_from(MODELS)),
    "messages": either(st.lists(either(st.one_of(
        obj({"role": either(st.sampled_from(["user", "system", "developer"])), "content": either(text | st.lists(
            obj({"type": either(st.sampled_from(["text", "image_url", "file", "input_audio"])), "text": either(text),
                 "image_url": either(st.just({"url": "data:image/png;base64,iVBORw0KGgo="}))}, ("type",)),
            max_size=2))}, ("role", "content")),
        obj({"role": st.just("assistant"), "content": either(st.none() | text), "tool_calls": either(st.lists(
            obj({"id": either(calls), "type": either(st.just("function")), "function": either(obj(
                {"name": either(st.just("f")), "arguments": either(st.just("{}"))}, ("name", "arguments")))},
                ("id", "type", "function")), max_size=2))}, ("role",)),
        obj({"role": st.just("tool"), "tool_call_id": either(calls), "content": either(text)},
            ("role", "tool_call_id", "content")),
    )), min_size=1, max_size=4)),
    "stream": either(st.booleans()), "max_tokens": either(st.integers(1, 100)),
    "tools": either(st.lists(obj({"type": either(st.just("function")), "function": either(obj({
        "name": either(st.just("f")), "parameters": either(st.just({"type": "object"}))}, ("name",)))},
        ("type", "function")), max_size=2)),
    "tool_choice": either(st.sampled_from(["auto", "none", "required"])),
    "response_format": either(obj({"type": either(st.sampled_from(["text", "json_object", "json_schema"]))})),
    "reasoning_effort": either(st.sampled_from(["low", "medium", "high"])), "n": either(st.integers(1, 2)),
    "stream_options": either(obj({"include_usage": either(st.booleans())})), "stop": either(text),
}
# every upstream kind behind each API: chat completions too, as the translations start from it
ACROSS_KINDS = [route for route in ROUTES if not route[1].startswith(("/v1/images", "/v1/audio", "/v1/moder"))] + [
    ("POST", "/v1/chat/completions", CHAT_FIELDS, ("model", "messages"), "openai"),
    ("POST", "/v1/chat/completions", CHAT_FIELDS, ("model", "messages", "stream"), "openai"),
]


def requests(routes: list[tuple[str, str, dict[str, st.SearchStrategy[Any]], tuple[str, ...], str]],
             models: list[str]) -> st.SearchStrategy[tuple[str, str, bytes, str]]:
    """A request to one of `routes` for one of `models`: (method, path, body, error shape). Drawn by
    a composite of no arguments, so the strategy's repr stays short (hypothesis would print the
    routes' strategies whole, some 176 kB, and warns about it)."""

    @st.composite
    def request(draw: st.DrawFn) -> tuple[str, str, bytes, str]:
        method, path, fields, required, shape = draw(st.sampled_from(routes))
        body = draw(obj(fields, required)) if fields else {}
        if isinstance(body, dict) and body.get("model") in MODELS:  # (a body may be anything at all)
            body["model"] = draw(st.sampled_from(models))
        if path.startswith("/v1beta/models/") and ":" in path and "embedContent" not in path:
            path = path.replace(path.split("/")[3].split(":")[0], draw(st.sampled_from(models)), 1)
        return method, path, json.dumps(body).encode(), shape

    return request()


class AcrossKinds(Running):
    """The node in a thread of its own, with a deployment of each upstream kind a translation
    reaches: OpenAI, Anthropic, Bedrock (SigV4, event streams), Gemini."""

    async def _main(self, database_url: str) -> None:
        self.done = asyncio.Event()
        up = FakeUpstream(api_key=UPSTREAM_KEY)
        with aws_credentials():
            async with FakeBedrock(region="eu-west-1") as bedrock, FakeGoogle() as google, \
                    harness(database_url, upstream=up, providers=False, upstream_retries=0,
                            max_body_bytes=64 * 1024, responses_read_wait=READ_WAIT) as h:
                os.environ[GEMINI_KEY_ENV] = google.api_key
                ref = "env:" + UPSTREAM_KEY_ENV
                await h.admin(AddProvider("claude", "anthropic", up.url, ref, ("claude-3-5-haiku-latest",)))
                await h.admin(AddProvider("openai", "openai", up.url, ref, ("gpt-4o",)))
                await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (CLAUDE_ON_BEDROCK,),
                                          options={"region": "eu-west-1"}))
                await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + GEMINI_KEY_ENV, (GEMINI,)))
                self.secret = await h.create_key("fuzz", rpm=10**9)
                await h.sync()
                self.h = h
                self.ready.set()
                await self.done.wait()


@pytest.fixture
def kinds(database_url: str) -> Iterator[Running]:
    yield from started(AcrossKinds(database_url))


def assert_error_shape(shape: str, payload: bytes) -> None:
    body = orjson.loads(payload)
    if shape == "anthropic":
        assert body["type"] == "error", body
        err = body["error"]
        assert isinstance(err["type"], str) and isinstance(err["message"], str) and err["message"], body
    elif shape == "google":
        err = body["error"]
        assert isinstance(err["code"], int) and isinstance(err["status"], str), body
        assert isinstance(err["message"], str) and err["message"], body
    else:
        err = body["error"]
        assert isinstance(err["message"], str) and err["message"] and "type" in err and "code" in err, body


@POOL_JITTER
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests(ROUTES, MODELS), authed=st.sampled_from([True, True, True, False]))
def test_agent_and_media_routes_answer_odd_bodies_in_their_own_shape(
    node: Running, request: tuple[str, str, bytes, str], authed: bool
) -> None:
    check(node, request, authed)


@POOL_JITTER
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests(ACROSS_KINDS, ["gpt-4o", "claude-3-5-haiku-latest", CLAUDE_ON_BEDROCK, GEMINI]))
def test_every_api_to_every_upstream_kind_answers_odd_bodies_in_its_own_shape(
    kinds: Running, request: tuple[str, str, bytes, str]
) -> None:
    check(kinds, request, True)


def check(node: Running, request: tuple[str, str, bytes, str], authed: bool) -> None:
    assert node.h is not None
    method, path, body, shape = request
    headers = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    if authed:
        headers["Authorization"] = f"Bearer {node.secret}"
    status, resp_headers, payload = send(node.h.node.port, method, path, body, headers)
    assert status < 500, (method, path, body[:300], status, payload[:400])
    assert b"Traceback" not in payload and b'File "' not in payload
    assert resp_headers.get("x-request-id") or resp_headers.get("request-id"), (path, status, resp_headers)
    if status >= 400:
        assert_error_shape(shape, payload)
