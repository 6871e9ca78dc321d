"""Pure rules of the Messages surface: thinking -> reasoning effort, what translation drops, the
count_tokens estimate, the pass-through body."""

from __future__ import annotations

import orjson
import pytest

from shieldes.gateway.model_routes import anthropic_page
from shieldes.providers.anthropic_inbound import client_paths, end_user, reasoning_effort, translate_messages_request
from shieldes.providers.anthropic_native import Passthrough, native_body
from shieldes.providers.base import UpstreamFailure
from shieldes.providers.output_caps import OutputCap, refused_output
from shieldes.usage.tokens import MEDIA_TOKENS, estimate_input_tokens

BASE = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (4095, "low"), (4096, "medium"),
                                               (16383, "medium"), (16384, "high"), (None, "medium")])
def test_thinking_budget_maps_to_reasoning_effort(budget: int | None, effort: str) -> None:
    thinking = {"type": "enabled"} if budget is None else {"type": "enabled", "budget_tokens": budget}
    assert reasoning_effort(thinking) == effort
    assert reasoning_effort({"type": "disabled"}) is None and reasoning_effort(None) is None


def test_reasoning_models_get_effort_others_drop_thinking() -> None:
    body = {**BASE, "thinking": {"type": "enabled", "budget_tokens": 20000}, "top_k": 3}
    chat, dropped = translate_messages_request(body, "o3-mini")
    assert chat["reasoning_effort"] == "high" and chat["max_completion_tokens"] == 10 and "max_tokens" not in chat
    assert dropped == ["top_k"]
    chat, dropped = translate_messages_request(body, "openai/gpt-4o")
    assert "reasoning_effort" not in chat and chat["max_tokens"] == 10
    assert dropped == ["top_k", "thinking"]


def test_server_tools_and_their_results_are_dropped_by_name() -> None:
    body = {**BASE, "tools": [{"type": "web_search_20250305", "name": "web_search"},
                              {"name": "f", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "w"},
                                                           {"type": "text", "text": "ok"},
                                                           {"type": "tool_use", "id": "t", "name": "f"}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                             {"type": "image", "source": {}}, {"type": "text", "text": "r"}]}]}]}
    chat, dropped = translate_messages_request(body)
    assert [t["function"]["name"] for t in chat["tools"]] == ["f"]
    assert dropped == ["messages[1].content[0] server_tool_use block",
                       "messages[2].content[0].content image block",
                       "tools[0] (web_search_20250305: a server tool only Anthropic runs)"]


def test_the_end_user_goes_to_openai_within_64_characters() -> None:
    """Claude Code's user_id (user_<64 hex>_account_<uuid>_session_<uuid>) is past OpenAI's 64."""
    claude_code = ("user_" + "ab" * 32 + "_account_0b1c7a5e-8d2f-4f7e-9a61-3c5d2e1f0a9b"
                   "_session_5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": claude_code}}
    sent = translate_messages_request(body, "gpt-4o")[0]["user"]
    assert len(sent) == 64 and sent == end_user(claude_code) != end_user(claude_code + "x")
    assert end_user("u-7f3a") == "u-7f3a" and end_user("x" * 64) == "x" * 64


def test_token_estimate_rule() -> None:
    assert estimate_input_tokens(BASE) == 3 + 4 + 1
    body = {"model": "m", "system": "x" * 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "é" * 4},  # 8 bytes: 2 tokens
                                     {"type": "image", "source": {}},
                                     {"type": "document", "source": {"type": "text", "data": "y" * 9}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "z" * 400}]}]}
    assert estimate_input_tokens(body) == 3 + 2 + (4 + 2 + MEDIA_TOKENS + 3) + 4


def test_pass_through_body_changes_only_the_model() -> None:
    raw = b'{"model": "alias",  "z": 1.0, "a": {"cache_control": {"type": "ephemeral"}}}'
    body = orjson.loads(raw)
    assert native_body(body, raw, "alias") is raw
    assert orjson.loads(native_body(body, raw, "real")) == {**body, "model": "real"}
    assert list(orjson.loads(native_body(body, raw, "real"))) == ["model", "z", "a"]
    forwarded = Passthrough.of({"Anthropic-Beta": "x,y", "Authorization": "Bearer k", "anthropic-version": "v"}, "")
    assert forwarded.headers == {"anthropic-beta": "x,y", "anthropic-version": "v"}
    # the query goes on as sent, but never a virtual key given as `key` (however its name is spelled)
    query = Passthrough.of({}, "beta=true&key=sk-shd-x&k%65y=sk-shd-y&keys=2&a=k%3D1").query
    assert query == "beta=true&keys=2&a=k%3D1"
    assert Passthrough.of({}, "beta=true").query == "beta=true" and Passthrough.of({}, "key=s").query == ""


