"""The pure parts of the Responses API: request reading, Responses <-> chat translation (streams
included), retention partition choice, and provider events from before the responses mode."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.events.catalog import ProviderAdded, ProviderUpdated
from shieldes.events.codec import Codec
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.providers import chat_paths
from shieldes.providers.anthropic_translate import StreamTranslator as AnthropicStream
from shieldes.providers.responses_replies import ChatStreamTranslator, chat_to_output
from shieldes.providers.responses_translate import request_to_chat
from shieldes.responses.objects import ResponseContext
from shieldes.responses.request import estimate_input_tokens, parse_request, upstream_body
from shieldes.responses.store import expired_partitions, partition_name
from tests.responses_schema import check_event, check_response, check_stream


def ids() -> Any:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def test_request_items_become_chat_messages() -> None:
    body = {
        "model": "m", "instructions": "be brief", "max_output_tokens": 50, "temperature": 0.2,
        "input": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"},
    }
    chat = request_to_chat(body, "up-model")
    assert chat["model"] == "up-model" and chat["max_tokens"] == 50 and chat["temperature"] == 0.2
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert chat["messages"][1] == {"role": "system", "content": "rules"}
    assert chat["messages"][2]["content"][1] == {"type": "image_url",
                                                  "image_url": {"url": "data:image/png;base64,AA"}}
    assert chat["messages"][3]["content"] == "ok"
    assert [c["id"] for c in chat["messages"][3]["tool_calls"]] == ["c1", "c2"]
    assert chat["messages"][4:] == [{"role": "tool", "tool_call_id": "c1", "content": "one"},
                                    {"role": "tool", "tool_call_id": "c2", "content": "two"}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"]["json_schema"]["name"] == "x"
    assert chat["reasoning_effort"] == "low"
    assert estimate_input_tokens(chat) > 0


@pytest.mark.parametrize("model, field", [("gpt-5-mini", "max_completion_tokens"),
                                          ("openai/o3", "max_completion_tokens"),
                                          ("gpt-4o", "max_tokens"), ("llama3.2", "max_tokens")])
def test_max_output_tokens_in_the_field_the_model_takes(model: str, field: str) -> None:
    """OpenAI reasoning models refuse `max_tokens` (they take max_completion_tokens); servers of
    other models may know only `max_tokens`."""
    chat = request_to_chat({"model": "x", "input": "hi", "max_output_tokens": 64}, model)
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    assert chat[field] == 64 and other not in chat


def test_allowed_tools_offer_only_the_named_functions() -> None:
    """tool_choice allowed_tools restricts the model to a subset of `tools` (which clients keep whole
    across turns): a chat upstream is offered only that subset, so it cannot call the others."""
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("read", "write", "delete")]
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "function", "name": "read"}, {"type": "function", "name": "write"}]}
    chat = request_to_chat({"model": "m", "input": "x", "tools": tools, "tool_choice": choice}, "m")
    assert [t["function"]["name"] for t in chat["tools"]] == ["read", "write"] and chat["tool_choice"] == "required"
    none = request_to_chat({"model": "m", "input": "x", "tools": tools, "tool_choice": {
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "docs"}]}}, "m")
    assert "tools" not in none and "tool_choice" not in none  # no function allowed: none offered
    for bad in ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "nope"}]},
                {"type": "allowed_tools", "mode": "auto"}):
        with pytest.raises(InvalidRequest, match="allowed_tools"):
            request_to_chat({"model": "m", "input": "x", "tools": tools, "tool_choice": bad}, "m")


@pytest.mark.parametrize("body, message", [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "empty"),
    ({"input": "x"}, "model"),
    ({"model": "m", "input": "x", "background": True, "store": False}, "Background mode requires the response to be "
     "stored"),
    ({"model": "m", "input": "x", "background": "yes"}, "background"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "metadata": {"a": 1}}, "metadata"),
    ({"model": "m", "input": [7]}, "input\\[0\\]"),
])
def test_bad_requests_say_what_to_send(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_request(body)


def test_input_items_are_normalized_and_items_already_in_form_kept_as_they_are() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    bare = {"role": "assistant", "content": "hi"}
    typed_null = {"type": None, "role": "user", "content": "x"}
    req = parse_request({"model": "m", "input": [call, bare]})
    assert req.input[0] is call  # nothing to change: not copied
    assert req.input[1] == {"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "hi", "annotations": []}]}
    assert bare == {"role": "assistant", "content": "hi"}  # the client's item itself is not changed
    with pytest.raises(InvalidRequest, match=r"input\[1\] needs a `type`"):
        parse_request({"model": "m", "input": [call, typed_null]})


def test_continuation_input_and_gateway_fields() -> None:
    req = parse_request({"model": "m", "previous_response_id": "resp_1", "input": "next", "stream": True,
                         "store": False})
    assert req.streaming and not req.store and req.previous_response_id == "resp_1"
    history = [{"type": "message", "role": "user", "content": "a"}]
    sent = upstream_body({"model": "m", "previous_response_id": "resp_1", "stream": True, "input": "next"},
                         history, req.input)
    assert "previous_response_id" not in sent and "stream" not in sent
    assert sent["input"] == history + req.input


def test_chat_answers_become_items() -> None:
    chat = {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1},
                  "cache_creation_input_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 1}}}
    out = chat_to_output(chat, ids())
    assert out.output == [{"id": "fc_0", "type": "function_call", "status": "completed", "call_id": "call_1",
                           "name": "f", "arguments": "{}"}]
    assert out.usage is not None and (out.usage.cached_tokens, out.usage.reasoning_tokens) == (1, 1)
    # cache writes (an Anthropic deployment's, through its chat translation) in the field the SDK requires
    assert out.usage.to_dict()["input_tokens_details"] == {"cached_tokens": 1, "cache_write_tokens": 1}
    cut = chat_to_output({"choices": [{"message": {"content": "par"}, "finish_reason": "length"}]}, ids())
    assert cut.status == "incomplete" and cut.incomplete == "max_output_tokens"


def test_namespace_tools_are_flattened_and_their_calls_named_back() -> None:
    body = {"model": "m", "input": "x", "tools": [
        {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn", "parameters": {}}]},
        {"type": "web_search"}]}
    chat = request_to_chat(body, "m")
    assert [t["function"]["name"] for t in chat["tools"]] == ["spawn"]
    from shieldes.providers.responses_tools import call_kinds, dropped_tools, tool_namespaces

    assert dropped_tools(body) == ["web_search"] and tool_namespaces(body) == {"spawn": "agents"}
    out = chat_to_output({"choices": [{"message": {"tool_calls": [
        {"id": "c", "function": {"name": "spawn", "arguments": "{}"}}]}}]}, ids(), call_kinds(body))
    assert out.output[0]["namespace"] == "agents"
    with pytest.raises(InvalidRequest, match="hosted tool"):
        request_to_chat({**body, "tool_choice": {"type": "web_search"}}, "m")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_stream_translation_numbers_and_closes_every_item() -> None:
    ctx = ResponseContext.of({"model": "m", "metadata": {"a": "b"}}, "resp_1", 1_700_000_000, "m")
    tr = ChatStreamTranslator(ctx, ids())
    events = tr.start()
    for chunk in [_chunk({"role": "assistant", "reasoning_content": "hmm"}), _chunk({"content": "Hel"}),
                  _chunk({"content": "lo"}),
                  _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                  _chunk({}, "tool_calls"),
                  {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}}]:
        events += tr.feed(chunk)
    events += tr.finish(1_700_000_001)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for e in events:
        check_event(e)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    final = events[-1]["response"]
    check_response(final)
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["arguments"] == "{\"a\":1}"
    assert final["usage"]["total_tokens"] == 10 and final["metadata"] == {"a": "b"}
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == done == [0, 1, 2]
    # reasoning streams as it comes, as a reasoning model's text does, not only in the item's done event
    assert kinds[2:8] == ["response.output_item.added", "response.content_part.added",
                          "response.reasoning_text.delta", "response.reasoning_text.done",
                          "response.content_part.done", "response.output_item.done"]
    assert [(e["item_id"], e["output_index"], e["content_index"], e.get("delta") or e.get("text"))
            for e in events[4:6]] == [("rs_shd_0", 0, 0, "hmm"), ("rs_shd_0", 0, 0, "hmm")]
    assert events[6]["part"] == {"type": "reasoning_text", "text": "hmm"} == final["output"][0]["content"][0]


def test_reasoning_is_the_summary_a_request_asks_for() -> None:
    """`reasoning.summary`: the chat answer's reasoning text is given as the item's summary (JSON and
    summary stream events), where clients of the API read it."""
    ctx = ResponseContext.of({"model": "m", "reasoning": {"effort": "low", "summary": "auto"}}, "resp_1", 1, "m")
    tr = ChatStreamTranslator(ctx, ids())
    events = tr.start()
    for chunk in [_chunk({"reasoning_content": "hm"}), _chunk({"reasoning_content": "m"}), _chunk({"content": "ok"}),
                  _chunk({}, "stop")]:
        events += tr.feed(chunk)
    events += tr.finish(2)
    for e in events:
        check_event(e)
    kinds = [e["type"] for e in events]
    assert kinds[2:9] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
                          "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                          "response.output_item.done"]
    final = events[-1]["response"]
    check_response(final)
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert "content" not in final["output"][0]
    out = chat_to_output({"choices": [{"message": {"content": "ok", "reasoning_content": "hmm"}}]}, ids(),
                         summary=True)
    assert out.output[0] == {"id": "rs_shd_0", "type": "reasoning",
                             "summary": [{"type": "summary_text", "text": "hmm"}]}


def test_parallel_calls_sent_at_one_index_stay_apart() -> None:
    """Ollama (and other servers) stream every parallel tool call at index 0, each with its own id:
    each is its own function_call item, and a fragment without an id belongs to the call before it."""
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids())
    events = tr.start()
    for call in ({"index": 0, "id": "call_a", "function": {"name": "read", "arguments": "{\"path\": \"a\"}"}},
                 {"index": 0, "id": "call_b", "function": {"name": "grep", "arguments": "{\"q\""}},
                 {"index": 0, "function": {"arguments": ": \"x\"}"}},
                 {"index": 0, "id": "call_b", "function": {"arguments": ""}}):  # an id sent again: the same call
        events += tr.feed(_chunk({"tool_calls": [call]}))
    events += tr.feed(_chunk({}, "tool_calls")) + tr.finish(2)
    for e in events:
        check_event(e)
    calls = [(i["call_id"], i["name"], i["arguments"]) for i in events[-1]["response"]["output"]]
    assert calls == [("call_a", "read", "{\"path\": \"a\"}"), ("call_b", "grep", "{\"q\": \"x\"}")]
    assert [e["output_index"] for e in events if e["type"] == "response.function_call_arguments.done"] == [0, 1]


def test_stream_failure_ends_with_error_and_failed() -> None:
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids())
    events = tr.start() + tr.feed(_chunk({"content": "x"})) + tr.fail("boom", 2)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"] == "boom" and events[-2]["error"]["message"] == "boom"
    assert events[-1]["response"]["status"] == "failed"
    for e in events:
        check_event(e)


def test_expired_partitions_are_whole_days_beyond_the_retention() -> None:
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()
    names = [partition_name(dt.date(2026, 10, d)) for d in (30, 31)] + [
        partition_name(dt.date(2026, 11, 1)), "other_table"]
    assert expired_partitions(names, now, 31 * 86400) == [partition_name(dt.date(2026, 10, 30))]


def test_provider_events_without_a_responses_mode_replay_as_translate() -> None:
    codec = Codec()
    old = codec.decode("provider.added", 1, {"name": "p", "kind": "openai", "base_url": "http://x",
                                              "secret_ref": None, "models": ["m"], "weight": 1.0})
    assert isinstance(old, ProviderAdded)
    state = apply_config(ConfigState(), old)
    assert state.providers["p"].responses == "translate"
    state = apply_config(state, ProviderUpdated("p", "http://x", None, ("m",), 1.0, "native"))
    assert state.providers["p"].responses == "native"
    older_update = codec.decode("provider.updated", 1, {"name": "p", "base_url": "http://y", "secret_ref": None,
                                                        "models": ["m"], "weight": 2.0})
    assert apply_config(state, older_update).providers["p"].responses == "native"


def test_each_chat_message_is_named_by_the_request_path_that_made_it() -> None:
    """`instructions` first, each item's messages by its index (a function call joins the assistant
    message before it, a reasoning item makes none), a string input as `input`: what
    chat_paths.named puts in place of `messages[i]` in an error about the chat request."""
    names: list[str] = []
    chat = request_to_chat({"instructions": "be brief", "input": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "calling"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "summary": []},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {"role": "user", "content": "more"}]}, "m", names=names)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert names == ["instructions", "input[0]", "input[1]", "input[4]", "input[5]"]
    request_to_chat({"input": "hi"}, "m", names=names)
    assert names == ["input"]
    assert chat_paths.renamed("Invalid 'messages[3].content'; see messages[9]", ["a", "b", "c", "input[4]"]) == \
        "Invalid 'input[4].content'; see messages[9]"


def _stream(chunks: list[dict[str, Any]], body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    tr = ChatStreamTranslator(ResponseContext.of(body or {}, "resp_1", 1, "m"), ids())
    events = tr.start()
    for chunk in chunks:
        events += tr.feed(chunk)
    return events + tr.finish(2)


def _call(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id is not None:
        call.update(id=call_id, type="function", function={"name": name, "arguments": args})
    return _chunk({"tool_calls": [call]})


def _items(events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(event type, output_index, item id) of each item event, in the order sent."""
    return [(e["type"].removeprefix("response."), e["output_index"], e.get("item_id") or e["item"]["id"])
            for e in events if "output_index" in e]


