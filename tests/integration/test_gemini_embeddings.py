"""POST /v1beta/models/{model}:embedContent and :batchEmbedContents on a real node, with the
google-genai SDK as the client: passed through to `gemini` and `vertex` deployments
(tests/fake_google.py), translated to /v1/embeddings for an OpenAI one (tests/fake_upstream.py);
billed as /v1/embeddings is (input tokens only)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google import genai
from google.genai import errors, types

from shieldes.projections.shared_commands import AddProvider
from tests.cli import ok
from tests.fake_google import FakeGoogle, service_account
from tests.integration.gateway_harness import Harness, harness

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
VERTEX = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"


def client(base: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base, retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeGoogle]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with FakeGoogle(public_key=private.public_key()) as google:
        creds = tmp_path / "sa.json"
        creds.write_text(json.dumps(service_account(private, google.url + "/token")))
        os.environ[KEY_ENV] = google.api_key
        async with harness(database_url, upstream_retries=0) as h:
            await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + KEY_ENV,
                                      ("text-embedding-004",)))
            await h.admin(AddProvider("vtx", "vertex", google.url, None, ("gemini-embedding-001",),
                                      options={"project": "proj-1", "location": "us-central1",
                                               "credentials_file": str(creds)}))
            await h.sync()
            yield h, google


async def _post(h: Harness, key: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.post(h.base + "/v1beta/models/" + path, json=body,
                                                    headers={"x-goog-api-key": key}) as r:
        return r.status, dict(r.headers), await r.json()


async def test_embeddings_pass_through_to_google(node: tuple[Harness, FakeGoogle], database_url: str) -> None:
    h, google = node
    secret = await h.create_key("emb")
    await h.sync()
    got = await client(h.base, secret).aio.models.embed_content(
        model="text-embedding-004", contents=["one two", "three"],
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=3))
    assert got.embeddings and [e.values for e in got.embeddings] == [[0.5, -0.25, 2.0], [0.5, -0.25, 1.0]]
    seen = google.last()
    assert seen.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["taskType"] for r in seen.body["requests"]] == ["RETRIEVAL_DOCUMENT"] * 2  # as the SDK sent it
    assert seen.body["requests"][0]["model"] == "models/text-embedding-004"

    one = {"content": {"parts": [{"text": "a b c d"}]}, "taskType": "SEMANTIC_SIMILARITY", "title": "t"}
    status, headers, answer = await _post(h, secret, "gemini-embedding-001:embedContent", one)
    assert status == 200 and answer == {"embedding": {"values": [0.5, -0.25, 4.0]}}
    assert google.last().path == VERTEX + "gemini-embedding-001:embedContent" and google.last().body == one
    assert "x-shieldes-dropped" not in headers

    await h.flush()
    rows = {r["key"]: r for r in await asyncio.to_thread(ok, database_url, "usage")}
    assert rows["emb"]["requests"] == 2 and rows["emb"]["completion_tokens"] == 0
    assert rows["emb"]["prompt_tokens"] > 0  # Google counts nothing here: the request's size / 4


async def test_embeddings_translated_for_an_openai_deployment(node: tuple[Harness, FakeGoogle]) -> None:
    h, _google = node
    secret = await h.create_key("oai")
    await h.sync()
    got = await client(h.base, secret).aio.models.embed_content(
        model="text-embedding-3-small", contents=["hello world", "again"],
        config=types.EmbedContentConfig(output_dimensionality=8))
    assert got.embeddings and len(got.embeddings) == 2 and all(e.values for e in got.embeddings)
    sent = h.upstream.last("/v1/embeddings").body
    assert (sent["input"], sent["dimensions"], sent["encoding_format"]) == (["hello world", "again"], 8, "float")

    one = {"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "taskType": "RETRIEVAL_QUERY"}
    status, headers, answer = await _post(h, secret, "text-embedding-3-small:embedContent", one)
    assert status == 200 and len(answer["embedding"]["values"]) > 0
    assert headers["x-shieldes-dropped"] == "taskType" and h.upstream.last("/v1/embeddings").body["input"] == ["a\nb"]

    picture = {"requests": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBO"}}]}}]}
    status, _headers, answer = await _post(h, secret, "text-embedding-3-small:batchEmbedContents", picture)
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "requests[0].content.parts[0]" in answer["error"]["message"] and "text only" in answer["error"]["message"]
    with pytest.raises(errors.ClientError) as info:  # the unknown-model refusal names the list to call
        await client(h.base, secret).aio.models.embed_content(model="no-such-model", contents=["x"])
    assert info.value.code == 404 and "GET /v1beta/models" in (info.value.message or "")
