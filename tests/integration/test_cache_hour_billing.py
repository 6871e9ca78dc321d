"""Claude's prompt cache kept for an hour (`cache_control: {"type": "ephemeral", "ttl": "1h"}`):
Anthropic reports those writes apart (`usage.cache_creation.ephemeral_1h_input_tokens`), Bedrock in
`usage.cacheDetails`; they cost twice the input price (the cache-write price is the 5-minute one),
through the Messages pass-through, a translated chat answer and Bedrock, whose cachePoint keeps the
hour asked for. The request log shows the cache writes of each request beside its reads, so its
cost can be checked against its counts."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.integration.gateway_harness import harness, wait_until

SYSTEM_TEXT = "You answer questions about the weather in Paris"  # 8 words: the cached prefix
HOUR: Any = [{"type": "text", "text": SYSTEM_TEXT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
FIVE: Any = [{"type": "text", "text": "Short lived prefix of five", "cache_control": {"type": "ephemeral"}}]
BEDROCK_CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# nUSD per token: claude-3-5-haiku-latest input 800, cache write 1000, output 4000; the Bedrock
# Claude input 3000, cache write 3750, output 15000
HAIKU = (800, 1000, 4000)
SONNET = (3000, 3750, 15000)


def cost(price: tuple[int, int, int], plain: int, five: int, hour: int, out: int) -> int:
    return plain * price[0] + five * price[1] + hour * 2 * price[0] + out * price[2]


async def test_hour_long_cache_writes_cost_twice_the_input_price(database_url: str) -> None:
    with aws_credentials():
        async with FakeBedrock() as bedrock, harness(database_url) as h:
            await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (BEDROCK_CLAUDE,),
                                      options={"region": "us-east-1"}))
            await h.sync()
            keys = {name: await h.create_key(name) for name in ("native", "streamed", "chat", "bedrock", "five")}
            await h.sync()
            ask: Any = [{"role": "user", "content": "sunny today?"}]

            native = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys["native"], max_retries=0)
            msg = await native.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, system=HOUR,
                                               messages=ask)
            assert msg.usage.cache_creation_input_tokens == 8 and msg.usage.cache_creation is not None
            assert msg.usage.cache_creation.ephemeral_1h_input_tokens == 8

            h.upstream.prompt_cache.clear()
            streamed = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys["streamed"], max_retries=0)
            async with streamed.messages.stream(model="claude-3-5-haiku-latest", max_tokens=50, system=HOUR,
                                                messages=ask) as events:
                await events.get_final_message()

            h.upstream.prompt_cache.clear()
            chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys["chat"], max_retries=0)
            marked: Any = [{"role": "system", "content": HOUR}, *ask]
            await chat.chat.completions.create(model="claude-3-5-haiku-latest", messages=marked)

            five = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys["five"], max_retries=0)
            await five.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, system=FIVE, messages=ask)

            on_bedrock = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys["bedrock"], max_retries=0)
            await on_bedrock.messages.create(model=BEDROCK_CLAUDE, max_tokens=50, system=HOUR, messages=ask)
            assert bedrock.last().body["system"] == [{"text": SYSTEM_TEXT},
                                                     {"cachePoint": {"type": "default", "ttl": "1h"}}]

            await h.flush()
            totals = h.usage_totals()
            for name in ("native", "streamed", "chat"):
                assert totals[name] == (1, 10, 5, cost(HAIKU, 2, 0, 8, 5)), name
            assert totals["five"] == (1, 7, 5, cost(HAIKU, 2, 5, 0, 5))
            assert totals["bedrock"] == (1, 10, 5, cost(SONNET, 2, 0, 8, 5))

            writer = h.node.request_log
            assert writer is not None
            await wait_until(lambda: writer.buffer.added >= 5, timeout=10)
            assert await writer.flush_all(10)
            logged = {r[0]: r[1:] for r in h.sql(
                "SELECT key_name, prompt_tokens, cached_tokens, cache_write_tokens, cost_nusd FROM request_log")}
            assert logged == {name: (10, 0, 8, cost(HAIKU, 2, 0, 8, 5)) for name in ("native", "streamed", "chat")} | {
                "five": (7, 0, 5, cost(HAIKU, 2, 5, 0, 5)), "bedrock": (10, 0, 8, cost(SONNET, 2, 0, 8, 5))}