def test_parallel_calls_stream_one_after_another() -> None:
    """Two tool calls in one chat stream: the first is done (arguments.done, output_item.done)
    before the second is added, as OpenAI streams items; the final output is what the events built."""
    events = _stream([_chunk({"role": "assistant", "content": None}),
                      _call(0, "", "call_a", "read"), _call(0, '{"path"'), _call(0, ': "a"}'),
                      _call(1, "", "call_b", "grep"), _call(1, '{"q": '), _call(1, '"x"}'),
                      _chunk({}, "tool_calls")])
    final = check_stream(events)
    assert [(i["call_id"], i["arguments"], i["status"]) for i in final["output"]] == [
        ("call_a", '{"path": "a"}', "completed"), ("call_b", '{"q": "x"}', "completed")]
    assert _items(events) == [
        ("output_item.added", 0, "fc_0"), ("function_call_arguments.delta", 0, "fc_0"),
        ("function_call_arguments.delta", 0, "fc_0"), ("function_call_arguments.done", 0, "fc_0"),
        ("output_item.done", 0, "fc_0"),
        ("output_item.added", 1, "fc_1"), ("function_call_arguments.delta", 1, "fc_1"),
        ("function_call_arguments.delta", 1, "fc_1"), ("function_call_arguments.done", 1, "fc_1"),
        ("output_item.done", 1, "fc_1")]
    # the first call streams as it comes; the second waits for it to be done (at the stream's end)
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids())
    tr.start()
    assert [e["type"] for e in tr.feed(_call(0, '{"path"', "call_a", "read"))] == [
        "response.output_item.added", "response.function_call_arguments.delta"]
    assert tr.feed(_call(1, "{}", "call_b", "grep")) == []
    assert [e["type"] for e in tr.feed(_call(0, "}"))] == ["response.function_call_arguments.delta"]


