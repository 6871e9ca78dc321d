"""Traces reach a real OTLP/HTTP receiver (an aiohttp server decoding the protobuf
ExportTraceServiceRequest): one SERVER span per request, child of the client's traceparent, one
CLIENT span per upstream attempt with GenAI attributes, and the attempt's context sent upstream."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shieldes.errors import ShieldesError
from shieldes.projections.shared_commands import AddProvider
from shieldes.tracing import Tracing
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # Span.SpanKind values in the OTLP protobuf


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    assert r.runner is not None
    await r.runner.cleanup()


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        if v.HasField("array_value"):
            out[kv.key] = [x.string_value for x in v.array_value.values]
        else:
            out[kv.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


async def test_request_and_attempt_spans_with_client_parent_and_upstream_propagation(
        database_url: str, receiver: Receiver) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",))
    async with harness(database_url, upstream=up, otel_endpoint=receiver.url, upstream_retries=1) as h:
        await h.admin(AddProvider("backup", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        secret = await h.create_key("traced")
        await h.sync()
        up.inject("/v1/chat/completions", status=500, times=1)  # the first attempt fails
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
        headers = {"Authorization": f"Bearer {secret}", "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
                   "tracestate": "vendor=abc"}
        async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/chat/completions", json=body,
                                                        headers=headers) as r:
            assert r.status == 200
            rid = r.headers["x-request-id"]
        await wait_until(lambda: len([x for x in receiver.spans if x.trace_id.hex() == TRACE_ID]) >= 3, timeout=15)

        ours = [x for x in receiver.spans if x.trace_id.hex() == TRACE_ID]
        (server,) = [x for x in ours if x.kind == SERVER]
        attempts = sorted((x for x in ours if x.kind == CLIENT), key=lambda x: x.start_time_unix_nano)
        assert server.parent_span_id.hex() == CLIENT_SPAN  # the client's traceparent is the parent
        assert server.name == "POST /v1/chat/completions"
        a = attrs(server)
        assert (a["gen_ai.request.model"], a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == \
            ("gpt-4o", 2, 5)
        assert a["http.response.status_code"] == 200 and a["shieldes.request_id"] == rid
        # the HTTP server conventions' request attributes
        assert (a["url.scheme"], a["client.address"]) == ("http", "127.0.0.1")
        assert a["user_agent.original"].startswith("Python/")
        assert len(attempts) == 2
        for span in attempts:
            assert span.parent_span_id == server.span_id
            b = attrs(span)
            assert (b["gen_ai.system"], b["gen_ai.request.model"], b["gen_ai.operation.name"]) == \
                ("openai", "gpt-4o", "chat")
        assert attempts[0].status.code == 2 and attrs(attempts[0])["error.type"] == "500"  # STATUS_CODE_ERROR
        answered = attrs(attempts[1])
        assert answered["gen_ai.usage.output_tokens"] == 5
        # GenAI semantic conventions: the provider by its well-known name, the server by host and
        # port (never the base URL), and what the answer said of itself
        port = int(up.url.rsplit(":", 1)[1].split("/")[0])
        assert (answered["gen_ai.provider.name"], answered["server.address"], answered["server.port"]) == \
            ("openai", "127.0.0.1", port)
        assert answered["gen_ai.response.finish_reasons"] == ["stop"]
        assert answered["gen_ai.response.model"] == "gpt-4o" and answered["gen_ai.response.id"]
        # each upstream call carried its attempt span as traceparent
        sent = [rq.headers["traceparent"] for rq in up.requests_to("/v1/chat/completions")]
        assert sent == [f"00-{TRACE_ID}-{span.span_id.hex()}-01" for span in attempts]
        assert [rq.headers["tracestate"] for rq in up.requests_to("/v1/chat/completions")] == ["vendor=abc"] * 2
        assert h.node.request_log is not None and await h.node.request_log.flush_all(5)
        assert h.sql("SELECT trace_id FROM request_log WHERE request_id = %s", rid) == [(TRACE_ID,)]


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ShieldesError, match=r"pip install 'shieldes\[otel\]'"):
        Tracing("http://127.0.0.1:1", service_name="s", node_id="n")


async def test_server_spans_say_what_the_request_log_says(database_url: str, receiver: Receiver) -> None:
    """The span of a request to an unversioned alias is named by the /v1 route, as its row and
    its metrics; a refused request's span names no upstream model, as its row."""
    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("traced", rpm=1)
        await h.sync()
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
        headers = {"Authorization": f"Bearer {secret}"}
        rids = []
        async with aiohttp.ClientSession() as s:
            for status in (200, 429):
                async with s.post(h.base + "/chat/completions", json=body, headers=headers) as r:
                    assert r.status == status
                    rids.append(r.headers["x-request-id"])
        spans = {}
        await wait_until(lambda: len([x for x in receiver.spans if x.kind == SERVER]) >= 2, timeout=15)
        for span in receiver.spans:
            if span.kind == SERVER:
                spans[attrs(span)["shieldes.request_id"]] = span
        assert h.node.request_log is not None and await h.node.request_log.flush_all(5)
        for rid in rids:
            span = spans[rid]
            a = attrs(span)
            assert span.name == "POST /v1/chat/completions" and a["http.route"] == "/v1/chat/completions"
            (row,) = h.sql("SELECT route, upstream_model, trace_id FROM request_log WHERE request_id = %s", rid)
            assert row == (a["http.route"], a.get("gen_ai.response.model"), span.trace_id.hex())
        refused = spans[rids[1]]
        r = attrs(refused)
        assert "gen_ai.response.model" not in r  # the 429: no upstream was called
        # a refusal is no server failure (the HTTP conventions leave a SERVER span's 4xx unset): its
        # error.type and message say which and why, in the client's words
        (message,) = h.sql("SELECT error_message FROM request_log WHERE request_id = %s", rids[1])[0]
        assert refused.status.code == 0 and r["error.type"] == "rate_limit_exceeded"
        assert r["shieldes.error.message"] == "rate_limit_exceeded: " + message
        assert "rate limit reached for key 'traced'" in message
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            assert 'shieldes_requests_total{route="/v1/chat/completions",status="4xx"} 1.0' in await r.text()


