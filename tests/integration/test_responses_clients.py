"""Clients built on the Responses API against a real node: the OpenAI Agents SDK in its default
(Responses) mode runs an agent that calls a function tool."""

from __future__ import annotations

from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider

from tests.integration.gateway_harness import harness
from tests.integration.test_responses_api import oai


async def test_agents_sdk_runs_an_agent_with_a_function_tool(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("agent", models=("gpt-4o",))
        await h.sync()
        calls: list[str] = []

        @function_tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            calls.append(city)
            return f"sunny in {city}"

        agent = Agent(name="weather", instructions="Answer with the weather.", tools=[get_weather], model="gpt-4o")
        config = RunConfig(model_provider=OpenAIProvider(openai_client=oai(h.base, secret)), tracing_disabled=True)
        result = await Runner.run(agent, "What is the weather in Paris?", run_config=config)
        assert calls == ["test"]  # the fake model fills string arguments with "test"
        assert result.final_output == "Hello from the fake upstream"
        chats = h.upstream.requests_to("/v1/chat/completions")
        assert len(chats) == 2
        assert chats[1].body["messages"][-1] == {"role": "tool", "tool_call_id": chats[1].body["messages"][-2][
            "tool_calls"][0]["id"], "content": "sunny in test"}
