"""A streaming request goes upstream as the client's own bytes when the upstream takes it as it is
(a coding agent sends its whole history on every turn: encoding it again costs the node as much
as reading it). The fake upstream's recorded bytes tell a forwarded body from a re-encoded one:
the client writes é as \\u00e9, the node's encoder would write it as UTF-8."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from shieldes.gateway.checked_histories import ENTRY, PER_FOUND
from shieldes.projections.shared_commands import SetModelAlias, UpdateProvider
from shieldes.projections.state import AliasTarget
from shieldes.usage.tokens import prompt_bytes
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
HISTORY = [{"role": "system", "content": "Caf\\u00e9 rules"}, {"role": "user", "content": "hi"},
           {"role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "a.py"}]
# a Responses turn's input: a message, a call and its output
ITEMS = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Caf\\u00e9?"}]},
         {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{}"},
         {"type": "function_call_output", "call_id": "call_1", "output": "a.py"}]


def _encoded(body: dict[str, Any]) -> bytes:
    """The body as a client might write it: spaces after separators, non-ASCII escaped."""
    import json

    return json.dumps(body, ensure_ascii=True).encode().replace(b"\\\\u00e9", b"\\u00e9")


def _history(messages: list[dict[str, Any]]) -> bytes:
    """The history's bytes as `_encoded` writes them."""
    return _encoded({"m": messages})[len(b'{"m": '):-1]


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _refused_before_upstream(h: Harness, secret: str, raw: bytes) -> None:
    """A Responses request whose output answers no call: a 400 in the gateway's words, nothing sent."""
    before = len(h.upstream.requests)
    async with aiohttp.ClientSession() as s, s.post(h.base + RESPONSES, data=raw, headers={
            **_auth(secret), "Content-Type": "application/json"}) as r:
        assert r.status == 400 and "answers no function_call" in (await r.json())["error"]["message"]
    assert len(h.upstream.requests) == before


Native = tuple[Harness, str]


