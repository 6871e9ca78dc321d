"""A Gemini API stream that breaks after bytes went out ends with Google's error object, which the
google-genai SDK raises (its ServerError with the code and message): as the last `data:` event with
`alt=sse`, as the last element of a closed JSON array without; for passed-through and translated
streams alike, the reservation settled."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from shieldes.projections.shared_commands import AddProvider
from tests.cli import ok
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import Harness, harness

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
BODY = {"contents": [{"role": "user", "parts": [{"text": "tell me more"}]}]}


def client(base: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base, retry_options=types.HttpRetryOptions(attempts=1)))


def nothing_reserved(h: Harness) -> bool:
    assert h.node.meter is not None
    return all(v == 0 for v in h.node.meter.reserved().values())


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle(reply_words=6) as fake:
        yield fake


@pytest.fixture
async def node(database_url: str, google: FakeGoogle) -> AsyncIterator[Harness]:
    os.environ[KEY_ENV] = google.api_key
    async with harness(database_url, upstream_retries=0) as h:
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + KEY_ENV, ("gemini-2.5-flash",)))
        await h.sync()
        yield h


async def _sdk_stream(base: str, key: str, model: str) -> tuple[list[str], errors.APIError]:
    texts: list[str] = []
    with pytest.raises(errors.APIError) as info:
        async for chunk in await client(base, key).aio.models.generate_content_stream(model=model,
                                                                                       contents="tell me more"):
            texts.append(chunk.text or "")
    return texts, info.value


async def _raw(h: Harness, key: str, model: str, sse: bool) -> bytes:
    url = f"{h.base}/v1beta/models/{model}:streamGenerateContent" + ("?alt=sse" if sse else "")
    async with aiohttp.ClientSession() as s, s.post(url, json=BODY, headers={"x-goog-api-key": key}) as r:
        assert r.status == 200
        return await r.read()


def _sse_events(raw: bytes) -> list[Any]:
    return [json.loads(e.strip()[6:]) for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]


async def test_a_passed_through_stream_cut_midway(node: Harness, google: FakeGoogle, database_url: str) -> None:
    secret = await node.create_key("cut", budget_usd=10.0)
    await node.sync()
    google.break_stream = (2, "cut")
    texts, error = await _sdk_stream(node.base, secret, "gemini-2.5-flash")
    assert "".join(texts) == "Hello from"  # what came before the cut
    assert isinstance(error, errors.ServerError) and (error.code, error.status) == (502, "UNAVAILABLE")
    assert "upstream stream failed" in (error.message or "") and "retry the request" in (error.message or "")

    events = _sse_events(await _raw(node, secret, "gemini-2.5-flash", sse=True))
    assert [e.get("error", {}).get("code") for e in events] == [None, None, 502]
    elements = json.loads(await _raw(node, secret, "gemini-2.5-flash", sse=False))  # a closed array
    assert [e["candidates"] for e in elements[:2]] == [e["candidates"] for e in events[:2]]
    assert len(elements) == 3 and elements[2]["error"]["status"] == "UNAVAILABLE"

    assert nothing_reserved(node)
    await node.flush()
    rows = {r["key"]: r for r in await asyncio.to_thread(ok, database_url, "usage")}
    assert rows["cut"]["requests"] == 3 and rows["cut"]["completion_tokens"] == 6  # 2 chunks estimated each


async def test_an_upstream_error_event_midway_keeps_its_status(node: Harness, google: FakeGoogle) -> None:
    secret = await node.create_key("err")
    await node.sync()
    google.break_stream = (2, "error")
    texts, error = await _sdk_stream(node.base, secret, "gemini-2.5-flash")
    assert "".join(texts) == "Hello from"
    assert (error.code, error.status) == (503, "UNAVAILABLE") and "overloaded" in (error.message or "")
    elements = json.loads(await _raw(node, secret, "gemini-2.5-flash", sse=False))
    assert len(elements) == 3 and elements[2]["error"]["code"] == 503
    assert nothing_reserved(node)


async def test_a_translated_stream_cut_midway(node: Harness) -> None:
    secret = await node.create_key("tr", budget_usd=10.0)
    await node.sync()
    node.upstream.inject("/v1/chat/completions", disconnect_after=3, times=3)
    texts, error = await _sdk_stream(node.base, secret, "gpt-4o")
    assert texts and isinstance(error, errors.ServerError) and error.code == 502
    elements = json.loads(await _raw(node, secret, "gpt-4o", sse=False))
    assert "candidates" in elements[0] and elements[-1]["error"]["status"] == "UNAVAILABLE"
    events = _sse_events(await _raw(node, secret, "gpt-4o", sse=True))
    assert events[-1]["error"]["code"] == 502
    assert nothing_reserved(node)
