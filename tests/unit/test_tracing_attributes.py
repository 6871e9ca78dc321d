"""The GenAI and server attributes of an upstream attempt's span, from a deployment's base URL and
an answer's body (pure functions of shieldes/tracing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from shieldes.tracing import Tracing, answer_attributes, server_failed, server_of
from tests.loopback_http import served


def test_server_is_the_host_and_port_never_the_url_or_its_credentials() -> None:
    assert server_of("https://user:s3cret@api.example.com/v1") == {"server.address": "api.example.com",
                                                                  "server.port": 443}
    assert server_of("http://10.0.0.7:8000/openai/v1") == {"server.address": "10.0.0.7", "server.port": 8000}
    assert server_of("http://[::1]:9/v1") == {"server.address": "::1", "server.port": 9}
    assert server_of("") == {} and server_of("http://[::1") == {}


def test_an_answer_says_its_id_model_and_finish_reasons() -> None:
    body = {"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06",
            "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}, {"finish_reason": None}]}
    assert answer_attributes(body) == {"gen_ai.response.id": "chatcmpl-1",
                                       "gen_ai.response.model": "gpt-4o-2024-08-06",
                                       "gen_ai.response.finish_reasons": ["stop", "length"]}
    assert answer_attributes({"data": [{"embedding": [0.1]}], "model": "e"}) == {"gen_ai.response.model": "e"}
    assert answer_attributes(None) == {}


def test_every_apis_answer_says_them_in_its_own_words() -> None:
    """Anthropic Messages, Responses and Gemini answers, as their streams' spans name them."""
    messages = {"id": "msg_1", "model": "claude-sonnet-4-5", "stop_reason": "max_tokens"}
    assert answer_attributes(messages) == {"gen_ai.response.id": "msg_1", "gen_ai.response.model": "claude-sonnet-4-5",
                                           "gen_ai.response.finish_reasons": ["max_tokens"]}
    response = {"id": "resp_1", "object": "response", "model": "gpt-4o", "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"}}
    assert answer_attributes(response)["gen_ai.response.finish_reasons"] == ["max_output_tokens"]
    completed = dict(response, status="completed", incomplete_details=None)
    assert answer_attributes(completed)["gen_ai.response.finish_reasons"] == ["completed"]
    gemini = {"responseId": "r-1", "modelVersion": "gemini-2.5-flash",
              "candidates": [{"finishReason": "STOP"}, {"content": {}}]}
    assert answer_attributes(gemini) == {"gen_ai.response.id": "r-1", "gen_ai.response.model": "gemini-2.5-flash",
                                         "gen_ai.response.finish_reasons": ["STOP"]}


def test_a_server_span_is_an_error_when_the_server_failed_not_when_it_refused() -> None:
    assert server_failed(502, "upstream_error") and server_failed(500, None)
    assert server_failed(200, "upstream_stream_error")  # broke after its 200
    assert server_failed(499, "cancelled")  # the node stopped past its grace
    for status, code in ((429, "rate_limit_exceeded"), (401, "invalid_api_key"), (404, None), (200, None),
                         (499, "client_disconnected"), (200, "client_disconnected")):
        assert not server_failed(status, code), (status, code)


@contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP collector on loopback that takes every export: the provider's shutdown sends its
    batch once (to a refused port the exporter retried for some 3 s) and nothing here reads it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with served(Handler) as url:
        yield url


def test_an_mcp_servers_4xx_is_its_client_spans_error() -> None:
    """The span of a call to an MCP server (a CLIENT span) is an ERROR when the server answered
    4xx or 5xx, as the HTTP client conventions say; a 2xx is not, nor a client that left."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    with collector() as endpoint:
        tracing = Tracing(endpoint, service_name="s", node_id="n")
        exporter = InMemorySpanExporter()
        tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
        for status, code in ((404, None), (200, None), (200, "client_disconnected"),
                             (200, "mcp_upstream_stream_broken")):
            with tracing.mcp_span("tools", "http://127.0.0.1:9/mcp", "tools/call", "add") as span:
                tracing.mcp_answered(span, status, code, "why")
        tracing.provider.shutdown()
    spans = exporter.get_finished_spans()
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.UNSET, StatusCode.UNSET,
                                                       StatusCode.ERROR]
    assert spans[0].attributes is not None and spans[0].attributes["error.type"] == "404"
    assert spans[0].name == "tools/call add" and spans[0].attributes["gen_ai.tool.name"] == "add"
