"""A Bedrock or Vertex deployment that cannot be used on this node (no cloud credentials here, the
token endpoint refusing its key) is the node's configuration, not an upstream failure: the model's
other deployments serve its requests, its breaker and error rate see nothing, the node logs it once
per outage; a model it alone serves is answered a 502 `provider_misconfigured` in the client API's
own shape, one line naming the deployment, what is missing and what to do. Through a node, the
fake providers (Bedrock, Google's token endpoint, an OpenAI upstream) and the official SDKs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from shieldes.projections.shared_commands import AddProvider
from shieldes.providers.base import Target
from shieldes.providers.vertex import GoogleTokens
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle, service_account
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness, wait_until

HELLO: Any = [{"role": "user", "content": "say hello"}]
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


def _key(google: FakeGoogle, path: Path) -> str:
    """A service-account key file whose signature the fake's token endpoint refuses (another key)."""
    google.public_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path.write_text(json.dumps(service_account(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                               google.url + "/token")))
    return str(path)


def _accepted_key(google: FakeGoogle, path: Path) -> Path:
    """A service-account key file the fake's token endpoint accepts (it holds the public half)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    google.public_key = private.public_key()
    path.write_text(json.dumps(service_account(private, google.url + "/token")))
    return path


@pytest.fixture
async def node(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[tuple[Harness, FakeBedrock, FakeGoogle, FakeUpstream]]:
    for name in AWS:  # botocore's chain finds nothing on this node
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    up = FakeUpstream(completion_tokens=4, api_key=UPSTREAM_KEY, models=("shared",))
    async with FakeBedrock() as bedrock, FakeGoogle() as google, \
            harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        vertex = {"project": "proj-1", "location": "us-central1", "credentials_file": _key(google, tmp_path / "k.json")}
        # the unusable deployments weigh most: nearly every request tries one of them first
        await h.admin(AddProvider("br", "bedrock", bedrock.url, None, ("shared", "only-br"), weight=1000.0,
                                  options={"region": "us-east-1"}))
        await h.admin(AddProvider("vx", "vertex", google.url, None, ("shared", "only-vx", "claude-sonnet-4-5"),
                                  weight=1000.0,
                                  options=vertex))
        await h.admin(AddProvider("oa", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("shared",)))
        await h.sync()
        yield h, bedrock, google, up


async def test_an_unusable_cloud_deployment_fails_over_and_is_told_in_each_apis_shape(
        node: tuple[Harness, FakeBedrock, FakeGoogle, FakeUpstream], caplog: pytest.LogCaptureFixture) -> None:
    h, bedrock, google, up = node
    caplog.set_level(logging.WARNING)
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    for _ in range(4):  # served by the healthy deployment, JSON and streamed, each time
        chat = await client.chat.completions.create(model="shared", messages=HELLO)
        assert chat.choices[0].message.content
        stream = await client.chat.completions.create(model="shared", messages=HELLO, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len(up.requests_to("/v1/chat/completions")) == 8
    assert not bedrock.requests and not [r for r in google.requests if r.path != "/token"]
    gateway = h.node.gateway
    assert gateway is not None
    health = gateway.breaker.health()  # type: ignore[attr-defined]
    assert "br" not in health and "vx" not in health, health  # neither a failure nor a success

    # a model only the unusable deployment serves: a 502 in OpenAI's shape, one line saying what to do
    with pytest.raises(openai.APIStatusError) as no_aws:
        await client.chat.completions.create(model="only-br", messages=HELLO)
    body: Any = no_aws.value.body
    assert no_aws.value.status_code == 502 and body["code"] == "provider_misconfigured"
    assert body["message"].startswith("deployment 'br' cannot be used on this node: no AWS credentials (")
    assert "AWS_ACCESS_KEY_ID" in body["message"] and "\n" not in body["message"]
    with pytest.raises(openai.APIStatusError) as no_token:
        await client.chat.completions.create(model="only-vx", messages=HELLO, stream=True)
    body = no_token.value.body
    assert no_token.value.status_code == 502 and body["code"] == "provider_misconfigured"
    assert body["message"].startswith("deployment 'vx' cannot be used on this node: no Google access token (")
    assert "--credentials-file" in body["message"] and "\n" not in body["message"]
    # and in Anthropic's
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    no_google = "deployment 'vx' cannot be used on this node: no Google access token ("
    for model, start in (("only-br", "deployment 'br' cannot be used on this node: no AWS credentials ("),
                         ("only-vx", no_google), ("claude-sonnet-4-5", no_google)):  # (Claude on Vertex: the same)
        with pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model=model, max_tokens=20, messages=HELLO)
        assert refused.value.status_code == 502
        error: Any = refused.value.body
        assert error["type"] == "error" and error["error"]["message"].startswith(start)
    assert not bedrock.requests
    # logged once per outage, not once per request
    lines = [r.getMessage() for r in caplog.records]
    assert sum("no AWS credentials" in x for x in lines) == 1, lines
    assert sum("no Google access token" in x for x in lines) == 1, lines
    assert not [x for x in lines if "upstream deployment br" in x or "upstream deployment vx" in x], lines


async def test_each_deployment_sharing_failing_credentials_is_told_its_own_fix(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Vertex deployments on the node's Application Default Credentials, which fail: a request
    for either is told the command that fixes that deployment, also while the failure is answered
    from the last lookup (within its 10 s)."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    async with FakeGoogle() as google, harness(database_url, providers=False, upstream_retries=0) as h:
        for name in ("vx-east", "vx-west"):
            await h.admin(AddProvider(name, "vertex", google.url, None, (f"gemini-{name}",),
                                      options={"project": "proj-1", "location": "us-central1"}))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for name in ("vx-east", "vx-west", "vx-east"):
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(model=f"gemini-{name}", messages=HELLO)
            body: Any = refused.value.body
            assert refused.value.status_code == 502 and body["code"] == "provider_misconfigured"
            message = body["message"]
            assert message.startswith(f"deployment {name!r} cannot be used on this node: no Google access token (")
            assert f"shieldes provider update {name} --credentials-file" in message, message


async def test_a_token_endpoint_that_does_not_answer_holds_requests_only_as_long_as_the_bound(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth waits 120 s for a token endpoint by default, every request for the deployment
    waiting with it: a node waits vertex.TOKEN_TIMEOUT (10 s; shortened here), then answers the
    502 naming the deployment and its key file."""
    monkeypatch.setattr("shieldes.providers.vertex.TOKEN_TIMEOUT", 0.5)
    async with FakeGoogle() as google, harness(database_url, providers=False, upstream_retries=0) as h:
        google.token_hold = asyncio.Event()  # the token endpoint takes the request and never answers
        try:
            path = _accepted_key(google, tmp_path / "k.json")
            await h.admin(AddProvider("vx", "vertex", google.url, None, ("only-vx",),
                                      options={"project": "proj-1", "location": "us-central1",
                                               "credentials_file": str(path)}))
            secret = await h.create_key("app")
            await h.sync()
            # (the client gives up long before google-auth's own 120 s)
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=5.0)
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(model="only-vx", messages=HELLO)
            body: Any = refused.value.body
            assert refused.value.status_code == 502 and body["code"] == "provider_misconfigured", body
            assert body["message"].startswith("deployment 'vx' cannot be used on this node: no Google access token (")
            assert "--credentials-file" in body["message"]
        finally:
            google.token_hold.set()



