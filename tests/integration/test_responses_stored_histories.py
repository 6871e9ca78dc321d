"""Continuations by previous_response_id over HTTP read the conversation a node remembers of the
stored response they continue (responses/stored_histories), on a real node and Postgres, the fake
upstream recording what it gets: every turn of a long agent conversation still sends the upstream
the whole conversation, with nothing of the earlier turns read again; forks; and the same refusals
as reading every turn (a response deleted in the middle of the chain, here or on another node once
this one no longer holds it, another key's, expired), and a cold node after a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

from shieldes.node import Node
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_api import oai
from tests.integration.test_responses_store import chat_messages, scrape, second_node

MODELS = ("gpt-4o", "gpt-4o-mini")
ANSWER = "Hello from the fake upstream"


def said(n: int, size: int = 1000) -> str:
    return f"turn {n}: " + "x" * size


async def turn(client: openai.AsyncOpenAI, text: str, previous: str | None, **kw: Any) -> Any:
    return await client.responses.create(model="gpt-4o", input=text, previous_response_id=previous, **kw)


def sent(h: Harness) -> list[object]:
    """What the upstream got in its last call: each message's content, oldest first."""
    return [m["content"] for m in chat_messages(h)]


def conversation(*inputs: str) -> list[object]:
    """The messages of a conversation with these user turns, the last one unanswered yet."""
    return [part for text in inputs for part in (text, ANSWER)][:-1]


def continued(h: Harness) -> dict[str, int]:
    assert h.node.responses is not None
    return dict(h.node.responses.continued)


async def refused(attempt: Any, rid: str) -> None:
    """Refused as a continuation of a response the node does not find: OpenAI's 400, naming it."""
    with pytest.raises(openai.BadRequestError, match=rid) as caught:
        await attempt
    assert caught.value.code == "previous_response_not_found" and caught.value.param == "previous_response_id"


