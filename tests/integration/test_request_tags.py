"""LiteLLM's cost-attribution tags (body `tags`, `metadata.tags`, the x-litellm-tags header) are
recorded on the request log, on every model route, and found again with `shieldes logs --tag` and
GET /admin/v1/requests?tag=; never forwarded upstream; bounded, what is left out named."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from shieldes.projections.shared_commands import SetPricing
from tests.integration.gateway_harness import harness
from tests.integration.test_cli_remote import BOOT, direct, remote
from tests.integration.test_request_log import flushed

MESSAGES: Any = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-3-5-haiku-latest"


async def test_tags_are_recorded_on_the_request_log_and_found_again(database_url: str) -> None:
    """Tags were left out and named in x-shieldes-dropped, and lost: a team moved from LiteLLM could
    no longer tell what each tag cost."""
    async with harness(database_url, admin_token=BOOT, request_log_interval=0.05) as h:
        await h.admin(SetPricing("gpt-4o", 2.0, 8.0))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        want: dict[str, list[str] | None] = {}

        raw: Any = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, extra_body={"tags": ["search", "beta"]})
        assert "x-shieldes-dropped" not in raw.headers  # recorded, not dropped
        assert "tags" not in h.upstream.last("/v1/chat/completions").body
        want[raw.headers["x-request-id"]] = ["search", "beta"]
        litellm_metadata = {"metadata": {"tags": ["search"], "trace_id": "t"}}
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_body=litellm_metadata)
        async for _chunk in raw.parse():
            pass
        assert raw.headers["x-shieldes-dropped"] == "metadata"  # (LiteLLM's metadata: its other keys)
        want[raw.headers["x-request-id"]] = ["search"]
        raw = await client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi",
                                                               extra_headers={"x-litellm-tags": "ops, search"})
        want[raw.headers["x-request-id"]] = ["ops", "search"]
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", extra_body={"tags": ["ops"]})
        assert "x-shieldes-dropped" not in raw.headers
        want[raw.headers["x-request-id"]] = ["ops"]
        raw = await claude.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=8, messages=MESSAGES, metadata={"user_id": "u-1", "tags": ["search"]})  # type: ignore[typeddict-unknown-key]
        assert "x-shieldes-dropped" not in raw.headers
        assert h.upstream.last("/v1/messages").body["metadata"] == {"user_id": "u-1"}
        want[raw.headers["x-request-id"]] = ["search"]
        raw = await claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=8, messages=MESSAGES,
                                                             extra_headers={"x-litellm-tags": "beta"})
        want[raw.headers["x-request-id"]] = ["beta"]
        assert "x-litellm-tags" not in h.upstream.last("/v1/messages").headers
        assert "x-litellm-tags" not in h.upstream.last("/v1/embeddings").headers
        # bounded: at most 16 tags of at most 64 characters, the others named where they were
        many = ["x" * 65, *(f"t{i}" for i in range(17))]
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES,
                                                                     extra_body={"tags": many})
        assert raw.headers["x-shieldes-dropped"] == "tags[0], tags[17]"
        want[raw.headers["x-request-id"]] = [f"t{i}" for i in range(16)]
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        want[raw.headers["x-request-id"]] = None

        await flushed(h, len(want))
        rows = {r["request_id"]: r for r in (await direct(h, "--json", "logs", "--limit", "50")).json()}
        assert {rid: rows[rid]["tags"] for rid in want} == want
        tagged = (await direct(h, "--json", "logs", "--tag", "search")).json()
        assert sorted(r["request_id"] for r in tagged) == sorted(rid for rid, t in want.items() if t and "search" in t)
        assert (await remote(h, "--json", "logs", "--tag", "search")).json() == tagged  # GET /admin/v1/requests?tag=
        assert (await direct(h, "--json", "logs", "--tag", "nobody")).json() == []