def test_output_config_becomes_structured_output_and_effort() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    body = {**BASE, "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": schema}},
            "context_management": {"edits": []}}
    chat, dropped = translate_messages_request(body, "gpt-4o")
    assert chat["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": schema, "strict": True}}
    assert dropped == ["context_management", "output_config.effort"]
    chat, dropped = translate_messages_request(body, "gpt-5")
    assert chat["reasoning_effort"] == "high" and dropped == ["context_management"]


def test_anthropic_model_pages() -> None:
    ids = ["a", "b", "c", "d", "e"]
    assert anthropic_page(ids, None, None, None) == (ids, False)  # no limit: every model, as before
    assert anthropic_page(ids, 2, None, None) == (["a", "b"], True)
    assert anthropic_page(ids, 2, "b", None) == (["c", "d"], True)
    assert anthropic_page(ids, 2, "c", None) == (["d", "e"], False)
    assert anthropic_page(ids, 2, None, "d") == (["b", "c"], True)
    assert anthropic_page(ids, 5, None, "c") == (["a", "b"], False)
    assert anthropic_page(ids, 2, "bb", None) == (["c", "d"], True)  # an id no longer listed: its place
    assert anthropic_page(ids, 3, "a", "e") == (["b", "c", "d"], False)


def test_each_chat_message_knows_the_client_message_it_came_from() -> None:
    origins: list[int | None] = []
    chat, _ = translate_messages_request({
        "model": "gpt-4o", "max_tokens": 10, "system": "be brief", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                                              {"type": "tool_use", "id": "t2", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a"},
                                         {"type": "tool_result", "tool_use_id": "t2", "content": "b"},
                                         {"type": "text", "text": "and?"}]},
            {"role": "assistant", "content": "ok"}]}, origins=origins)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "tool", "user",
                                                     "assistant"]
    assert origins == [None, 0, 1, 2, 2, 2, 3]
    assert client_paths("messages[4]: bad; see messages[0] and messages[9]", origins) == \
        "messages[2]: bad; see system and messages[9]"  # an index the chat request lacks is left alone


def test_the_output_limit_an_upstream_names_in_its_refusal() -> None:
    """OpenAI, DeepSeek, DashScope, Google, Anthropic and Bedrock name the model's own limit (kept for
    later requests); vLLM the room the prompt leaves in its context window (this request's only);
    anything else is not such a refusal."""
    def refused(message: str, status: int = 400) -> UpstreamFailure:
        return UpstreamFailure(message, status=status, retryable=False)

    openai = ("max_tokens is too large: 32000. This model supports at most 16384 completion tokens, whereas you "
              "provided 32000.")
    assert refused_output(refused(openai), 32000) == OutputCap(16384, True)
    assert refused_output(refused(openai), 20000) is None  # (about another request)
    assert refused_output(refused(openai, 500), 32000) is None
    vllm = ("'max_tokens' or 'max_completion_tokens' is too large: 64000. This model's maximum context length is "
            "64001 tokens and your request has 24235 input tokens (64000 > 64001 - 24235).")
    assert refused_output(refused(vllm), 64000) == OutputCap(39766, False)
    full = vllm.replace("24235 input", "64001 input")  # no room at all: the prompt itself does not fit
    assert refused_output(refused(full), 64000) is None
    assert refused_output(refused("max_tokens: Input should be greater than 0"), 0) is None
    deepseek = "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]"
    assert refused_output(refused(deepseek), 32000) == OutputCap(8192, True)
    assert refused_output(refused(deepseek), 8000) is None  # (within it: refused for something else)
    assert refused_output(refused("<400> InternalError.Algo.InvalidParameter: Range of max_tokens should be "
                                  "[1, 32768]"), 64000) == OutputCap(32768, True)
    gemini = ("Unable to submit request because it has a maxOutputTokens value of 65536 but the supported range is "
              "from 1 (inclusive) to 65536 (exclusive). Update the value and try again.")
    assert refused_output(refused(gemini), 65536) == OutputCap(65535, True)
    assert refused_output(refused(gemini), 32000) is None  # (about another request)
    claude = ("max_tokens: 64000 > 32000, which is the maximum allowed number of output tokens for "
              "claude-opus-4-20250514")
    assert refused_output(refused(claude), 64000) == OutputCap(32000, True)
    assert refused_output(refused(claude), 40000) is None  # (the translation asked another number: thinking)
    bedrock = ("The maximum tokens you requested exceeds the model limit of 10000. Try again with a maximum tokens "
               "value that is lower than 10000.")
    assert refused_output(refused(bedrock), 32000) == OutputCap(10000, True)
    assert refused_output(refused(bedrock), 10000) is None