async def test_a_request_cancelled_by_the_stop_has_a_finished_span_its_row_names(
        database_url: str, receiver: Receiver) -> None:
    """A request the node cancels when it stops (still waiting on its upstream past the grace):
    its span ends with the route, 499 and status ERROR `cancelled`, and its row names that trace."""
    async with harness(database_url, otel_endpoint=receiver.url, shutdown_grace=0.0) as h:
        secret = await h.create_key("traced")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", delay=5.0)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}

        async def call() -> None:
            async with aiohttp.ClientSession() as s, s.post(
                    h.base + "/v1/chat/completions", json=body,
                    headers={"Authorization": f"Bearer {secret}", "x-request-id": "cut-short"}) as r:
                await r.read()

        pending = asyncio.create_task(call())
        await wait_until(lambda: len(h.upstream.requests) == 1)
        await h.node.stop()
        with pytest.raises(aiohttp.ClientError):
            await pending
        (span,) = [x for x in receiver.spans if x.kind == SERVER]
        a = attrs(span)
        assert (span.name, a["http.route"], a["http.response.status_code"], a["error.type"]) == \
            ("POST /v1/chat/completions", "/v1/chat/completions", 499, "cancelled")
        assert span.status.code == 2 and span.status.message.startswith("cancelled: cancelled before")
        assert h.sql("SELECT status, error_code, trace_id FROM request_log WHERE request_id = 'cut-short'") == \
            [(499, "cancelled", span.trace_id.hex())]


