"""The pure rules of Claude on Vertex AI: which models are Claude, the body Vertex takes, what a
platform failure advises, and what translations for those models may carry."""

from __future__ import annotations

from shieldes.providers import vertex_options as vo
from shieldes.providers.base import Target
from shieldes.providers.kinds import signs_thinking, spec_for, takes_tool_images
from shieldes.providers.vertex import model_url

GOOGLE_404 = {"error": {"code": 404, "message": "Publisher Model ... was not found", "status": "NOT_FOUND"}}


def test_claude_models_are_named_claude_dash() -> None:
    assert vo.serves_claude("claude-sonnet-4-5@20250929") and vo.serves_claude("claude-3-5-haiku")
    assert not vo.serves_claude("gemini-2.5-pro") and not vo.serves_claude("anthropic.claude-v2")


def test_body_names_no_model_but_in_a_count_and_carries_the_vertex_version() -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": []}
    assert vo.claude_body(body, count=False) == vo.ClaudeCall(
        {"max_tokens": 5, "messages": [], "anthropic_version": vo.CLAUDE_VERSION}, {}, [])
    assert vo.claude_body(body, count=True).body == {**body, "anthropic_version": "vertex-2023-10-16"}
    assert body == {"model": "claude-x", "max_tokens": 5, "messages": []}  # the caller's dict is left as it is


def test_body_leaves_out_what_vertex_refuses_and_names_it_and_keeps_what_it_takes() -> None:
    scoped = {"type": "ephemeral", "ttl": "1h", "scope": "global"}
    body = {"model": "claude-x", "max_tokens": 5, "metadata": {"user_id": "u-1"}, "container": "c-1",
            "context_management": {"edits": []}, "inference_geo": "us", "mcp_servers": [{"name": "m"}],
            "speed": "fast", "diagnostics": {"previous_message_id": "m"}, "service_tier": "standard_only",
            "output_config": {"effort": "low", "task_budget": {"type": "tokens", "total": 20000}},
            "system": [{"type": "text", "text": "s", "cache_control": scoped}],
            "tools": [{"name": "t", "input_schema": {}, "cache_control": scoped}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": scoped}]}]}
    before = repr(body)
    call = vo.claude_body(body, count=False)
    assert call.dropped == ["inference_geo", "mcp_servers", "speed", "diagnostics", "output_config.task_budget",
                            "cache_control.scope"]
    assert call.headers == {"X-Vertex-AI-LLM-Request-Type": "shared"}  # standard_only: no Provisioned Throughput
    unscoped = {"type": "ephemeral", "ttl": "1h"}
    assert call.body == {
        "max_tokens": 5, "metadata": {"user_id": "u-1"}, "container": "c-1", "context_management": {"edits": []},
        "output_config": {"effort": "low"}, "anthropic_version": vo.CLAUDE_VERSION,
        "system": [{"type": "text", "text": "s", "cache_control": unscoped}],
        "tools": [{"name": "t", "input_schema": {}, "cache_control": unscoped}],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": unscoped}]}]}
    assert repr(body) == before  # the caller's dict and its blocks are left as they are
    # `auto` is what Vertex does unasked: left out, not named; a budget alone leaves no output_config
    auto = vo.claude_body({"service_tier": "auto", "output_config": {"task_budget": {}}}, count=True)
    assert auto == vo.ClaudeCall({"anthropic_version": vo.CLAUDE_VERSION}, {}, ["output_config.task_budget"])
    assert vo.claude_body({"service_tier": "priority"}, count=True).dropped == ["service_tier"]


def test_refused_beta_values_are_read_from_vertex_s_answer() -> None:
    said = {"type": "error", "error": {"type": "invalid_request_error", "message": (
        "Unexpected value(s) `effort-2025-11-24`, `web-search-2025-03-05` for the `anthropic-beta` header. "
        "Please consult our documentation at docs.anthropic.com or try again without the header.")}}
    refused = vo.refused_betas(400, said)
    assert refused == ["effort-2025-11-24", "web-search-2025-03-05"]
    assert vo.refused_betas(429, said) == [] and vo.refused_betas(400, GOOGLE_404) == []
    assert vo.without_betas("interleaved-thinking-2025-05-14, effort-2025-11-24", refused) == \
        "interleaved-thinking-2025-05-14"
    assert vo.without_betas("effort-2025-11-24,web-search-2025-03-05", refused) == ""
    assert vo.without_betas("interleaved-thinking-2025-05-14", refused) is None  # sending it again changes nothing
    assert vo.without_betas(None, refused) is None


def test_platform_failures_advise_the_model_s_own_do_not() -> None:
    advice = vo.claude_advice(404, GOOGLE_404, "claude-x@1", "p1", "us-east5")
    assert advice is not None and "Model Garden" in advice and "'p1'" in advice and "'us-east5'" in advice
    denied = vo.claude_advice(403, {"error": {"status": "PERMISSION_DENIED"}}, "m", "p", "l")
    assert denied is not None and "roles/aiplatform.user" in denied
    assert vo.claude_advice(404, {"type": "error", "error": {"type": "not_found_error", "message": "x"}},
                            "m", "p", "l") is None
    assert vo.claude_advice(500, {"error": {"status": "INTERNAL"}}, "m", "p", "l") is None


def test_translations_for_claude_on_vertex_carry_what_anthropic_s_do() -> None:
    assert signs_thinking("vertex", "claude-sonnet-4-5") and takes_tool_images("vertex", "claude-sonnet-4-5")
    assert not signs_thinking("vertex", "gemini-2.5-pro") and signs_thinking("anthropic", "claude-x")
    spec = spec_for("vertex", "claude-x")
    assert spec is not None and spec.name == "vertex" and spec.required == ("project", "location")


def test_model_urls_keep_the_version_at_sign() -> None:
    target = Target("d", "https://us-east5-aiplatform.googleapis.com", "claude-x@20250929", None,
                    {"project": "p1", "location": "us-east5"})
    assert model_url(target, "anthropic", target.model, "rawPredict") == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/anthropic/models/"
        "claude-x@20250929:rawPredict")