async def test_requests_waiting_for_a_token_share_one_fetch_even_when_their_waits_are_cancelled(
        tmp_path: Path) -> None:
    """google-auth fetches in a worker thread, which nothing can stop: requests waiting for a token
    share the one fetch under way, and a wait cancelled (the one that started the fetch among them)
    neither cancels it nor lets the next request start a second one in parallel."""
    async with FakeGoogle() as google:
        google.token_hold = asyncio.Event()  # the token endpoint answers once the test says so
        try:
            path = _accepted_key(google, tmp_path / "k.json")
            tokens = GoogleTokens()
            target = Target("vx", google.url, "gemini-2.5-flash", None,
                            {"project": "proj-1", "location": "us-central1", "credentials_file": str(path)})

            def fetches() -> int:
                return sum(r.path == "/token" for r in google.requests)

            first = asyncio.create_task(tokens.token(target))  # starts the fetch
            await wait_until(lambda: fetches() == 1, timeout=10)
            others = [asyncio.create_task(tokens.token(target)) for _ in range(5)]
            await asyncio.sleep(0)  # (each is waiting now)
            leaving = [first, *others[:2]]  # half of them give up, the first among them
            for task in leaving:
                task.cancel()
            await asyncio.gather(*leaving, return_exceptions=True)
            staying = others[2:]
            for _ in range(3):  # let any second fetch a freed lock would start get under way
                await asyncio.sleep(0)
            google.token_hold.set()
            got = await asyncio.gather(*staying)
            assert len(set(got)) == 1 and got[0] in google.tokens
            assert fetches() == 1, [r.path for r in google.requests]
            assert await tokens.token(target) == got[0]  # and it is reused
        finally:
            google.token_hold.set()


async def test_the_gemini_api_tells_google_clients_in_googles_shape(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model only a deployment without credentials here serves, asked through the Gemini API
    routes (/v1beta/models/...) with the google-genai SDK: Google's error shape, the 502 naming the
    deployment and the fix, its ErrorInfo the shieldes code, JSON and streamed alike."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    async with FakeGoogle() as google, harness(database_url, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("vx", "vertex", google.url, None, ("gemini-2.5-flash",),
                                  options={"project": "proj-1", "location": "us-central1"}))
        secret = await h.create_key("app")
        await h.sync()
        models = genai.Client(api_key=secret, http_options=genai_types.HttpOptions(
            base_url=h.base, retry_options=genai_types.HttpRetryOptions(attempts=1))).aio.models
        refusals: list[genai_errors.APIError] = []
        with pytest.raises(genai_errors.APIError) as json_call:
            await models.generate_content(model="gemini-2.5-flash", contents="say hello")
        refusals.append(json_call.value)
        with pytest.raises(genai_errors.APIError) as streamed:
            async for _chunk in await models.generate_content_stream(model="gemini-2.5-flash", contents="say hello"):
                pass
        refusals.append(streamed.value)
        for refused in refusals:
            assert refused.code == 502, refused
            assert refused.status == "FAILED_PRECONDITION", refused  # not UNAVAILABLE: retrying changes nothing
            message = refused.message or ""
            assert message.startswith("deployment 'vx' cannot be used on this node: no Google access token ("), message
            assert "shieldes provider update vx --credentials-file" in message and "\n" not in message
            body: Any = refused.details
            info = [d for d in body["error"]["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
            assert [(d["reason"], d["metadata"]) for d in info] == [
                ("PROVIDER_MISCONFIGURED", {"code": "provider_misconfigured"})], body
        assert not [r for r in google.requests if r.path != "/token"]