async def test_a_long_agent_conversation_sends_every_turn_and_reads_none_again_also_after_a_restart(
        database_url: str) -> None:
    async with harness(database_url, responses_read_wait=0.2) as h:
        secret = await h.create_key("agent", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        inputs: list[str] = []
        previous = None
        for n in range(40):
            inputs.append(said(n))
            response = await turn(client, inputs[-1], previous, stream=n % 3 == 2)
            if n % 3 == 2:
                response = [e async for e in response][-1].response
            assert sent(h) == conversation(*inputs)  # the whole conversation, every turn
            previous = response.id
        # the second turn read the first; every later one the conversation remembered as its turn was served
        assert continued(h) == {"remembered": 38, "extended": 0, "read": 1}
        seen = await scrape(h)
        assert seen['shieldes_stored_responses_continued_total{history="remembered"}'] == 38
        assert seen["shieldes_stored_responses_histories_bytes"] > 40 * 1000

        # a restart: the new node remembers nothing, reads the chain from Postgres once, then goes on from memory
        assert h.node.responses is not None and await h.node.responses.flush()
        await h.node.stop()
        h.node = Node(h.settings)
        await h.node.start()
        client = oai(h.base, secret)
        for n in range(40, 43):
            inputs.append(said(n))
            previous = (await turn(client, inputs[-1], previous)).id
            assert sent(h) == conversation(*inputs)
        assert continued(h) == {"remembered": 2, "extended": 0, "read": 1}


async def test_a_forked_conversation_continues_each_branch_from_memory(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("agent", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        trunk = [said(n) for n in range(3)]
        previous = None
        for text in trunk:
            previous = (await turn(client, text, previous)).id
        fork = previous
        left = await turn(client, "left", fork)
        assert sent(h) == conversation(*trunk, "left")
        right = await turn(client, "right", fork)  # the same response continued again (a retry, an edit)
        assert sent(h) == conversation(*trunk, "right")
        await turn(client, "left again", left.id)
        assert sent(h) == conversation(*trunk, "left", "left again")
        await turn(client, "right again", right.id)
        assert sent(h) == conversation(*trunk, "right", "right again")
        await turn(client, "left once more", left.id)
        assert sent(h) == conversation(*trunk, "left", "left once more")
        assert continued(h) == {"remembered": 6, "extended": 0, "read": 1}


async def test_a_delete_in_the_middle_refuses_the_later_turns_as_before(database_url: str) -> None:
    """As when every turn is read: continuing a response after the deleted one is a 400 naming the
    response continued (its chain is broken), the turns before it still go on."""
    async with harness(database_url, responses_read_wait=0.2) as h:
        secret = await h.create_key("agent", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        inputs = [said(n) for n in range(5)]
        ids: list[str] = []
        for text in inputs:
            ids.append((await turn(client, text, ids[-1] if ids else None)).id)
        await turn(client, "go on", ids[4])  # remembered
        assert h.node.responses is not None and await h.node.responses.flush()

        await client.responses.delete(ids[2])
        await refused(turn(client, "go on", ids[4]), ids[4])
        await refused(turn(client, "go on", ids[3]), ids[3])
        await refused(turn(client, "go on", ids[2]), ids[2])
        await turn(client, "from the second", ids[1])
        assert sent(h) == conversation(*inputs[:2], "from the second")

        # a response deleted before it was written (still waiting in memory) breaks its chain the same way
        more = [(await turn(client, "a", None)).id]
        more.append((await turn(client, "b", more[0])).id)
        more.append((await turn(client, "c", more[1])).id)
        await client.responses.delete(more[1])
        await refused(turn(client, "d", more[2]), more[2])
        # remembered: the first chain's turns 3-5 and its "go on", the last chain's third turn; the delete
        # forgot the key's conversations, so ids[1]'s continuation read its chain (the refused ones were refused)
        assert continued(h) == {"remembered": 5, "extended": 0, "read": 3}


async def test_another_keys_response_is_never_continued(database_url: str) -> None:
    async with harness(database_url, responses_read_wait=0.2) as h:
        mine, theirs = await h.create_key("mine", models=MODELS), await h.create_key("theirs", models=MODELS)
        await h.sync()
        me, them = oai(h.base, mine), oai(h.base, theirs)
        ids: list[str] = []
        for n in range(3):
            ids.append((await turn(me, said(n), ids[-1] if ids else None)).id)
        assert continued(h)["remembered"] == 1  # the third turn's history was remembered
        for rid in ids:
            await refused(turn(them, "mine now", rid), rid)
        with pytest.raises(openai.NotFoundError, match=ids[-1]):  # (a delete: OpenAI's 404)
            await them.responses.delete(ids[-1])
        # their own conversation goes on, and so does mine
        other = (await turn(them, "theirs", None)).id
        await turn(them, "theirs again", other)
        assert sent(h) == conversation("theirs", "theirs again")
        await turn(me, "still mine", ids[-1])
        assert sent(h) == conversation(said(0), said(1), said(2), "still mine")
        assert continued(h) == {"remembered": 2, "extended": 0, "read": 2}


async def test_a_delete_on_another_node_shows_once_this_node_no_longer_holds_the_response(
        database_url: str) -> None:
    """A node that still holds a response serves its continuation from memory (it never asks
    Postgres); once the response left its memory cache, the continuation reads Postgres and finds
    the delete another node made: remembering the conversation must not hide that."""
    async with harness(database_url, responses_read_wait=0.2, responses_cache_bytes=24_000) as h, \
            second_node(h) as b:
        secret = await h.create_key("agent", models=MODELS)
        filler = await h.create_key("filler", models=MODELS)
        await h.sync()
        assert b.poller is not None and await b.poller.poll_once()
        client = oai(h.base, secret)
        first = (await turn(client, said(0, 8000), None)).id
        second = (await turn(client, said(1), first)).id
        third = (await turn(client, said(2), second)).id
        assert continued(h)["remembered"] == 1
        assert h.node.responses is not None and await h.node.responses.flush()
        await oai(f"http://127.0.0.1:{b.port}", secret).responses.delete(first)

        cache = h.node.responses._cache
        while first in cache:  # other responses push the first out of this node's memory
            await turn(oai(h.base, filler), "filler", None)
        assert third in cache and second in cache
        await refused(turn(client, "go on", third), third)


RETENTION = 4.0  # seconds: the three turns are made well within it (created_at counts whole seconds)


async def test_an_expired_turn_refuses_the_continuation_as_before(database_url: str) -> None:
    async with harness(database_url, responses_read_wait=0.2, responses_retention_seconds=RETENTION) as h:
        secret = await h.create_key("agent", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        responses = []
        for n in range(3):
            responses.append(await turn(client, said(n), responses[-1].id if responses else None))
        assert continued(h)["remembered"] == 1
        while time.time() < responses[0].created_at + RETENTION:  # until the first turn is past the retention
            await asyncio.sleep(0.05)
        await refused(turn(client, "go on", responses[-1].id), responses[-1].id)
