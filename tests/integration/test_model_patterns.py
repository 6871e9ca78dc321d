"""Model-name patterns (`claude-*`, `*`) through a real node and the official SDKs: a name no
provider lists is served by a matching pattern and goes upstream as asked; exact names beat
patterns, the longest prefix beats a shorter one, `provider/name` pins with a pattern; a key's own
patterns limit it; /v1/models lists no pattern; the admin API refuses a misplaced `*`."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, UpdateProvider
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
BOOT = "boot-" + "admin-token-for-tests-" * 2


async def test_patterns_serve_new_names_exact_and_longest_prefix_win(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        ref = "env:" + UPSTREAM_KEY_ENV
        # `claude` (anthropic) lists claude-3-5-haiku-latest exactly; it now serves claude-* as well,
        # a second anthropic deployment serves the longer claude-opus-*, an openai one serves anything
        await h.admin(UpdateProvider("claude", None, models=("claude-3-5-haiku-latest", "claude-*")))
        await h.admin(AddProvider("opus", "anthropic", h.upstream.url, ref, ("claude-opus-*",)))
        await h.admin(AddProvider("any", "openai", h.upstream.url, ref, ("*",)))
        limited = await h.create_key("limited", models=("claude-*",))
        everything = await h.create_key("everything")
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=limited, max_retries=0)
        oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=everything, max_retries=0)
        try:
            # a name released after the config was written: served, sent upstream exactly as asked
            msg = await claude.messages.create(model="claude-sonnet-9-9", max_tokens=50, messages=HELLO)
            assert msg.usage.output_tokens == 5
            assert h.upstream.last().path == "/v1/messages"
            assert h.upstream.last().body["model"] == "claude-sonnet-9-9"

            # the longest prefix wins: claude-opus-* (deployment `opus`), not claude-* nor *
            before = len(h.upstream.requests)
            for _ in range(4):
                await claude.messages.create(model="claude-opus-5-5", max_tokens=50, messages=HELLO)
            sent = h.upstream.requests[before:]
            assert {r.path for r in sent} == {"/v1/messages"} and {r.body["model"] for r in sent} == {"claude-opus-5-5"}
            await h.flush()
            providers = {(r[1], r[2]) for r in h.delta_rows()}
            assert ("opus", "claude-opus-5-5") in providers and ("claude", "claude-opus-5-5") not in providers
            assert ("claude", "claude-sonnet-9-9") in providers

            # an exact name beats every pattern: gpt-4o stays on `openai`, though `any` serves *
            await oai.chat.completions.create(model="gpt-4o", messages=HELLO)
            await oai.chat.completions.create(model="some-new-model", messages=HELLO)  # only `*` matches
            assert h.upstream.last().body["model"] == "some-new-model"
            await h.flush()
            providers = {(r[1], r[2]) for r in h.delta_rows()}
            assert ("openai", "gpt-4o") in providers and ("any", "gpt-4o") not in providers
            assert ("any", "some-new-model") in providers

            # provider/name pins a deployment whose pattern matches: `claude`, not the longer `opus`
            await oai.chat.completions.create(model="claude/claude-opus-7", messages=HELLO)
            assert h.upstream.last().path == "/v1/messages" and h.upstream.last().body["model"] == "claude-opus-7"
            await h.flush()
            assert ("claude", "claude-opus-7") in {(r[1], r[2]) for r in h.delta_rows()}

            # a key limited to claude-* is refused other names with the usual 403
            limited_oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=limited, max_retries=0)
            with pytest.raises(openai.PermissionDeniedError) as denied:
                await limited_oai.chat.completions.create(model="gpt-4o", messages=HELLO)
            assert "may not use model 'gpt-4o'" in str(denied.value)

            # /v1/models: exact names only, never a pattern
            listed = {m.id for m in (await oai.models.list()).data}
            assert "claude-3-5-haiku-latest" in listed and "gpt-4o" in listed
            assert not any("*" in m for m in listed), listed
            assert {m.id for m in (await limited_oai.models.list()).data} == {"claude-3-5-haiku-latest"}
            await limited_oai.close()

            # prices stay per exact name: a pattern-served name with none is refused under a budget
            priced = anthropic.AsyncAnthropic(base_url=h.base, api_key=budgeted, max_retries=0)
            with pytest.raises(anthropic.PermissionDeniedError) as unpriced:
                await priced.messages.create(model="claude-opus-5-5", max_tokens=50, messages=HELLO)
            await priced.close()
            assert "model_not_priced" in str(unpriced.value) or unpriced.value.status_code == 403
            assert "shieldes pricing set claude-opus-5-5" in str(unpriced.value)

            # a `*` anywhere but the end is refused with a clear error
            api = AdminClient(h.base, BOOT)
            status, err = await api.post("/admin/v1/providers", {
                "name": "bad", "type": "openai", "base_url": h.upstream.url, "api_key_env": UPSTREAM_KEY_ENV,
                "models": ["gpt-*-mini"]})
            assert status == 400 and "'*' may only end a pattern" in err["error"]["message"], err
        finally:
            await claude.close()
            await oai.close()
