"""Tool call ids fitted to each upstream's rule: pairs stay matched, every id sent is valid, ids that
fit are untouched, and fitting twice changes nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.providers.anthropic_native import native_body
from shieldes.providers.anthropic_translate import chat_request_to_anthropic
from shieldes.providers.bedrock_translate import chat_to_converse
from shieldes.providers.gemini_translate import GeminiStreamTranslator, gemini_to_chat
from shieldes.providers.tool_ids import (
    ANTHROPIC,
    ANY,
    BEDROCK,
    MISTRAL,
    OPENAI,
    RESPONSES,
    IdRule,
    all_fit,
    anthropic_ids_fit_in,
    fit_chat_ids,
    fit_messages_ids,
    fit_responses_ids,
    messages_ids_fit,
    rule_for,
    scan_call_items,
    unanswered_output,
)

RULES = (OPENAI, ANTHROPIC, BEDROCK, MISTRAL, RESPONSES)
VALID = {  # each upstream's rule, written out as its documentation states it
    "openai": lambda i: 1 <= len(i) <= 40,
    "anthropic": lambda i: re.fullmatch(r"^[a-zA-Z0-9_-]+$", i) is not None,
    "bedrock": lambda i: re.fullmatch(r"[a-zA-Z0-9_-]+", i) is not None and len(i) <= 64,
    "mistral": lambda i: re.fullmatch(r"[a-zA-Z0-9]{9}", i) is not None,
    "responses": lambda i: 1 <= len(i) <= 64,  # OpenAI Responses call_id
}
# ids as providers mint them, and worse
KNOWN = ["call_abc123", "toolu_01A09q90qw90lq917835lq9", "tooluse_Ab-9_x", "functions.get_weather:0",
         "call_0__ts__" + "A" * 300, "", "x" * 41, "x" * 64, "x" * 65, "id with spaces", "é", "call\n1", "abcDEF123"]
ids = st.one_of(st.sampled_from(KNOWN), st.text(max_size=80),
                st.text(alphabet="abcXYZ019_-", min_size=1, max_size=70))


def _history(pairs: list[list[str]], args: Any = "{}") -> dict[str, Any]:
    """A chat history: per turn, an assistant message calling each id, then a tool result for each."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for turn in pairs:
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": args}} for i in turn]})
        messages += [{"role": "tool", "tool_call_id": i, "content": "ok"} for i in turn]
    return {"model": "m", "messages": messages}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_id=ids)
def test_an_id_is_kept_when_it_fits_and_replaced_by_a_valid_one_when_not(rule: IdRule, call_id: str) -> None:
    fitted = rule.fit(call_id)
    assert VALID[rule.name](fitted)
    assert (fitted == call_id) == VALID[rule.name](call_id)  # kept exactly when it fits
    assert rule.fit(fitted) == fitted  # idempotent
    assert rule.fit(call_id) == fitted  # deterministic


@pytest.mark.parametrize("rule", (*RULES, ANY), ids=lambda r: r.name)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(some=st.lists(ids, max_size=6))
def test_a_list_of_ids_fits_exactly_when_each_of_its_ids_does(rule: IdRule, some: list[str]) -> None:
    assert all_fit(some, rule) == all(VALID[rule.name](i) if rule is not ANY else i != "" for i in some)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.lists(ids, min_size=1, max_size=3, unique=True), min_size=1, max_size=3))
def test_a_history_keeps_its_pairs_and_only_valid_ids(rule: IdRule, turns: list[list[str]]) -> None:
    body = _history(turns)
    fitted = fit_chat_ids(body, rule)
    assert fit_chat_ids(fitted, rule) is fitted  # idempotent: the second pass changes nothing
    assert (fitted is body) == all(VALID[rule.name](i) for t in turns for i in t)
    mapping: dict[str, str] = {}
    for before, after in zip(body["messages"], fitted["messages"], strict=True):
        for c0, c1 in zip(before.get("tool_calls") or [], after.get("tool_calls") or [], strict=True):
            assert VALID[rule.name](c1["id"]) and mapping.setdefault(c0["id"], c1["id"]) == c1["id"]
            assert c1["function"] == c0["function"]
        if before["role"] == "tool":  # the result names the call's new id: the pair holds
            assert after["tool_call_id"] == mapping[before["tool_call_id"]]
    distinct = {i for t in turns for i in t}
    assert len(set(mapping.values())) == len(distinct)  # different ids stay different
    assert body == _history(turns)  # the client's body is not changed in place


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.lists(ids, min_size=1, max_size=2, unique=True), min_size=1, max_size=3))
def test_the_translations_send_only_valid_paired_ids(turns: list[list[str]]) -> None:
    """Converse and Anthropic requests built from any history hold only ids their API takes, each
    result naming the id of the call it answers."""
    body = _history(turns)
    converse = chat_to_converse(body, "anthropic.claude")
    uses = [b["toolUse"]["toolUseId"] for m in converse["messages"] for b in m["content"] if "toolUse" in b]
    results = [b["toolResult"]["toolUseId"] for m in converse["messages"] for b in m["content"] if "toolResult" in b]
    assert all(VALID["bedrock"](i) for i in uses) and uses == results
    anthropic = chat_request_to_anthropic(body, "claude")
    uses = [b["id"] for m in anthropic["messages"] for b in m["content"] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for m in anthropic["messages"] for b in m["content"] if b["type"] == "tool_result"]
    assert all(VALID["anthropic"](i) for i in uses) and uses == results


