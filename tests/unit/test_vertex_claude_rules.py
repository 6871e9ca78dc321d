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
    assert vo.claude_body(body, count=False) == {"max_tokens": 5, "messages": [],
                                                 "anthropic_version": vo.CLAUDE_VERSION}
    assert vo.claude_body(body, count=True) == {**body, "anthropic_version": "vertex-2023-10-16"}
    assert body == {"model": "claude-x", "max_tokens": 5, "messages": []}  # the caller's dict is left as it is


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