def test_interleaved_call_fragments_keep_every_byte_in_order() -> None:
    """An upstream may send the calls' fragments in any order of index: each fragment lands in its
    own call, in the order sent, and the calls still stream one after another."""
    events = _stream([_call(0, '{"a"', "call_a", "f"), _call(1, '{"b"', "call_b", "g"), _call(0, ": 1"),
                      _call(2, '{"c": 3}', "call_c", "h"), _call(1, ": 2}"), _call(0, "}"), _chunk({}, "tool_calls")])
    final = check_stream(events)
    assert [(i["call_id"], i["name"], i["arguments"]) for i in final["output"]] == [
        ("call_a", "f", '{"a": 1}'), ("call_b", "g", '{"b": 2}'), ("call_c", "h", '{"c": 3}')]
    deltas = [(e["output_index"], e["delta"]) for e in events if e["type"].endswith("arguments.delta")]
    assert deltas == [(0, '{"a"'), (0, ": 1"), (0, "}"), (1, '{"b"'), (1, ": 2}"), (2, '{"c": 3}')]


def test_text_and_reasoning_before_and_after_calls_stream_in_order() -> None:
    """Reasoning, text, two calls, then more text (Claude may write after a tool_use): five items,
    each finished before the next starts; a summary stream too."""
    chunks = [_chunk({"reasoning_content": "think"}), _chunk({"content": "I will"}), _chunk({"content": " look."}),
              _call(0, '{"x": 1}', "call_a", "f"), _call(1, '{"y": 2}', "call_b", "g"),
              _chunk({"content": "Done."}), _call(0, ""), _chunk({}, "tool_calls"),
              {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}]
    for body in ({}, {"reasoning": {"effort": "low", "summary": "auto"}}):
        final = check_stream(_stream(chunks, body))
        assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call", "function_call",
                                                        "message"]
        assert final["output"][1]["content"][0]["text"] == "I will look."
        assert final["output"][4]["content"][0]["text"] == "Done."
        assert final["usage"]["total_tokens"] == 7