def test_messages_passthrough_keeps_the_client_bytes_unless_an_id_breaks_anthropic_rule() -> None:
    fine: Any = {"model": "claude", "max_tokens": 9, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]}
    assert native_body(fine, b"client bytes", "claude") == b"client bytes"
    assert fit_messages_ids(fine, ANTHROPIC) is fine
    foreign = {**fine, "messages": [fine["messages"][0],
                                    {"role": "assistant", "content": [
                                        {"type": "text", "text": "let me see"},
                                        {"type": "tool_use", "id": "functions.f:0", "name": "f", "input": {}}]},
                                    {"role": "user", "content": [
                                        {"type": "tool_result", "tool_use_id": "functions.f:0", "content": "ok"},
                                        {"type": "text", "text": "and?"}]}]}
    sent = orjson.loads(native_body(foreign, b"client bytes", "claude"))
    use, result = sent["messages"][1]["content"][1], sent["messages"][2]["content"][0]
    assert use["id"] == result["tool_use_id"] == ANTHROPIC.fit("functions.f:0") != "functions.f:0"
    assert sent["messages"][1]["content"][0] == {"type": "text", "text": "let me see"}


def test_rules_by_deployment() -> None:
    assert rule_for("openai", "https://api.openai.com/v1") is OPENAI
    assert rule_for("azure", "https://r.openai.azure.com") is OPENAI
    assert rule_for("openai", "https://api.mistral.ai/v1") is MISTRAL
    assert rule_for("anthropic") is ANTHROPIC and rule_for("bedrock") is BEDROCK
    assert rule_for("gemini") is ANY and rule_for("vertex") is ANY
    body = _history([["functions.f:0" * 9]])
    assert fit_chat_ids(body, ANY) is body  # Gemini sends no ids: nothing to fit


def test_gemini_calls_without_an_id_get_one_unique_to_their_response() -> None:
    """Gemini 2.x sends no function call ids; `call_0` in every turn would repeat in the history,
    which Anthropic and Bedrock refuse. The minted id is unique per response, stable per call."""
    def answer(rid: str) -> dict[str, Any]:
        return {"responseId": rid, "candidates": [{"content": {"parts": [
            {"functionCall": {"name": "f", "args": {}}}, {"functionCall": {"name": "g", "args": {}}}]},
            "finishReason": "STOP"}]}

    def ids_of(resp: dict[str, Any]) -> list[str]:
        return [c["id"] for c in gemini_to_chat(resp, "gemini-2.5-flash", 0)[0]["choices"][0]["message"]["tool_calls"]]

    first, second = ids_of(answer("r1")), ids_of(answer("r2"))
    assert len(set(first + second)) == 4 and ids_of(answer("r1")) == first
    assert all(OPENAI.fits(i) and BEDROCK.fits(i) for i in first)
    streamed = GeminiStreamTranslator("gemini-2.5-flash", 0)
    chunks = streamed.feed(answer("r1"))
    assert [c["choices"][0]["delta"]["tool_calls"][0]["id"] for c in chunks[1:]] == first
    assert ids_of({k: v for k, v in answer("x").items() if k != "responseId"}) == ["call_0", "call_1"]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.lists(ids, min_size=1, max_size=3, unique=True), min_size=1, max_size=3))