async def test_a_streams_attempt_span_covers_the_whole_stream(database_url: str, receiver: Receiver) -> None:
    """A streamed call's CLIENT span ends when the upstream's stream ends, not when it opened: its
    duration is the stream's, with its usage, chunks and bytes; a stream the upstream breaks
    mid-way is the attempt's error, as the request's."""
    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("traced")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "hello there"}]
        h.upstream.inject("/v1/chat/completions", chunk_delay=0.1)  # 7 frames: 0.7 s of stream
        stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                                      extra_headers={"x-request-id": "whole"})
        got = [c async for c in stream]
        assert got
        h.upstream.inject("/v1/chat/completions", error_after=2, stream_error="server_error")
        stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                                      extra_headers={"x-request-id": "broken"})
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        await client.close()

        def server_of(rid: str) -> Any:
            return next((x for x in receiver.spans if x.kind == SERVER and attrs(x)["shieldes.request_id"] == rid),
                        None)

        def attempt_of(server: Any) -> Any:
            return next(x for x in receiver.spans if x.kind == CLIENT and x.parent_span_id == server.span_id)

        await wait_until(lambda: all(server_of(rid) for rid in ("whole", "broken")) and len(
            [x for x in receiver.spans if x.kind == CLIENT]) >= 2, timeout=15)
        server = server_of("whole")
        attempt = attempt_of(server)
        a = attrs(attempt)
        assert attempt.end_time_unix_nano - attempt.start_time_unix_nano >= 600_000_000  # the stream's 0.7 s
        assert server.end_time_unix_nano - attempt.end_time_unix_nano < 300_000_000  # ended with the stream
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (2, 5)
        assert a["shieldes.stream.outcome"] == "done" and a["shieldes.stream.chunks"] == 7
        assert a["shieldes.stream.bytes"] > 100 and attempt.status.code != 2
        broken = attempt_of(server_of("broken"))
        b = attrs(broken)
        assert broken.status.code == 2 and b["error.type"] == "upstream_stream_error"
        assert b["shieldes.stream.outcome"] == "upstream_error"
        assert broken.status.message.startswith("upstream_stream_error: ")


async def test_a_background_responses_run_is_traced_after_its_create(database_url: str, receiver: Receiver) -> None:
    """A background response's create is answered at once (its SERVER span ends then); the run
    that follows has a span of its own, a child of the create's, covering the upstream call (its
    attempt span within it) to the response's end; a run no upstream answered is an ERROR."""
    async with harness(database_url, otel_endpoint=receiver.url, upstream_retries=0) as h:
        secret = await h.create_key("traced")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        hold = h.upstream.inject("/v1/chat/completions", hold_after=2)
        made = await client.responses.create(model="gpt-4o", input="write a long essay", background=True)
        await wait_until(lambda: hold.holding == 1 and any(x.kind == SERVER for x in receiver.spans), timeout=15)
        hold.release.set()
        h.upstream.inject("/v1/chat/completions", status=500)
        failed = await client.responses.create(model="gpt-4o", input="again", background=True)
        await wait_until(lambda: len([x for x in receiver.spans if x.name == "background response"]) == 2,
                         timeout=15)
        await client.close()

        def run_of(response_id: str) -> Any:
            return next(x for x in receiver.spans if x.name == "background response"
                        and attrs(x)["gen_ai.response.id"] == response_id)

        run = run_of(made.id)
        (create,) = [x for x in receiver.spans if x.span_id == run.parent_span_id]
        assert create.kind == SERVER and create.name == "POST /v1/responses"
        assert create.end_time_unix_nano < run.end_time_unix_nano  # the create was answered first
        (attempt,) = [x for x in receiver.spans if x.kind == CLIENT and x.parent_span_id == run.span_id]
        assert run.start_time_unix_nano <= attempt.start_time_unix_nano
        assert attempt.end_time_unix_nano <= run.end_time_unix_nano
        # the attempt's span covers the upstream's whole stream (held at the upstream until released)
        assert attrs(attempt)["shieldes.stream.outcome"] == "done" and attrs(attempt)["gen_ai.usage.output_tokens"] == 5
        a = attrs(run)
        assert a["shieldes.response.status"] == "completed" and a["gen_ai.usage.output_tokens"] == 5
        assert a["gen_ai.request.model"] == "gpt-4o" and run.status.code != 2
        broken = run_of(failed.id)
        b = attrs(broken)
        assert broken.status.code == 2 and b["shieldes.response.status"] == "failed"
        assert b["error.type"] == "upstream_error" and "upstream" in broken.status.message


