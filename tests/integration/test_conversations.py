"""The Conversations API against a real node: the openai SDK's client.conversations.* CRUD,
Responses turns in a conversation on translate and native deployments (JSON and streamed), the
Agents SDK's OpenAIConversationsSession, and a conversation seen by another key."""

from __future__ import annotations

import time
from typing import Any

import openai
import psycopg
import pytest
from agents import Agent, RunConfig, Runner
from agents.memory import OpenAIConversationsSession
from agents.models.openai_provider import OpenAIProvider

from shieldes.projections.shared_commands import UpdateProvider
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_api import oai

MODELS = ("gpt-4o",)
ANSWER = "Hello from the fake upstream"
WAIT = 1.0  # db_request_timeout in the stall test: the bound it checks, lowered to keep it fast


def _texts(items: list[Any]) -> list[tuple[str, str]]:
    """(role, text) of each message item, in order."""
    out = []
    for item in items:
        item = item if isinstance(item, dict) else item.model_dump()
        content = item["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        out.append((item["role"], text))
    return out


def _upstream_turns(h: Harness, mode: str) -> list[tuple[str, str]]:
    """What the last upstream request carried, as (role, text) in order."""
    if mode == "native":
        return _texts(h.upstream.last("/v1/responses").body["input"])
    return [(m["role"], m["content"]) for m in h.upstream.last("/v1/chat/completions").body["messages"]]


async def test_conversations_crud_through_the_openai_sdk(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=MODELS)
        other = await h.create_key("other", models=MODELS)
        await h.sync()
        client, intruder = oai(h.base, secret), oai(h.base, other)

        conv = await client.conversations.create(
            items=[{"type": "message", "role": "user", "content": "my name is Ada"}], metadata={"topic": "names"})
        assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "names"}
        got = await client.conversations.retrieve(conv.id)
        assert got.id == conv.id and got.created_at == conv.created_at
        updated = await client.conversations.update(conv.id, metadata={"topic": "people"})
        assert updated.metadata == {"topic": "people"}

        added = await client.conversations.items.create(conv.id, items=[
            {"type": "message", "role": "assistant", "content": "hello Ada"},
            {"type": "message", "role": "user", "content": "what is my name?"},
        ])
        assert added.object == "list" and len(added.data) == 2
        assert all(i.id.startswith("msg_") for i in added.data)  # type: ignore[union-attr]
        page = await client.conversations.items.list(conv.id, order="asc")
        assert _texts(page.data) == [("user", "my name is Ada"), ("assistant", "hello Ada"),
                                     ("user", "what is my name?")]
        assert all(getattr(i, "status", None) == "completed" for i in page.data)
        first = await client.conversations.items.list(conv.id, order="asc", limit=1)
        assert len(first.data) == 1 and first.has_more
        rest = await client.conversations.items.list(conv.id, order="asc", after=first.data[0].id)  # type: ignore[union-attr]
        assert _texts(rest.data) == [("assistant", "hello Ada"), ("user", "what is my name?")] and not rest.has_more
        newest = await client.conversations.items.list(conv.id)  # desc by default
        assert _texts(newest.data)[0] == ("user", "what is my name?")

        item_id = added.data[0].id  # type: ignore[union-attr]
        item = await client.conversations.items.retrieve(item_id, conversation_id=conv.id)
        assert item.id == item_id and _texts([item]) == [("assistant", "hello Ada")]
        after_delete = await client.conversations.items.delete(item_id, conversation_id=conv.id)
        assert after_delete.id == conv.id and after_delete.object == "conversation"
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.retrieve(item_id, conversation_id=conv.id)

        # another key's conversation does not exist for it
        for attempt in (intruder.conversations.retrieve(conv.id), intruder.conversations.items.list(conv.id),
                        intruder.conversations.update(conv.id, metadata={}),
                        intruder.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
                        intruder.conversations.delete(conv.id),
                        intruder.responses.create(model="gpt-4o", input="x", conversation=conv.id)):
            with pytest.raises(openai.NotFoundError) as nf:
                await attempt
            assert "not found" in nf.value.message
        assert len((await client.conversations.items.list(conv.id)).data) == 2

        # bad requests say what to send
        with pytest.raises(openai.BadRequestError) as bad:
            await client.conversations.items.create(conv.id, items=[{"content": "no type"}])  # type: ignore[list-item]
        assert "items[0]" in bad.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.conversations.create(items=[{"role": "user", "content": "x"}] * 21)
        assert "at most 20" in bad.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="gpt-4o", input="x", conversation=conv.id,
                                          previous_response_id="resp_1")
        assert "Mutually exclusive" in bad.value.message

        deleted = await client.conversations.delete(conv.id)
        assert deleted.deleted and deleted.id == conv.id and deleted.object == "conversation.deleted"
        for gone in (client.conversations.retrieve(conv.id), client.conversations.items.list(conv.id),
                     client.responses.create(model="gpt-4o", input="x", conversation={"id": conv.id})):
            with pytest.raises(openai.NotFoundError):
                await gone
        assert h.sql("SELECT count(*) FROM conversation_items") == [(0,)]


