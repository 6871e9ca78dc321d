"""With tracing off, a client's W3C trace context (`traceparent`, `tracestate`) reaches every
upstream call as it came (so an app and an upstream that both trace share one trace), a malformed
`traceparent` is dropped with its `tracestate`, and a request that sent none sends none upstream.
(With tracing on, the attempt span's own context goes instead: tests/integration/test_tracing.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.gateway.client_trace import trace_headers, valid_traceparent
from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.fake_google import FakeGoogle, service_account
from tests.integration.gateway_harness import harness

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "vendor=abc,other=x:y"
CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI_ON_VERTEX = "gemini-2.5-pro"
TRACE_HEADERS = ("traceparent", "tracestate")


@pytest.mark.parametrize("value, valid", [
    (PARENT, True),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", True),  # a later version's extra field
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", False),  # version 00 has no more
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),  # version ff is forbidden
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),  # all-zero trace id
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),  # all-zero parent id
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # upper case
    ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", False),  # short trace id
    ("not-a-traceparent", False),
    ("", False),
])
def test_traceparent_format(value: str, valid: bool) -> None:
    assert valid_traceparent(value) is valid


def test_repeated_traceparent_is_dropped_tracestates_joined_and_a_huge_one_left_out() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    def of(*pairs: tuple[str, str]) -> Any:
        return trace_headers(CIMultiDictProxy(CIMultiDict(pairs)))

    assert of(("traceparent", PARENT), ("traceparent", PARENT)) is None
    assert of(("traceparent", PARENT), ("tracestate", "a=1"), ("tracestate", "b=2")) == \
        (("traceparent", PARENT), ("tracestate", "a=1,b=2"))
    assert of(("traceparent", PARENT)) == (("traceparent", PARENT),)
    assert of(("tracestate", "a=1")) is None
    assert of(("traceparent", PARENT), ("tracestate", "a=" + "x" * 9000)) == (("traceparent", PARENT),)  # too long


async def test_client_trace_context_reaches_every_upstream_call_with_tracing_off(
        database_url: str, tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with aws_credentials():
        async with FakeBedrock(region="eu-west-1") as bedrock, FakeGoogle(public_key=private.public_key()) as google, \
                harness(database_url, upstream_retries=0) as h:
            await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (CLAUDE_ON_BEDROCK,),
                                      options={"region": "eu-west-1"}))
            account = tmp_path / "sa.json"  # a service account whose tokens come from the fake's /token
            account.write_text(json.dumps(service_account(private, google.url + "/token")))
            await h.admin(AddProvider("vtx", "vertex", google.url, None, (GEMINI_ON_VERTEX,), options={
                "project": "proj-1", "location": "us-east5", "credentials_file": str(account)}))
            secret = await h.create_key("traced")
            await h.sync()
            up = h.upstream
            sent = {"traceparent": PARENT, "tracestate": STATE}
            oa = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, default_headers=sent)
            ac = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0, default_headers=sent)
            messages: Any = [{"role": "user", "content": "hello there"}]
            await oa.chat.completions.create(model="gpt-4o", messages=messages)
            async for _ in await oa.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
                pass
            await oa.completions.create(model="gpt-4o", prompt="hello")
            await oa.embeddings.create(model="text-embedding-3-small", input="hello")
            await oa.responses.create(model="gpt-4o", input="hi")
            await ac.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=messages)
            await ac.messages.create(model="gpt-4o", max_tokens=50, messages=messages)  # translated
            await oa.chat.completions.create(model=CLAUDE_ON_BEDROCK, messages=messages)
            await oa.chat.completions.create(model=GEMINI_ON_VERTEX, messages=messages)
            routes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"]
            calls = [rq.headers for rq in up.requests if rq.path in routes] + \
                [{k.lower(): v for k, v in seen.headers.items()} for seen in bedrock.requests] + \
                [{k.lower(): v for k, v in seen.headers.items()} for seen in google.requests
                 if "/publishers/" in seen.path]  # (not google-auth's token request: its own client)
            assert len(calls) == 9
            assert [{k: c.get(k) for k in TRACE_HEADERS} for c in calls] == [sent] * 9

            # a malformed traceparent is dropped, its tracestate with it; none sent, none forwarded
            count = len(up.requests)
            await oa.chat.completions.create(model="gpt-4o", messages=messages,
                                             extra_headers={"traceparent": "00-xyz-01", "tracestate": STATE})
            async with openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0) as plain:
                await plain.chat.completions.create(model="gpt-4o", messages=messages)
            await oa.close()
            await ac.close()
            for rq in up.requests[count:]:
                assert not set(TRACE_HEADERS) & set(rq.headers), rq.headers
            assert len(up.requests[count:]) == 2


async def test_client_trace_context_reaches_the_mcp_server_with_tracing_off(database_url: str) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from shieldes import secrets
    from shieldes.projections.shared_commands import AddMcpServer
    from tests.fake_mcp import TOKEN, running_mcp_server

    encryption_key = secrets.generate_key()
    with running_mcp_server() as (url, seen):
        async with harness(database_url, providers=False, encryption_key=encryption_key) as h:
            header = secrets.encrypt_secret(f"Bearer {TOKEN}", encryption_key)
            await h.admin(AddMcpServer("tools", url, {"Authorization": header}))
            await h.sync()
            key = await h.create_key("agent", mcp=("tools/add",))
            await h.sync()
            headers = {"Authorization": f"Bearer {key}", "traceparent": PARENT, "tracestate": STATE}
            async with create_mcp_http_client(headers=headers) as http, \
                    streamable_http_client(f"{h.base}/mcp/tools", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("add", {"a": 2, "b": 3})
                assert result.content[0].text == "5"  # type: ignore[union-attr]
            posts = [hd for method, hd in seen.requests if method == "POST"]
            assert posts and all((hd.get("traceparent"), hd.get("tracestate")) == (PARENT, STATE) for hd in posts)