@pytest.fixture
async def native(database_url: str) -> AsyncIterator[Native]:
    """A node whose openai deployment serves the Responses API natively, and an agent's key."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o", "gpt-4o-mini"))
    async with harness(database_url, upstream=up) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("agent")
        await h.sync()
        yield h, secret


async def _post(h: Harness, secret: str, path: str, raw: bytes) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(h.base + path, data=raw, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": "application/json"}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_a_chat_stream_goes_upstream_as_the_clients_bytes(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("agent")
        await h.sync()
        raw = _encoded({"model": "gpt-4o", "stream": True, "messages": HISTORY})
        assert b"Caf\\u00e9" in raw
        got = await _post(h, secret, CHAT, raw + b"\n")
        assert b"data: [DONE]" in got
        sent = h.upstream.last(CHAT)
        # the gateway asks for the stream's usage (it bills it) by adding one field at the end
        assert sent.raw == raw[:-1] + b',"stream_options":{"include_usage":true}}'
        assert sent.body["messages"][0]["content"] == "Café rules"

        asked = _encoded({"model": "gpt-4o", "stream": True, "messages": HISTORY,
                          "stream_options": {"include_usage": True}})
        got = await _post(h, secret, CHAT, asked)
        assert h.upstream.last(CHAT).raw == asked
        assert b'"usage": {' in got or b'"usage":{' in got  # the client asked for it: it gets it


async def test_a_routed_model_is_written_over_the_clients_bytes_and_a_bad_history_refused(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(SetModelAlias("smart", (AliasTarget("openai", "gpt-4o-mini"),)))
        secret = await h.create_key("agent")
        await h.sync()
        for streaming in (True, False):
            raw = _encoded({"model": "smart", "messages": HISTORY, "stream": streaming})
            await _post(h, secret, CHAT, raw)
            sent = h.upstream.last(CHAT)
            assert sent.body["model"] == "gpt-4o-mini" and _history(HISTORY) in sent.raw  # the history as sent
            assert sent.body["stream"] is streaming  # (a JSON call's `stream: false` goes as sent)
        await _post(h, secret, CHAT, _encoded({"model": "smart", "messages": HISTORY,
                                               "stream_options": {"include_usage": True}}))
        sent = h.upstream.last(CHAT)  # OpenAI refuses stream_options without a stream: left out
        assert "stream_options" not in sent.body and _history(HISTORY) in sent.raw

        before = len(h.upstream.requests)
        for messages, said in (([{"content": "hi"}], "messages[0] must be an object with a string 'role'"),
                               ([], "must be a non-empty list"), ("hi", "wrong type")):
            async with aiohttp.ClientSession() as s, s.post(h.base + CHAT, headers=_auth(secret),
                                                            json={"model": "gpt-4o", "messages": messages}) as r:
                assert r.status == 400
                error = (await r.json())["error"]
                assert said in error["message"] and error["type"] == "invalid_request_error"
        assert len(h.upstream.requests) == before  # refused before any upstream call


async def test_what_the_gateway_adds_follows_the_clients_bytes_or_the_body_is_encoded_again(database_url: str) -> None:
    async with harness(database_url) as h:
        free = await h.create_key("free")
        capped = await h.create_key("capped", budget_usd=0.01)
        await h.sync()
        other_options = _encoded({"model": "gpt-4o", "stream": True, "messages": HISTORY,
                                  "stream_options": {"include_obfuscation": False}})
        await _post(h, free, CHAT, other_options)
        sent = h.upstream.last(CHAT)  # the options rewritten; the history still the client's bytes
        assert _history(HISTORY) in sent.raw and sent.body["stream_options"] == {
            "include_obfuscation": False, "include_usage": True}

        for streaming in (True, False):  # a budget's bound on the completion is added to the client's bytes
            raw = _encoded({"model": "gpt-4o", "messages": HISTORY, **({"stream": True} if streaming else {})})
            await _post(h, capped, CHAT, raw)
            sent = h.upstream.last(CHAT)
            cap = sent.body["max_completion_tokens"]
            assert 0 < cap < 1000 and sent.raw.startswith(raw[:-1] + b',"max_completion_tokens":%d' % cap)
            assert sent.body["messages"] == orjson.loads(raw)["messages"]
        with_null = _encoded({"model": "gpt-4o", "stream": True, "messages": HISTORY, "max_completion_tokens": None})
        await _post(h, capped, CHAT, with_null)  # its name is taken (by a null): set there, not named twice
        sent = h.upstream.last(CHAT)
        assert _history(HISTORY) in sent.raw and 0 < sent.body["max_completion_tokens"] < 1000
        assert sent.raw.count(b"max_completion_tokens") == 1

        long_id = "toolu_" + "x" * 60  # longer than OpenAI's 40: the upstream gets a fitted id
        fitted = [*HISTORY[:2], {**HISTORY[2], "tool_calls": [{**HISTORY[2]["tool_calls"][0], "id": long_id}]},
                  {**HISTORY[3], "tool_call_id": long_id}]
        await _post(h, free, CHAT, _encoded({"model": "gpt-4o", "stream": True, "messages": fitted}))
        sent = h.upstream.last(CHAT)
        call_id = sent.body["messages"][2]["tool_calls"][0]["id"]
        assert len(call_id) <= 40 and sent.body["messages"][3]["tool_call_id"] == call_id


async def test_a_native_responses_turn_goes_upstream_as_the_clients_bytes(native: Native) -> None:
    h, secret = native
    items = ITEMS
    for streaming in (True, False):
        raw = _encoded({"model": "gpt-4o", "input": items, "stream": streaming, "store": True})
        got = await _post(h, secret, RESPONSES, raw)
        assert h.upstream.last(RESPONSES).raw == raw
        if not streaming:
            first = orjson.loads(got)

    # the stored input (kept as the client's bytes) reads back as the items
    async with aiohttp.ClientSession() as s, s.get(f"{h.base}/v1/responses/{first['id']}/input_items?order=asc",
                                                   headers=_auth(secret)) as r:
        listed = (await r.json())["data"]
    assert [i["type"] for i in listed] == [i["type"] for i in items]
    assert listed[0]["content"][0]["text"] == "Café?" and listed[2]["output"] == "a.py"

    # a turn that continues a stored conversation is built by the gateway: encoded again
    turn = _encoded({"model": "gpt-4o", "input": "and now?", "previous_response_id": first["id"],
                     "stream": True})
    await _post(h, secret, RESPONSES, turn)
    sent = h.upstream.last(RESPONSES)
    assert sent.raw != turn and "previous_response_id" not in sent.body
    assert sent.body["input"][0]["content"][0]["text"] == "Café?" and b"Caf\\u00e9" not in sent.raw


async def test_a_budgets_bound_on_a_responses_turn_follows_the_clients_bytes(database_url: str) -> None:
    """A budgeted turn naming no max_output_tokens gets the bound its hold was made for after the
    client's bytes (an agent's input neither split nor encoded again), short or long (a long one
    read from where the key's last turn ended), streamed or not; routed to another model, the
    model is written over the client's bytes with the bound; a null bound is set where it is."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o", "gpt-4o-mini"))
    async with harness(database_url, upstream=up, budget_max_tokens=321) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        await h.admin(SetModelAlias("smart", (AliasTarget("openai", "gpt-4o-mini"),)))
        secret = await h.create_key("agent", budget_usd=5.0)
        await h.sync()
        long: list[Any] = [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "the repository: " + "x = 1\n" * 4000}]}, *ITEMS]
        for items in (ITEMS, long, long):
            for streaming in (True, False):
                raw = _encoded({"model": "gpt-4o", "input": items, "stream": streaming, "store": streaming})
                await _post(h, secret, RESPONSES, raw)
                assert h.upstream.last(RESPONSES).raw == raw[:-1] + b',"max_output_tokens":321}'
        raw = _encoded({"model": "smart", "input": long, "stream": True, "store": False})
        await _post(h, secret, RESPONSES, raw)
        sent = h.upstream.last(RESPONSES)
        assert sent.body["model"] == "gpt-4o-mini" and sent.body["max_output_tokens"] == 321
        assert _history(long) in sent.raw
        raw = _encoded({"model": "gpt-4o", "input": long, "store": False, "max_output_tokens": None})
        await _post(h, secret, RESPONSES, raw)
        sent = h.upstream.last(RESPONSES)
        assert _history(long) in sent.raw and sent.body["max_output_tokens"] == 321
        assert sent.raw.count(b"max_output_tokens") == 1