@pytest.mark.parametrize("mode", ["translate", "native"])
async def test_turns_in_a_conversation_carry_its_items_upstream(database_url: str, mode: str) -> None:
    async with harness(database_url) as h:
        if mode == "native":
            await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        conv = await client.conversations.create()

        first = await client.responses.create(model="gpt-4o", input="my name is Ada", conversation=conv.id)
        assert first.output_text == ANSWER
        assert first.conversation is not None and first.conversation.id == conv.id
        assert _upstream_turns(h, mode) == [("user", "my name is Ada")]
        sent = h.upstream.last("/v1/responses" if mode == "native" else "/v1/chat/completions").body
        assert "conversation" not in sent

        await client.responses.create(model="gpt-4o", input="what is my name?", conversation={"id": conv.id})
        assert _upstream_turns(h, mode) == [("user", "my name is Ada"), ("assistant", ANSWER),
                                            ("user", "what is my name?")]

        stream = await client.responses.create(model="gpt-4o", input="and again?", conversation=conv.id,
                                               stream=True)
        events = [e async for e in stream]
        done = events[-1]
        assert done.type == "response.completed"
        assert done.response.conversation is not None and done.response.conversation.id == conv.id
        assert _upstream_turns(h, mode) == [("user", "my name is Ada"), ("assistant", ANSWER),
                                            ("user", "what is my name?"), ("assistant", ANSWER),
                                            ("user", "and again?")]
        # the streamed turn's items were in the conversation before its terminal event
        items = await client.conversations.items.list(conv.id, order="asc")
        assert _texts(items.data) == [("user", "my name is Ada"), ("assistant", ANSWER),
                                      ("user", "what is my name?"), ("assistant", ANSWER),
                                      ("user", "and again?"), ("assistant", ANSWER)]
        output_id = first.output[0].id
        assert (await client.conversations.items.retrieve(output_id, conversation_id=conv.id)).id == output_id


async def test_agents_sdk_conversations_session_keeps_two_turns(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("agent", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        session = OpenAIConversationsSession(openai_client=client)
        agent = Agent(name="memo", instructions="Be brief.", model="gpt-4o")
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)

        first = await Runner.run(agent, "my name is Ada", session=session, run_config=config)
        assert first.final_output == ANSWER
        second = await Runner.run(agent, "what is my name?", session=session, run_config=config)
        assert second.final_output == ANSWER
        assert _upstream_turns(h, "translate")[1:] == [("user", "my name is Ada"), ("assistant", ANSWER),
                                                       ("user", "what is my name?")]
        assert _texts(await session.get_items()) == [("user", "my name is Ada"), ("assistant", ANSWER),
                                                     ("user", "what is my name?"), ("assistant", ANSWER)]
        stored = await client.conversations.items.list(session.session_id, order="asc")
        assert len(stored.data) == 4


async def test_a_stalled_database_is_a_503_within_the_bound_and_chat_is_served(database_url: str) -> None:
    """Conversations live in Postgres: with their table locked (a stalled database, not a refusing
    one) a conversation request is a 503 to retry after db_request_timeout, never held open; other
    requests are served meanwhile, and the same request works once the table is free."""
    async with harness(database_url, db_request_timeout=WAIT) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret).with_options(max_retries=0, timeout=WAIT * 20)
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            with pytest.raises(openai.APIStatusError) as stalled:
                await client.conversations.create()
            waited = time.monotonic() - began
            answer = await client.responses.create(model="gpt-4o", input="served meanwhile")
            assert answer.output_text
        assert stalled.value.status_code == 503 and "retry" in stalled.value.message
        assert WAIT <= waited < WAIT * 3
        assert (await client.conversations.create()).id.startswith("conv_")

