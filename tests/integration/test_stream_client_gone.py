"""A client that leaves a stream while the upstream is silent (a model thinking) is noticed
without waiting for the upstream's next frame: the upstream call is stopped, and the request's
row, the stream-drop count and the in-flight gauge say so at once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.gateway_harness import harness, wait_until

# client path, the upstream's path, body, deployment: the front's routes (chat, Messages) and one
# aiohttp serves (the Gemini API's)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "chat": ("/v1/chat/completions", "/v1/chat/completions",
             {"model": "gpt-4o", "messages": [{"role": "user", "content": "think hard"}]}, "openai"),
    "messages": ("/v1/messages", "/v1/messages",
                 {"model": "claude-3-5-haiku-latest", "max_tokens": 64,
                  "messages": [{"role": "user", "content": "think hard"}]}, "claude"),
    "gemini": ("/v1beta/models/gpt-4o:streamGenerateContent?alt=sse", "/v1/chat/completions",
               {"contents": [{"role": "user", "parts": [{"text": "think hard"}]}]}, "openai"),
}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_client_gone_while_the_upstream_is_silent_ends_the_stream(database_url: str, case: str) -> None:
    path, upstream_path, body, deployment = CASES[case]
    async with harness(database_url) as h:
        secret = await h.create_key("leaver")
        await h.sync()
        hold = h.upstream.inject(upstream_path, hold_after=2)  # two frames, then silence until released
        headers = {"Authorization": f"Bearer {secret}", "x-api-key": secret, "anthropic-version": "2023-06-01",
                   "x-goog-api-key": secret}
        payload = body if case == "gemini" else dict(body, stream=True)
        async with aiohttp.ClientSession() as http:
            r = await http.post(h.base + path, json=payload, headers=headers)
            assert r.status == 200
            rid = r.headers["x-request-id"]
            await r.content.readline()
            await wait_until(lambda: hold.holding == 1)
            r.close()  # the client gives up while the model says nothing
            # the upstream call is stopped (the upstream still holds: it would wait there for ever)
            await wait_until(lambda: hold.dropped == 1, timeout=5)
            assert not hold.release.is_set()
            writer = h.node.request_log
            assert writer is not None
            await wait_until(lambda: writer.buffer.added >= 1)
            assert await writer.flush_all(10)
            (row,) = h.sql("SELECT status, error_code, stream, prompt_tokens > 0 FROM request_log"
                           " WHERE request_id = %s", rid)
            assert row == (200, "client_disconnected", True, True)
            async with http.get(h.base + "/metrics") as m:
                text = await m.text()
        hold.release.set()
    drops = samples(text, "shieldes_stream_drops_total")
    assert drops[(("cause", "client"), ("provider", deployment))] == 1
    assert samples(text, "shieldes_requests_in_flight") == {(): 1}  # the scrape itself only


async def test_its_attempt_span_ends_then_as_the_clients_leaving(database_url: str) -> None:
    """The stream's attempt span ends when the client's leaving is noticed (outcome
    `disconnected`), not when the upstream speaks again; the request's span is no failure."""
    from tests.integration.test_tracing import CLIENT, SERVER, Receiver, attrs

    receiver = await Receiver().start()
    try:
        async with harness(database_url, otel_endpoint=receiver.url) as h:
            secret = await h.create_key("leaver")
            await h.sync()
            hold = h.upstream.inject("/v1/chat/completions", hold_after=2)
            payload = dict(CASES["chat"][2], stream=True)
            async with aiohttp.ClientSession() as http:
                r = await http.post(h.base + "/v1/chat/completions", json=payload,
                                    headers={"Authorization": f"Bearer {secret}"})
                await r.content.readline()
                await wait_until(lambda: hold.holding == 1)
                r.close()

            def spans() -> tuple[Any, Any] | None:
                server = next((x for x in receiver.spans if x.kind == SERVER), None)
                attempt = next((x for x in receiver.spans if x.kind == CLIENT), None)
                return None if server is None or attempt is None else (server, attempt)

            await wait_until(lambda: spans() is not None, timeout=10)
            assert not hold.release.is_set()
            hold.release.set()
        found = spans()
        assert found is not None
        server, attempt = found
        assert attrs(attempt)["shieldes.stream.outcome"] == "disconnected" and attempt.status.code != 2
        assert attrs(server)["http.response.status_code"] == 200 and server.status.code != 2
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