def test_a_responses_input_keeps_its_pairs_and_only_call_ids_a_native_upstream_takes(turns: list[list[str]]) -> None:
    items: list[Any] = [{"type": "message", "role": "user", "content": "go"}]
    for turn in turns:
        items += [{"type": "function_call", "call_id": i, "name": "f", "arguments": "{}"} for i in turn]
        items += [{"type": "function_call_output", "call_id": i, "output": "ok"} for i in turn]
    body = {"model": "m", "input": items}
    fitted = fit_responses_ids(body)
    sent = fitted["input"]
    assert all(VALID["responses"](i["call_id"]) for i in sent[1:])
    assert sent[0] is items[0]
    assert [i["call_id"] == j["call_id"] for i, j in zip(items[1:], sent[1:], strict=True)] == \
        [VALID["responses"](i["call_id"]) for i in items[1:]]  # changed exactly when it did not fit
    assert unanswered_output(sent) is None and unanswered_output(items) is None  # every pair kept
    assert (fitted is body) == all(VALID["responses"](i["call_id"]) for i in items[1:])
    assert fit_responses_ids(fitted) is fitted


def test_an_output_that_answers_no_earlier_call_is_found() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    out = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    assert unanswered_output([call, out, dict(out)]) is None  # answered (twice is the upstream's to judge)
    assert unanswered_output([out, call]) == (0, "c1")  # the output before its call
    assert unanswered_output([call, dict(out, call_id="c2")]) == (1, "c2")
    assert unanswered_output([call, {"type": "function_call_output", "output": "ok"}]) == (1, None)
    custom = {"type": "custom_tool_call", "call_id": "k1", "name": "apply_patch", "input": "x"}
    answer = {"type": "custom_tool_call_output", "call_id": "k1", "output": "ok"}
    assert unanswered_output([custom, answer]) is None and unanswered_output([answer, custom]) == (0, "k1")


def test_custom_tool_call_ids_are_fitted_as_function_call_ids_are() -> None:
    long = "k" * 80  # over the Responses API's 64 characters
    items = [{"type": "custom_tool_call", "call_id": long, "name": "apply_patch", "input": "x"},
             {"type": "custom_tool_call_output", "call_id": long, "output": "ok"}]
    assert scan_call_items(items, RESPONSES) == (False, None)
    call, output = fit_responses_ids({"input": items})["input"]
    assert call["call_id"] == output["call_id"] == fit_responses_ids(
        {"input": [dict(items[0], type="function_call")]})["input"][0]["call_id"]
    assert VALID["responses"](call["call_id"])


def test_ids_after_an_output_that_answers_no_call_are_still_fitted() -> None:
    long = "x" * 80  # over the Responses API's 64 characters
    items = [{"type": "function_call_output", "call_id": "zz", "output": "o"},
             {"type": "function_call", "call_id": long, "name": "f", "arguments": "{}"}]
    assert scan_call_items(items, RESPONSES) == (True, (0, "zz"))  # the scan stopped at the output
    fitted = fit_responses_ids({"input": items})["input"]
    assert fitted[0] is items[0] and VALID["responses"](fitted[1]["call_id"]) and fitted[1]["call_id"] != long


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.lists(ids, min_size=1, max_size=3, unique=True), min_size=1, max_size=3))
def test_a_messages_history_is_sent_as_it_is_exactly_when_every_id_fits(turns: list[list[str]]) -> None:
    messages: list[Any] = [{"role": "user", "content": "go"}]
    for turn in turns:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "on it"}] + [
            {"type": "tool_use", "id": i, "name": "f", "input": {}} for i in turn]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in turn]})
    body = {"model": "claude", "messages": messages}
    every = [i for turn in turns for i in turn]
    for rule in (ANTHROPIC, BEDROCK, MISTRAL):
        assert messages_ids_fit(messages, rule) == all(rule.fits(i) for i in every)
        fitted = fit_messages_ids(body, rule)
        assert (fitted is body) == messages_ids_fit(messages, rule)
        sent = [b.get("id") or b.get("tool_use_id") for m in fitted["messages"][1:] for b in m["content"]
                if b["type"] != "text"]
        assert all(rule.fits(i) for i in sent)


# keys a tool's input may hold beside the ids: the byte check reads every key ending in `id`
INPUT_KEYS = st.sampled_from(["id", "uuid", "session_id", "path", "tool_use_id", "grid"])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.lists(ids, min_size=1, max_size=3, unique=True), min_size=1, max_size=3),
       inputs=st.dictionaries(INPUT_KEYS, ids, max_size=3), spaced=st.booleans())