async def test_mcp_calls_are_client_spans_whose_context_reaches_the_mcp_server(
        database_url: str, receiver: Receiver) -> None:
    """A call through /mcp/{name} has a CLIENT span per request to the MCP server, named and
    attributed as the MCP conventions say (`tools/call add`), and the server gets its context as
    `traceparent` (with the client's `tracestate`), so a server that traces joins the same trace."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from shieldes import secrets
    from shieldes.projections.shared_commands import AddMcpServer
    from tests.fake_mcp import TOKEN, running_mcp_server

    encryption_key = secrets.generate_key()
    with running_mcp_server() as (url, seen):
        async with harness(database_url, providers=False, encryption_key=encryption_key,
                           otel_endpoint=receiver.url) as h:
            header = secrets.encrypt_secret(f"Bearer {TOKEN}", encryption_key)
            await h.admin(AddMcpServer("tools", url, {"Authorization": header}))
            await h.sync()
            key = await h.create_key("agent", mcp=("tools/add",))
            await h.sync()
            headers = {"Authorization": f"Bearer {key}", "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
                       "tracestate": "vendor=abc"}
            async with create_mcp_http_client(headers=headers) as http, \
                    streamable_http_client(f"{h.base}/mcp/tools", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("add", {"a": 2, "b": 3})
                assert result.content[0].text == "5"  # type: ignore[union-attr]

            def call_span() -> Any:
                return next((x for x in receiver.spans if x.kind == CLIENT and x.name == "tools/call add"), None)

            await wait_until(lambda: call_span() is not None, timeout=15)
            span = call_span()
            a = attrs(span)
            assert span.trace_id.hex() == TRACE_ID
            (server,) = [x for x in receiver.spans if x.span_id == span.parent_span_id]
            assert server.kind == SERVER and attrs(server)["http.route"] == "/mcp/{name}"
            assert (a["mcp.method.name"], a["gen_ai.tool.name"], a["gen_ai.operation.name"]) == \
                ("tools/call", "add", "execute_tool")
            assert (a["server.address"], a["shieldes.mcp.server"], a["http.response.status_code"]) == \
                ("127.0.0.1", "tools", 200)
            posts = [hd for method, hd in seen.requests if method == "POST" and "traceparent" in hd]
            assert f"00-{TRACE_ID}-{span.span_id.hex()}-01" in [hd["traceparent"] for hd in posts]
            assert all(hd.get("tracestate") == "vendor=abc" for hd in posts)


async def test_the_standard_sampler_settings_apply_and_rows_name_only_exported_traces(
        database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_SAMPLER (and _ARG) choose which traces are kept, as in any OpenTelemetry SDK;
    a request whose trace was left out is exported nowhere, so its row names no trace."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("sampled")
        await h.sync()
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
        async with aiohttp.ClientSession() as s:
            for rid, parent in (("left-out", None), ("kept", f"00-{TRACE_ID}-{CLIENT_SPAN}-01")):
                headers = {"Authorization": f"Bearer {secret}", "x-request-id": rid}
                if parent:  # a client's sampled trace is followed (parent based)
                    headers["traceparent"] = parent
                async with s.post(h.base + "/v1/chat/completions", json=body, headers=headers) as r:
                    assert r.status == 200
        await wait_until(lambda: any(x.kind == SERVER for x in receiver.spans), timeout=15)
        assert h.node.request_log is not None and await h.node.request_log.flush_all(5)
        rows = dict(h.sql("SELECT request_id, trace_id FROM request_log WHERE request_id IN ('kept', 'left-out')"))
        assert rows == {"kept": TRACE_ID, "left-out": None}
        assert {attrs(x)["shieldes.request_id"] for x in receiver.spans if x.kind == SERVER} == {"kept"}


async def test_a_streams_attempt_span_says_why_it_finished(database_url: str, receiver: Receiver) -> None:
    """As a JSON answer's attempt span does, a stream's names why each choice finished
    (gen_ai.response.finish_reasons), in the upstream's words, on every streaming route: chat
    relayed as the upstream's bytes and translated from Anthropic, Messages, Responses; a stream
    the upstream broke before any finish names none."""
    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("traced")
        await h.sync()
        oa = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "hello there"}]

        async def chat(model: str, rid: str, **kw: Any) -> None:
            stream = await oa.chat.completions.create(model=model, messages=messages, stream=True,
                                                      extra_headers={"x-request-id": rid}, **kw)
            async for _ in stream:
                pass

        await chat("gpt-4o", "chat")
        await chat("gpt-4o", "capped", max_tokens=2)
        await chat("claude-3-5-haiku-latest", "translated")
        ac = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        async with ac.messages.stream(model="claude-3-5-haiku-latest", max_tokens=50, messages=messages,
                                      extra_headers={"x-request-id": "messages"}) as events:
            await events.get_final_message()
        async with oa.responses.stream(model="gpt-4o", input="hi", max_output_tokens=2,
                                       extra_headers={"x-request-id": "responses"}) as answer:
            async for _ in answer:  # (it ends incomplete: no response.completed for get_final_response)
                pass
        h.upstream.inject("/v1/chat/completions", error_after=2, stream_error="server_error")
        with pytest.raises(openai.APIError):
            await chat("gpt-4o", "broken")
        await oa.close()
        rids = ("chat", "capped", "translated", "messages", "responses", "broken")

        def attempt_of(rid: str) -> Any:
            server = next((x for x in receiver.spans if x.kind == SERVER and attrs(x)["shieldes.request_id"] == rid),
                          None)
            return None if server is None else next(
                (x for x in receiver.spans if x.kind == CLIENT and x.parent_span_id == server.span_id), None)

        await wait_until(lambda: all(attempt_of(rid) for rid in rids), timeout=15)
        reasons = {rid: attrs(attempt_of(rid)).get("gen_ai.response.finish_reasons") for rid in rids}
        assert reasons == {"chat": ["stop"], "capped": ["length"], "translated": ["stop"],
                           "messages": ["end_turn"], "responses": ["max_output_tokens"], "broken": None}


async def test_latency_histograms_carry_the_trace_as_exemplar(database_url: str, receiver: Receiver) -> None:
    """With tracing on, a latency bucket's exemplar is the trace id of its latest request (request
    latency, upstream latency, time to first token), in the OpenMetrics format Prometheus asks for
    (the classic text format, which has no exemplars, stays the default)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
    from prometheus_client.parser import text_string_to_metric_families

    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("traced")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "hello there"}]
        await client.chat.completions.create(model="gpt-4o", messages=messages, extra_headers={"x-request-id": "j"})
        stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                                      extra_headers={"x-request-id": "s"})
        async for _ in stream:
            pass
        await client.close()

        def trace_of(rid: str) -> str | None:
            span = next((x for x in receiver.spans if x.kind == SERVER and attrs(x)["shieldes.request_id"] == rid),
                        None)
            return None if span is None else span.trace_id.hex()

        await wait_until(lambda: trace_of("j") is not None and trace_of("s") is not None, timeout=15)
        async with aiohttp.ClientSession() as http:
            async with http.get(h.base + "/metrics", headers={
                    "Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                text = await resp.text()
            async with http.get(h.base + "/metrics") as resp:
                assert resp.headers["Content-Type"].startswith("text/plain")
                classic = await resp.text()
        exemplars: dict[tuple[str, str], set[str]] = {}
        for family in openmetrics_families(text):
            for sample in family.samples:
                if sample.exemplar is not None:
                    key = (family.name, sample.labels.get("route") or sample.labels.get("provider", ""))
                    exemplars.setdefault(key, set()).add(sample.exemplar.labels["trace_id"])
        assert exemplars[("shieldes_request_seconds", "/v1/chat/completions")] == {trace_of("j"), trace_of("s")}
        assert exemplars[("shieldes_upstream_seconds", "openai")] <= {trace_of("j"), trace_of("s")}
        assert exemplars[("shieldes_time_to_first_token_seconds", "openai")] == {trace_of("s")}
        assert "shieldes_request_seconds" in {f.name for f in text_string_to_metric_families(classic)}
        assert "trace_id" not in classic


async def test_a_json_answers_attempt_span_says_what_answered_on_every_model_route(
        database_url: str, receiver: Receiver) -> None:
    """A JSON answer's attempt span carries its usage, id, model and finish reasons on every model
    route, not chat's alone: Messages (relayed as the upstream's bytes, and translated to an OpenAI
    deployment), Responses, the Gemini API (translated), and chat translated from Anthropic."""
    from google import genai
    from google.genai import types

    async with harness(database_url, otel_endpoint=receiver.url) as h:
        secret = await h.create_key("traced")
        await h.sync()
        oa = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        ac = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "hello there"}]
        answered = {
            "chat-translated": (await oa.chat.completions.with_raw_response.create(
                model="claude-3-5-haiku-latest", messages=messages)).headers,
            "messages": (await ac.messages.with_raw_response.create(
                model="claude-3-5-haiku-latest", max_tokens=50, messages=messages)).headers,
            "messages-translated": (await ac.messages.with_raw_response.create(
                model="gpt-4o", max_tokens=50, messages=messages)).headers,
            "responses": (await oa.responses.with_raw_response.create(model="gpt-4o", input="hi")).headers,
        }
        gemini = genai.Client(api_key=secret, http_options=types.HttpOptions(
            base_url=h.base, retry_options=types.HttpRetryOptions(attempts=1)))
        reply = await gemini.aio.models.generate_content(model="gpt-4o-mini", contents="Say hello")
        assert reply.sdk_http_response is not None and reply.sdk_http_response.headers is not None
        answered["gemini"] = reply.sdk_http_response.headers
        await oa.close()
        rids = {name: {k.lower(): v for k, v in headers.items()}["x-request-id"] for name, headers in answered.items()}

        def attempt_of(rid: str) -> Any:
            server = next((x for x in receiver.spans if x.kind == SERVER and attrs(x)["shieldes.request_id"] == rid),
                          None)
            return None if server is None else next(
                (x for x in receiver.spans if x.kind == CLIENT and x.parent_span_id == server.span_id), None)

        await wait_until(lambda: all(attempt_of(rid) for rid in rids.values()), timeout=15)
        for name, rid in rids.items():
            a = attrs(attempt_of(rid))
            said = {k: a.get(k) for k in ("gen_ai.usage.output_tokens", "gen_ai.response.model",
                                          "gen_ai.response.finish_reasons")}
            upstream_model = {"chat-translated": "claude-3-5-haiku-latest", "messages": "claude-3-5-haiku-latest",
                              "gemini": "gpt-4o-mini"}.get(name, "gpt-4o")
            finish = {"messages": ["end_turn"], "responses": ["completed"]}.get(name, ["stop"])
            assert said == {"gen_ai.usage.output_tokens": 5, "gen_ai.response.model": upstream_model,
                            "gen_ai.response.finish_reasons": finish}, name
            assert a.get("gen_ai.usage.input_tokens", 0) > 0 and a.get("gen_ai.response.id"), name
