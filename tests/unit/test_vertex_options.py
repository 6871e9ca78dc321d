"""Chat `metadata` as Vertex `labels` (Google's rules) and `service_tier` as Vertex's tier headers."""

from __future__ import annotations

from shieldes.providers.vertex_options import labels, tier_headers
from tests.fake_google import labels_problem


def test_labels_fit_googles_rules_or_are_all_left_out() -> None:
    assert labels({"Team": "Research", "env": "", "région": "île-de-france_2"}) == {
        "team": "research", "env": "", "région": "île-de-france_2"}  # lowered; empty values and accents are fine
    assert labels({"k": "x" * 63}) == {"k": "x" * 63}
    for bad in ({"k": "x" * 64}, {"k" * 64: "v"}, {"2nd": "v"}, {"_k": "v"}, {"": "v"}, {"k": "a b"},
                {"k": "v.1"}, {"k": "\U0001f600"}, {"Team": "a", "team": "b"}, {"k": 1},
                {f"k{i}": "v" for i in range(65)}):
        assert labels(bad) is None, bad  # named as dropped, never sent
    assert labels({}) is None and labels(None) is None and labels("team=a") is None
    for good in ({"team": "research", "région": "île"}, {f"k{i}": "" for i in range(64)}):
        assert labels_problem(labels(good)) is None  # what is sent, the fake Vertex takes


def test_tier_headers_are_vertexs_own_tiers_only() -> None:
    assert tier_headers("default") == {"X-Vertex-AI-LLM-Request-Type": "shared"}
    assert tier_headers("flex") == {"X-Vertex-AI-LLM-Shared-Request-Type": "flex"}
    assert tier_headers("priority") == {"X-Vertex-AI-LLM-Shared-Request-Type": "priority"}
    assert tier_headers("auto") == tier_headers("scale") == tier_headers(None) == {}
