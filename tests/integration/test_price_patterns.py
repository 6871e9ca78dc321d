"""Prices by model-name pattern through a real node: a budgeted key asking (through the official
SDK) for a new name a provider pattern serves is refused until a pattern price covers it, then
admitted and costed at the pattern's rate (usage_deltas and the usage_daily view); the shipped
catalog's exact price still wins over the pattern. The admin API and the CLI set, list and remove
pattern prices and refuse a misplaced `*` with the rule."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import anthropic
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.cli import invoke, ok, refused
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
BOOT = "boot-" + "admin-token-for-tests-" * 2


async def test_a_budgeted_key_is_served_and_costed_at_the_pattern_price(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h:
        await h.admin(AddProvider("opus", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("claude-opus-*",)))
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        await h.sync()
        api = AdminClient(h.base, BOOT)
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=budgeted, max_retries=0)
        try:
            # no price: refused, and the answer says a pattern price (the provider's own) would do
            with pytest.raises(anthropic.PermissionDeniedError) as unpriced:
                await client.messages.create(model="claude-opus-5-5", max_tokens=50, messages=HELLO)
            error = unpriced.value.body
            assert isinstance(error, dict) and error["error"]["code"] == "model_not_priced", error
            assert "shieldes pricing set 'claude-opus-*'" in error["error"]["message"]

            # a misplaced `*` is refused with the rule
            status, err = await api.call("PUT", "/admin/v1/pricing/" + quote("claude-*-opus", safe=""),
                                         {"input_per_1m": 1, "output_per_1m": 1})
            assert status == 400 and "'*' may only end a pattern" in err["error"]["message"], err

            status, body = await api.call("PUT", "/admin/v1/pricing/" + quote("claude-opus-*", safe=""),
                                          {"input_per_1m": 20, "output_per_1m": 100})
            assert status == 200 and body["model"] == "claude-opus-*", body
            status, listed = await api.get("/admin/v1/pricing", source="override")
            assert [(r["model"], r["input_per_1m"], r["output_per_1m"]) for r in listed["data"]] == [
                ("claude-opus-*", 20, 100)]
            await h.sync()

            # admitted now; costed at the pattern's $20 / $100 per 1M tokens
            msg = await client.messages.create(model="claude-opus-5-5", max_tokens=50, messages=HELLO)
            # the shipped catalog's exact price ($5 / $25) wins over the pattern
            known = await client.messages.create(model="claude-opus-4-5", max_tokens=50, messages=HELLO)
            await h.flush()
            costs = {r[2]: (r[4], r[5], r[6]) for r in h.delta_rows()}
            prompt, completion = msg.usage.input_tokens, msg.usage.output_tokens
            assert costs["claude-opus-5-5"] == (prompt, completion, prompt * 20_000 + completion * 100_000)
            kp, kc = known.usage.input_tokens, known.usage.output_tokens
            assert costs["claude-opus-4-5"] == (kp, kc, kp * 5_000 + kc * 25_000)
            total = prompt * 20_000 + completion * 100_000 + kp * 5_000 + kc * 25_000
            assert h.usage_totals()["budgeted"][3] == total

            # removing the pattern's price: the name is unpriced again
            status, gone = await api.call("DELETE", "/admin/v1/pricing/" + quote("claude-opus-*", safe=""))
            assert status == 200 and gone["removed"] is True, gone
            status, missing = await api.call("DELETE", "/admin/v1/pricing/" + quote("claude-opus-*", safe=""))
            assert status == 404 and "GET /admin/v1/pricing?source=override" in missing["error"]["message"], missing
            await h.sync()
            with pytest.raises(anthropic.PermissionDeniedError):
                await client.messages.create(model="claude-opus-5-5", max_tokens=50, messages=HELLO)
        finally:
            await client.close()


def test_cli_sets_lists_and_unsets_pattern_prices(database_url: str) -> None:
    set_ = ok(database_url, "pricing", "set", "claude-opus-*", "--input", "20", "--output", "100")
    assert set_["model"] == "claude-opus-*"
    rows = ok(database_url, "pricing", "list", "--source", "override")
    assert [(r["model"], r["input_per_1m"], r["source"]) for r in rows] == [("claude-opus-*", 20, "override")]
    table = invoke(database_url, "pricing", "list", "--model", "opus-*")
    assert table.exit_code == 0 and "claude-opus-*" in table.stdout

    # a name the pattern covers is priced: no warning when a provider lists it
    added = invoke(database_url, "--json", "provider", "add", "p", "--type", "anthropic", "--base-url",
                   "http://127.0.0.1:9", "--api-key-env", "X", "--models", "claude-opus-9,local-llm")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["unpriced_models"] == ["local-llm"]
    assert "or price every name of its family with a pattern: `shieldes pricing set 'local-*' ...`" in added.stderr

    line = refused(database_url, "pricing", "set", "claude-*-x", "--input", "1", "--output", "1")
    assert "'*' may only end a pattern" in line

    assert ok(database_url, "pricing", "unset", "claude-opus-*")["removed"] is True
    assert ok(database_url, "pricing", "list", "--source", "override") == []
    line = refused(database_url, "pricing", "unset", "gpt-4o")
    assert "no price was set for 'gpt-4o'" in line and "shieldes pricing list --source override" in line
