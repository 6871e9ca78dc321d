"""OpenAI's hosted tools run at OpenAI, which bills each use apart from tokens: a web search
($10 per 1,000 calls), a file search ($2.50 per 1,000), a code interpreter container ($0.03). The
Responses object lists each as an output item (`web_search_call`, `file_search_call`,
`code_interpreter_call` naming its `container_id`); usage does not count them. Through a real node
(native Responses) and the official SDK, JSON and streamed, each use costs the model's per-use
price on top of its tokens, in usage_daily and the request log, whose columns count them."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import SetPricing, UpdateProvider
from tests.integration.gateway_harness import harness, snapshot_and_load, wait_until

TOOLS: Any = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
              {"type": "code_interpreter", "container": {"type": "auto"}}]
# nUSD per token: gpt-4o $2.50 / $10 per 1M; per use: $0.01 a web search, $0.0025 a file search,
# $0.03 a container (the catalog's); house-4o: the operator's $0.02 / $0.005 / $0.05
GPT4O = (2500, 10_000)
FEES = 10_000_000 + 2_500_000 + 30_000_000


async def test_hosted_tool_uses_cost_their_per_use_prices(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native", models=("gpt-4o", "gpt-4o-mini", "house-4o")))
        await h.admin(SetPricing("house-4o", 1.0, 2.0, per_web_search=0.02,
                                 per_use=(("container", 0.05), ("file_search", 0.005))))
        names = ("json", "stream", "plain", "house")
        keys = {name: await h.create_key(name) for name in names}
        await h.sync()

        def client(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        answer = await client("json").responses.create(model="gpt-4o", input="weather?", tools=TOOLS)
        assert [i.type for i in answer.output] == ["web_search_call", "file_search_call", "code_interpreter_call",
                                                   "message"]
        async with client("stream").responses.stream(model="gpt-4o", input="weather?", tools=TOOLS) as events:
            streamed = await events.get_final_response()
        assert len(streamed.output) == 4
        plain = await client("plain").responses.create(model="gpt-4o", input="weather?")
        house = await client("house").responses.create(model="house-4o", input="weather?", tools=TOOLS)

        await h.flush()
        totals = h.usage_totals()

        def tokens(r: Any, rate: tuple[int, int] = GPT4O) -> int:
            return int(r.usage.input_tokens * rate[0] + r.usage.output_tokens * rate[1])

        assert totals["json"][3] == tokens(answer) + FEES
        assert totals["stream"][3] == tokens(streamed) + FEES
        assert totals["plain"][3] == tokens(plain)
        assert totals["house"][3] == tokens(house, (1000, 2000)) + 20_000_000 + 5_000_000 + 50_000_000

        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= len(names), timeout=10)
        assert await writer.flush_all(10)
        logged = {r[0]: r[1:] for r in h.sql("SELECT key_name, web_searches, file_searches, containers, cost_nusd "
                                              "FROM request_log")}
        assert logged == {"json": (1, 1, 1, totals["json"][3]), "stream": (1, 1, 1, totals["stream"][3]),
                          "plain": (None, None, None, totals["plain"][3]),
                          "house": (1, 1, 1, totals["house"][3])}


async def test_a_container_reused_by_later_turns_is_billed_once_per_session(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native", models=("gpt-4o",)))
        keys = {name: await h.create_key(name) for name in ("reuse", "fresh")}
        await h.sync()

        def client(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        reused: Any = [{"type": "code_interpreter", "container": "cntr_shared"}]
        turns = [await client("reuse").responses.create(model="gpt-4o", input=f"turn {i}", tools=reused)
                 for i in range(3)]
        assert {t.output[0].container_id for t in turns} == {"cntr_shared"}  # type: ignore[union-attr]
        # each new auto container is its own session
        auto: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        fresh = [await client("fresh").responses.create(model="gpt-4o", input=f"turn {i}", tools=auto)
                 for i in range(2)]

        await h.flush()
        totals = h.usage_totals()
        tokens = sum(int(t.usage.input_tokens * GPT4O[0] + t.usage.output_tokens * GPT4O[1])  # type: ignore[union-attr]
                     for t in turns)
        assert totals["reuse"][3] == tokens + 30_000_000  # one session: $0.03, not three
        tokens = sum(int(t.usage.input_tokens * GPT4O[0] + t.usage.output_tokens * GPT4O[1])  # type: ignore[union-attr]
                     for t in fresh)
        assert totals["fresh"][3] == tokens + 2 * 30_000_000


async def test_a_budget_holds_the_hosted_tools_a_request_offers(database_url: str) -> None:
    """A key at its budget's edge: a request whose tokens fit but whose hosted tools (held at
    USES_HELD searches each, or the request's own bound) do not is refused before any upstream
    call, on the Responses and the Messages APIs; with a bound that fits it is served and settled
    at what it used."""
    import anthropic
    import pytest

    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native", models=("gpt-4o",)))
        await h.admin(SetPricing("claude-3-5-haiku-latest", 0.8, 4.0, per_web_search=0.01))
        # tokens of these requests: well under $0.001; five searches: $0.05
        secret = await h.create_key("edge", budget_usd=0.04)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        search: Any = [{"type": "web_search"}]
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o", input="news?", tools=search, max_output_tokens=50)
        assert refused.value.code == "budget_exceeded"
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, tools=[
                {"type": "web_search_20250305", "name": "web_search"}], messages=[{"role": "user", "content": "news?"}])
        assert h.upstream.requests == []  # refused before any upstream call

        answer = await client.responses.create(model="gpt-4o", input="news?", tools=search, max_output_tokens=50,
                                               max_tool_calls=2)
        assert answer.output[0].type == "web_search_call"
        message = await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, tools=[
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
            messages=[{"role": "user", "content": "news?"}])
        assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 1
        await h.flush()
        assert h.usage_totals()["edge"][0] == 2


ADMIN = "admin-" + "token-for-tool-usage-" * 2


async def test_usage_reports_count_hosted_tool_uses_and_split_their_cost(database_url: str) -> None:
    """A finance user sees web searches, file searches and containers per key and day, and what
    they cost apart from tokens, in usage_daily, `shieldes usage` and GET /admin/v1/usage: the
    same numbers after compaction folds the raw usage."""
    import asyncio

    import aiohttp

    from tests.cli import ok
    from tests.integration.test_cli_audit import fake_compaction

    async with harness(database_url, admin_token=ADMIN) as h:
        await h.admin(UpdateProvider("openai", responses="native", models=("gpt-4o",)))
        keys = {name: await h.create_key(name) for name in ("tools", "plain")}
        await h.sync()

        def client(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        for _ in range(2):
            await client("tools").responses.create(model="gpt-4o", input="weather?", tools=TOOLS)
        await client("plain").responses.create(model="gpt-4o", input="weather?")
        await h.flush()

        want = {"tools": (2, 2, 2, 2 * FEES), "plain": (0, 0, 0, 0)}
        daily = {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4] * 1_000_000_000)) for r in h.sql(
            "SELECT key_name, sum(web_searches), sum(file_searches), sum(containers), sum(tools_usd) "
            "FROM usage_daily GROUP BY key_name")}
        assert daily == want
        cli = {r["key"]: (r["web_searches"], r["file_searches"], r["containers"], round(r["tools_usd"] * 1e9))
               for r in await asyncio.to_thread(ok, database_url, "usage")}
        assert {k: cli[k] for k in want} == want
        async with aiohttp.ClientSession() as s, s.get(h.base + "/admin/v1/usage?group_by=key",
                                                        headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 200
            rows = {row["key"]: row for row in (await r.json())["data"]}
        assert (rows["tools"]["web_searches"], rows["tools"]["containers"], rows["tools"]["tools_nusd"]) == \
            (2, 2, 2 * FEES)
        assert rows["tools"]["tools_usd"] == pytest.approx(2 * FEES / 1e9)
        assert rows["tools"]["cost_nusd"] > rows["tools"]["tools_nusd"]  # tokens on top
        before = await asyncio.to_thread(ok, database_url, "usage")
        await asyncio.to_thread(fake_compaction, database_url)
        assert await asyncio.to_thread(ok, database_url, "usage") == before


async def test_live_usage_counts_hosted_tool_uses_unflushed_flushed_and_after_a_restart(database_url: str) -> None:
    """GET /admin/v1/usage/live counts a key's hosted tool uses and their cost as the durable
    usage does (`web_searches`, `file_searches`, `containers`, `tools_usd`): as soon as a call is
    settled, once flushed, in a node that replays the log and in one that starts from a snapshot."""
    import aiohttp


    async def live(h: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(h.base + "/admin/v1/usage/live",
                                                        headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 200
            return next(row for row in (await r.json())["data"] if row["key"] == "tools")

    def uses(row: dict[str, Any]) -> tuple[int, int, int, int]:
        return row["web_searches"], row["file_searches"], row["containers"], round(row["tools_usd"] * 1e9)

    def vars_of(t: Any) -> dict[str, Any]:
        return {"web_searches": t.web_searches, "file_searches": t.file_searches, "containers": t.containers,
                "tools_usd": t.tools_nusd / 1e9}

    want = (2, 2, 2, 2 * FEES)
    async with harness(database_url, admin_token=ADMIN, flush_interval=3600) as h:
        await h.admin(UpdateProvider("openai", responses="native", models=("gpt-4o",)))
        secret = await h.create_key("tools")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for _ in range(2):
            await client.responses.create(model="gpt-4o", input="weather?", tools=TOOLS)
        unflushed = await live(h)
        assert unflushed["unflushed_requests"] == 2 and uses(unflushed) == want
        await h.flush()
        await wait_until(lambda: h.node.meter.unflushed_by_key(h.node.projector.usage) == {}, timeout=10)
        durable = await live(h)
        assert durable["unflushed_requests"] == 0 and uses(durable) == want
    async with harness(database_url, admin_token=ADMIN, providers=False) as replayed:  # the log, folded in SQL
        assert uses(await live(replayed)) == want
        projection, report = await snapshot_and_load(replayed.base, ADMIN, database_url)
    assert report.snapshot_id is not None and report.tail_events == 0, report  # the snapshot alone
    assert uses(vars_of(projection.usage.totals[durable["key_id"]])) == want
    async with harness(database_url, admin_token=ADMIN, providers=False) as again:
        assert uses(await live(again)) == want