def test_a_stream_failing_with_calls_held_shows_only_what_was_sent() -> None:
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids())
    events = tr.start() + tr.feed(_call(0, '{"a"', "call_a", "f")) + tr.feed(_call(1, "{}", "call_b", "g"))
    events += tr.fail("boom", 2)
    final = check_stream(events)
    assert [(i["call_id"], i["status"]) for i in final["output"]] == [("call_a", "in_progress")]


@pytest.mark.parametrize(("fields", "message"), [
    ({"tool_choice": "required"}, "'required' forces a tool call but the request has no `tools`"),
    ({"tool_choice": "required", "tools": []}, "no `tools`"),
    ({"tool_choice": {"type": "function", "name": "lookup"}, "tools": [{"type": "function", "name": "read"}]},
     "names the tool 'lookup', which is not in `tools` (the request offers 'read'"),
    ({"tool_choice": {"type": "custom", "name": "lookup"}}, "the request has no function or custom tools"),
    ({"tool_choice": {"type": "function"}, "tools": [{"type": "function", "name": "read"}]}, "needs the `name`"),
])
def test_a_tool_choice_forcing_a_tool_not_offered_is_refused(fields: dict[str, Any], message: str) -> None:
    """As OpenAI refuses it: 400 invalid_request_error on param tool_choice, before any upstream."""
    with pytest.raises(InvalidRequest, match=re.escape(message)) as refused:
        parse_request({"model": "m", "input": "x", **fields})
    assert refused.value.param == "tool_choice" and refused.value.type == "invalid_request_error"