async def test_an_agents_turn_without_a_conversation_goes_as_the_clients_input_bytes(native: Native) -> None:
    h, secret = native
    await h.admin(SetModelAlias("smart", (AliasTarget("openai", "gpt-4o-mini"),)))
    await h.sync()
    items = ITEMS
    for streaming in (True, False):
        raw = _encoded({"model": "smart", "input": items, "stream": streaming, "store": False})
        got = await _post(h, secret, RESPONSES, raw)
        sent = h.upstream.last(RESPONSES)
        assert sent.body["model"] == "gpt-4o-mini" and _history(items) in sent.raw
        assert (b"response.completed" in got) == streaming

    # a call_id longer than a native upstream takes: the input is decoded and the ids fitted
    long_id = "call_" + "x" * 70
    fitted = [items[0], {**items[1], "call_id": long_id}, {**items[2], "call_id": long_id}]
    await _post(h, secret, RESPONSES, _encoded({"model": "gpt-4o", "input": fitted, "store": False}))
    sent = h.upstream.last(RESPONSES)
    assert len(sent.body["input"][1]["call_id"]) <= 64 and sent.body["input"][2]["call_id"] == \
        sent.body["input"][1]["call_id"]
    # an output that answers no call: refused in the gateway's words, nothing sent
    await _refused_before_upstream(h, secret, _encoded({"model": "gpt-4o", "input": items[2:], "store": False}))


