"""A client that leaves a stream while the upstream is silent (a model thinking) is noticed
without waiting for the upstream's next frame: the upstream call is stopped, and the request's
row, the stream-drop count and the in-flight gauge say so at once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.gateway_harness import harness, wait_until

CASES = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o"}),
    "messages": ("/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 64}),
}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_client_gone_while_the_upstream_is_silent_ends_the_stream(database_url: str, case: str) -> None:
    path, body = CASES[case]
    async with harness(database_url) as h:
        secret = await h.create_key("leaver")
        await h.sync()
        hold = h.upstream.inject(path, hold_after=2)  # two frames, then silence until released
        headers = {"Authorization": f"Bearer {secret}", "x-api-key": secret, "anthropic-version": "2023-06-01"}
        payload: dict[str, Any] = dict(body, stream=True, messages=[{"role": "user", "content": "think hard"}])
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
    assert drops[(("cause", "client"), ("provider", "claude" if case == "messages" else "openai"))] == 1
    assert samples(text, "shieldes_requests_in_flight") == {(): 1}  # the scrape itself only