def test_a_tool_choice_naming_an_offered_tool_passes() -> None:
    namespace = {"type": "namespace", "name": "fs", "tools": [{"type": "function", "name": "read"}]}
    for fields in ({"tool_choice": "required", "tools": [{"type": "function", "name": "read"}]},
                   {"tool_choice": {"type": "function", "name": "read"}, "tools": [namespace]},
                   {"tool_choice": {"type": "custom", "name": "patch"}, "tools": [{"type": "custom", "name": "patch"}]},
                   {"tool_choice": "auto"}, {"tool_choice": "none"}):
        parse_request({"model": "m", "input": "x", **fields})
    # a translated deployment cannot force a call when the only tools are hosted ones it leaves out
    with pytest.raises(InvalidRequest, match="only tools are hosted ones \\(web_search\\)") as refused:
        request_to_chat({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "required"}, "m")
    assert refused.value.param == "tool_choice"


def test_a_streamed_refusal_is_a_message_with_a_refusal_part() -> None:
    """A chat stream's `refusal` deltas (OpenAI's refusal of a structured-output request) stream as
    OpenAI streams a refusal (refusal.delta / refusal.done in a message item's refusal part), and the
    response holds the item chat_to_output makes of the same answer."""
    events = _stream([_chunk({"role": "assistant", "content": None, "refusal": None}),
                      _chunk({"refusal": "I can't"}), _chunk({"refusal": " help."}), _chunk({}, "stop")])
    final = check_stream(events)
    assert [e["type"] for e in events[2:-1]] == [
        "response.output_item.added", "response.content_part.added", "response.refusal.delta",
        "response.refusal.delta", "response.refusal.done", "response.content_part.done", "response.output_item.done"]
    whole = chat_to_output({"choices": [{"message": {"content": None, "refusal": "I can't help."}}]}, ids())
    assert final["output"] == whole.output
    assert final["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    # text, then a refusal: two message items
    final = check_stream(_stream([_chunk({"content": "Sure"}), _chunk({"refusal": "no"}), _chunk({}, "stop")]))
    assert [i["content"][0]["type"] for i in final["output"]] == ["output_text", "refusal"]


def test_the_item_a_cut_ended_is_incomplete() -> None:
    """An answer cut by max_output_tokens: the response is incomplete and so is the item the cut
    ended (the items before it completed), streamed and not, as OpenAI reports it."""
    chunks = [_chunk({"reasoning_content": "hm"}), _chunk({"content": "Once upon"}), _chunk({}, "length")]
    final = check_stream(_stream(chunks))
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i.get("status") for i in final["output"]] == [None, "incomplete"]
    cut_call = check_stream(_stream([_call(0, '{"a": 1}', "call_a", "f"), _call(1, '{"b"', "call_b", "g"),
                                     _chunk({}, "length")]))
    assert [i["status"] for i in cut_call["output"]] == ["completed", "incomplete"]
    whole = chat_to_output({"choices": [{"message": {"content": "Once upon", "reasoning_content": "hm"},
                                         "finish_reason": "length"}]}, ids())
    assert whole.status == "incomplete" and [i.get("status") for i in whole.output] == [None, "incomplete"]
    done = check_stream(_stream([_chunk({"content": "The end."}), _chunk({}, "stop")]))
    assert done["output"][0]["status"] == "completed"