async def test_an_agents_growing_input_is_read_from_where_its_last_turn_ended(native: Native) -> None:
    h, secret = native
    # (an agent's input: long enough to be remembered, checked_histories.REMEMBER_FROM)
    items: list[Any] = [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "the repository: " + "x = 1\n" * 4000}]}, *ITEMS]
    for turn in range(2, 5):
        items += [{"type": "function_call", "call_id": f"call_{turn}", "name": "ls", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"call_{turn}", "output": "b.py"}]
        await _post(h, secret, RESPONSES, _encoded({"model": "gpt-4o", "input": items, "store": False}))
        assert _history(items) in h.upstream.last(RESPONSES).raw
    # an output of a call made turns ago, then a call id longer than the upstream takes
    answered = [*items, {"type": "function_call_output", "call_id": "call_2", "output": "again"}]
    await _post(h, secret, RESPONSES, _encoded({"model": "gpt-4o", "input": answered, "store": False}))
    assert _history(answered) in h.upstream.last(RESPONSES).raw
    long_id = "call_" + "y" * 70
    longer = [*answered, {"type": "function_call", "call_id": long_id, "name": "ls", "arguments": "{}"},
              {"type": "function_call_output", "call_id": long_id, "output": "c.py"}]
    await _post(h, secret, RESPONSES, _encoded({"model": "gpt-4o", "input": longer, "store": False}))
    sent = h.upstream.last(RESPONSES).body["input"]
    assert sent[-1]["call_id"] == sent[-2]["call_id"] != long_id and len(sent[-1]["call_id"]) <= 64
    # an output that answers no call, after a part that passed: refused, nothing sent
    lone = {"type": "function_call_output", "call_id": "call_9", "output": "?"}
    await _refused_before_upstream(h, secret, _encoded({"model": "gpt-4o", "input": [*answered, lone], "store": False}))
    # an upstream that counts nothing: the turn's input estimated from the whole body (a screenshot
    # as the tokens it is), though only what followed the last turn's input was counted for it
    h.upstream.responses_usage = False
    shot = {"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64," + "iVBORw0K" * 2000}]}
    for more in ([shot], [shot, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "?"}]}]):
        raw = _encoded({"model": "gpt-4o", "input": [*answered, *more], "store": False, "instructions": "be brief"})
        usage = orjson.loads(await _post(h, secret, RESPONSES, raw))["usage"]
        assert usage["input_tokens"] == prompt_bytes(raw) // 4 < len(raw) // 4 - 2000


async def test_an_agents_growing_chat_is_read_from_where_its_last_turn_ended(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("agent")
        await h.sync()
        # (a coding agent's history: long enough to be remembered, checked_histories.REMEMBER_FROM)
        history: list[Any] = [{"role": "system", "content": "the repository: " + "x = 1\n" * 4000}, *HISTORY]
        for turn in range(2, 5):
            history += [{"role": "assistant", "content": None, "tool_calls": [
                            {"id": f"call_{turn}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": f"call_{turn}", "content": "b.py"}]
            body = _encoded({"model": "gpt-4o", "stream": True, "messages": history})
            await _post(h, secret, CHAT, body)
            assert _history(history) in h.upstream.last(CHAT).raw
        checked = h.node.gateway.checked_chats
        # the key's last body remembered as it is, with its history's eight ids
        assert checked.weight == len(body) + ENTRY + 8 * PER_FOUND
        # a call id longer than OpenAI takes, after the part read before: fitted
        long_id = "call_" + "y" * 70
        longer = [*history, {"role": "assistant", "content": None, "tool_calls": [
                      {"id": long_id, "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": long_id, "content": "c.py"}]
        await _post(h, secret, CHAT, _encoded({"model": "gpt-4o", "stream": True, "messages": longer}))
        sent = h.upstream.last(CHAT).body["messages"]
        assert sent[-1]["tool_call_id"] == sent[-2]["tool_calls"][0]["id"] != long_id
        assert len(sent[-1]["tool_call_id"]) <= 40
        # an earlier message changed to carry the long id: read whole, fitted too
        changed = [*history[:3], {**history[3], "tool_calls": [{**history[3]["tool_calls"][0], "id": long_id}]},
                   {**history[4], "tool_call_id": long_id}, *history[5:]]
        await _post(h, secret, CHAT, _encoded({"model": "gpt-4o", "stream": True, "messages": changed}))
        sent = h.upstream.last(CHAT).body["messages"]
        assert sent[3]["tool_calls"][0]["id"] == sent[4]["tool_call_id"] != long_id
        # a message the typed read does not take, after the part read before: the exact check's error
        async with aiohttp.ClientSession() as s, s.post(h.base + CHAT, headers=_auth(secret), data=_encoded(
                {"model": "gpt-4o", "messages": [*history, {"content": "no role"}]})) as r:
            assert r.status == 400
            said = (await r.json())["error"]["message"]
            assert f"messages[{len(history)}] must be an object with a string 'role'" in said