def test_the_byte_check_of_a_messages_history_never_passes_an_id_anthropic_refuses(
        turns: list[list[str]], inputs: dict[str, str], spaced: bool) -> None:
    """anthropic_ids_fit_in reads the history's bytes: True only when messages_ids_fit says so too
    (False may also mean "decode and look": a tool input's own `id` that Anthropic would not take)."""
    messages: list[Any] = [{"role": "user", "content": "go"}]
    for turn in turns:
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": i, "name": "f", "input": inputs} for i in turn]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in turn]})
    raw = json.dumps(messages).encode() if spaced else orjson.dumps(messages)  # ", " and ": " or compact
    exact = messages_ids_fit(messages, ANTHROPIC)
    assert not anthropic_ids_fit_in(raw) or exact
    if all(ANTHROPIC.fits(v) for v in inputs.values() if isinstance(v, str)):
        assert anthropic_ids_fit_in(raw) == exact  # nothing else to trip it: the same answer


# what a history's long runs without a quote may be: a screenshot's base64, an id or a key of that length
_RUNS = st.sampled_from(["A" * 5000, "a/b+" * 2000, "toolu_" + "x" * 6000, "x y" * 3000])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(parts=st.lists(st.tuples(st.sampled_from(["image", "id", "tool_use_id", "key", "text"]), _RUNS | ids),
                      min_size=1, max_size=6), spaced=st.booleans(), cut=st.integers(0, 3))
def test_the_byte_check_leaves_out_long_runs_and_answers_as_reading_them(
        parts: list[tuple[str, str]], spaced: bool, cut: int) -> None:
    """A screenshot's base64 is not read by the regex: the answer is the one reading every byte
    gives (a memoryview is read so), but that an id of thousands of bytes counts as not fitting."""
    blocks: list[Any] = []
    for kind, value in parts:
        if kind == "image":
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": value}})
        elif kind == "key":
            blocks.append({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {value + "_id": value}})
        elif kind == "text":
            blocks.append({"type": "text", "text": value})
        else:
            blocks.append({"type": kind, kind: value, "content": "ok"})
    body = {"model": "m", "messages": [{"role": "user", "content": blocks}]}
    raw = json.dumps(body).encode() if spaced else orjson.dumps(body)
    start, end = raw.index(b"["), len(raw) - 1 - cut  # (the list, or a part of it)
    read = anthropic_ids_fit_in(raw, start, end)
    whole = anthropic_ids_fit_in(memoryview(raw)[start:end])
    assert not read or whole
    if all(len(value) < 4096 for kind, value in parts if kind in ("id", "tool_use_id", "key")):
        assert read == whole


def test_the_byte_check_reads_ids_as_clients_write_them() -> None:
    assert anthropic_ids_fit_in(b'[{"role":"user","content":"no tools yet"}]')
    assert anthropic_ids_fit_in(b'[{"content":[{"type":"tool_use","id":"toolu_01A-b_9"}]}]')
    assert anthropic_ids_fit_in(b'[{"content":[{"type":"tool_result","tool_use_id" : "toolu_1"}]}]')
    assert not anthropic_ids_fit_in(b'[{"content":[{"type":"tool_use","id":"functions.f:0"}]}]')
    assert not anthropic_ids_fit_in(b'[{"content":[{"type":"tool_use","id":""}]}]')
    assert not anthropic_ids_fit_in(b'[{"content":[{"type":"tool_use","id":"toolu\\u0031"}]}]')  # an escape
    assert anthropic_ids_fit_in(b'[{"content":"the text says \\"id\\": \\"not one\\""}]')  # inside a string


def test_all_fit_by_length_rules_checks_every_distinct_id() -> None:
    """A rule of lengths only (OpenAI's 40, a Responses upstream's 64) is read off the shortest and
    longest id; a rule with a pattern checks each; no ids fit every rule."""
    from shieldes.providers.tool_ids import ANTHROPIC, ANY, OPENAI, RESPONSES, all_fit

    ok = ["call_" + "a" * 35, "c", "call_1"] * 2
    assert all_fit(ok, OPENAI) and all_fit(ok, RESPONSES) and all_fit(ok, ANY) and all_fit(ok, ANTHROPIC)
    assert not all_fit([*ok, "x" * 41], OPENAI) and all_fit([*ok, "x" * 41], RESPONSES)
    assert not all_fit([*ok, "x" * 65], RESPONSES)
    assert not all_fit([*ok, ""], OPENAI) and not all_fit([""], ANY)
    assert not all_fit([*ok, "functions.get:0"], ANTHROPIC) and all_fit(["functions.get:0"], OPENAI)
    assert all(all_fit([], rule) for rule in (OPENAI, RESPONSES, ANY, ANTHROPIC))