def test_calls_streamed_one_after_another_go_out_as_they_end() -> None:
    """Anthropic (like Bedrock and Gemini) sends each tool call whole before the next block: each
    call's output_item.done goes out as the next block starts, and the second call streams live,
    not held until the stream ends (a chat server's calls are: it never says where one ends)."""
    upstream = AnthropicStream("claude", 1)
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids(), calls_in_order=True)
    tr.start()

    def fed(event: dict[str, Any]) -> list[str]:
        return [e["type"] for chunk in upstream.feed(event["type"], event) for e in tr.feed(chunk)]

    usage = {"input_tokens": 3, "output_tokens": 1}
    fed({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": usage}})
    for k, name in enumerate(("get_weather", "get_time")):
        start = {"type": "tool_use", "id": f"toolu_{k}", "name": name, "input": {}}
        shown = fed({"type": "content_block_start", "index": k, "content_block": start})
        if k:  # the first call is done, the second shown, before the stream ends
            assert shown == ["response.function_call_arguments.done", "response.output_item.done",
                             "response.output_item.added"]
        assert fed({"type": "content_block_delta", "index": k,
                    "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}}) == \
            ["response.function_call_arguments.delta"]
        assert fed({"type": "content_block_stop", "index": k}) == []
    fed({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})
    fed({"type": "message_stop"})
    final = tr.finish(2)
    assert [e["type"] for e in final] == ["response.function_call_arguments.done", "response.output_item.done",
                                          "response.completed"]
    assert [(i["name"], i["arguments"], i["status"]) for i in final[-1]["response"]["output"]] == \
        [("get_weather", '{"city": "Paris"}', "completed"), ("get_time", '{"city": "Paris"}', "completed")]
    # text after calls: they are done once it starts, and it streams at once
    tr = ChatStreamTranslator(ResponseContext.of({}, "resp_1", 1, "m"), ids(), calls_in_order=True)
    tr.start()
    tr.feed(_chunk({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "f", "arguments": "{}"}}]}))
    assert [e["type"] for e in tr.feed(_chunk({"content": "ok"}))] == [
        "response.function_call_arguments.done", "response.output_item.done", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta"]
    assert tr.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "late"}}]})) == []
