"""An application reads its own key's budget and limits with only that key: GET /v1/key, LiteLLM's
GET /key/info and OpenRouter's GET /api/v1/key, through real HTTP, with every key header the
other routes take; never another key's, never a secret."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import aiohttp
import openai

from shieldes.projections.commands import CreateTeam
from shieldes.projections.shared_commands import SetPricing
from tests.integration.gateway_harness import harness


async def _get(s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with s.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_an_app_reads_its_own_keys_budget_and_limits(database_url: str) -> None:
    """Nothing answered an app asking how much of its budget is left: LiteLLM's /key/info and
    OpenRouter's /api/v1/key were 404, and shieldes had no route of its own."""
    async with harness(database_url) as h:
        await h.admin(SetPricing("gpt-4o", 2.0, 8.0))
        await h.admin(CreateTeam("team_s", "search", 100.0, "1mo"))
        expires = time.time() + 86400
        secret = await h.create_key("app", models=("gpt-4o",), rpm=60, tpm=10000, budget_usd=10.0,
                                    budget_period="1mo", team="team_s", expires_at=expires)
        other = await h.create_key("other")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi there"}])
        async with aiohttp.ClientSession() as s:
            answers = [await _get(s, h.base + "/v1/key", headers) for headers in (
                {"Authorization": f"Bearer {secret}"}, {"x-api-key": secret}, {"x-litellm-api-key": secret},
                {"x-bf-vk": secret, "Authorization": "Bearer placeholder"})]
            assert all(status == 200 for status, _ in answers), answers
            info = answers[0][1]
            assert all(body == info for _, body in answers)
            assert (info["object"], info["name"], info["team"]["name"]) == ("key", "app", "search")
            assert (info["models"], info["rpm"], info["tpm"]) == (["gpt-4o"], 60, 10000)
            budget = info["budget"]
            assert (budget["amount_usd"], budget["period"]) == (10.0, "1mo")
            assert budget["spent_usd"] > 0
            # what is left, as `shieldes budget show` says it: in decimal, without a float difference's noise
            assert budget["remaining_usd"] == float(Decimal("10") - Decimal(str(budget["spent_usd"])))
            assert budget["resets_at"].endswith("Z") and info["team_budget"]["spent_usd"] == budget["spent_usd"]
            assert info["expires_at"].startswith(time.strftime("%Y-", time.gmtime(expires)))
            assert secret not in str(info) and secret[-8:] not in str(info)

            status, lite = await _get(s, h.base + "/key/info", {"Authorization": f"Bearer {secret}"})
            assert status == 200 and lite["key"] == info["id"]
            assert (lite["info"]["key_alias"], lite["info"]["max_budget"], lite["info"]["spend"]) == \
                ("app", 10.0, budget["spent_usd"])
            assert (lite["info"]["rpm_limit"], lite["info"]["budget_duration"]) == (60, "1mo")
            status, own = await _get(s, h.base + f"/key/info?key={secret}", {"Authorization": f"Bearer {secret}"})
            assert status == 200 and own == lite
            status, refused = await _get(s, h.base + f"/key/info?key={other}", {"Authorization": f"Bearer {secret}"})
            assert status == 403 and "only its own" in refused["error"]["message"], refused

            status, router = await _get(s, h.base + "/api/v1/key", {"Authorization": f"Bearer {secret}"})
            assert status == 200
            assert router["data"]["label"] == "app" and router["data"]["limit"] == 10.0
            assert router["data"]["limit_remaining"] == budget["remaining_usd"]
            assert router["data"]["limit_reset"] == "monthly" and router["data"]["rate_limit"]["requests"] == 60

            status, bare = await _get(s, h.base + "/v1/key", {"Authorization": f"Bearer {other}"})
            assert status == 200 and bare["budget"] is None and bare["models"] is None and bare["team"] is None
            status, _ = await _get(s, h.base + "/api/v1/key", {"Authorization": f"Bearer {other}"})
            assert status == 200
            status, denied = await _get(s, h.base + "/v1/key", {})
            assert status == 401 and denied["error"]["type"] == "authentication_error"


def test_what_is_left_is_said_in_decimal() -> None:
    """$0.005 less $0.004986 spent was answered 1.4000000000000123e-05, a float difference's noise."""
    from shieldes.gateway.key_info import _budget
    from shieldes.projections.state import Budget

    left = _budget(Budget(0.005, "30d"), 0.004986, 20_000)
    assert left is not None and left["remaining_usd"] == 0.000014
