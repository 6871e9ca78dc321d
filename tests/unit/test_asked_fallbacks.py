"""A request's own `fallbacks` and `disable_fallbacks` (LiteLLM's and Bifrost's forms) read and
checked purely: each wrong shape a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.routing.asked_fallbacks import MAX_FALLBACKS, NOTHING_ASKED, Asked, fallback_fields, read_asked


def test_the_forms_apps_send() -> None:
    assert read_asked({"model": "gpt-4o"}) is NOTHING_ASKED and not NOTHING_ASKED
    assert read_asked({"fallbacks": ["gpt-4o-mini", "anthropic/claude-3-5-sonnet"]}) == Asked(
        ("gpt-4o-mini", "anthropic/claude-3-5-sonnet"))
    assert read_asked({"fallbacks": [{"model": "a", "messages": [], "temperature": 1}, "b"]}) == Asked(
        ("a", "b"), False, ("fallbacks[0].messages", "fallbacks[0].temperature"))
    assert read_asked({"disable_fallbacks": True}) == Asked((), True)
    assert read_asked({"fallbacks": None, "disable_fallbacks": None}) == Asked()
    assert not read_asked({"fallbacks": []}) and read_asked({"disable_fallbacks": True})


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"fallbacks": "gpt-4o"}, "fallbacks", "field 'fallbacks' has the wrong type"),
    ({"fallbacks": {"model": "gpt-4o"}}, "fallbacks", "field 'fallbacks' has the wrong type"),
    ({"fallbacks": ["a"] * (MAX_FALLBACKS + 1)}, "fallbacks", f"has {MAX_FALLBACKS + 1} entries"),
    ({"fallbacks": ["a", 3]}, "fallbacks[1]", "fallbacks[1] must be a model name"),
    ({"fallbacks": [" "]}, "fallbacks[0]", "fallbacks[0] must be a model name"),
    ({"fallbacks": [{"messages": []}]}, "fallbacks[0].model", "fallbacks[0].model must be a model name"),
    ({"disable_fallbacks": "true"}, "disable_fallbacks", "'disable_fallbacks' has the wrong type"),
])
def test_wrong_shapes_are_refused_naming_the_field(fields: Any, param: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says.replace("[", r"\[").replace("]", r"\]")) as err:
        read_asked(fields)
    assert err.value.param == param
    assert "send true or false" in err.value.message if param == "disable_fallbacks" else \
        "e.g. [\"gpt-4o-mini\"]" in err.value.message


def test_the_overrides_applied_on_chat_and_completions() -> None:
    asked = read_asked({"fallbacks": [{"model": "a", "messages": [], "temperature": 0.1, "max_tokens": 50},
                                      "b", {"model": "c", "seed": 1, "top_p": None}]}, apply=True)
    assert asked.names == ("a", "b", "c") and asked.unused == ("fallbacks[0].messages",)
    assert asked.overrides == ((0, "a", (("temperature", 0.1), ("max_tokens", 50))), (2, "c", (("seed", 1),)))
    assert fallback_fields(asked, {"model": "x"}, None) == (
        {"a": {"temperature": 0.1, "max_tokens": 50}, "c": {"seed": 1}}, ())
    # the limit goes in the field the request bounds its output with; under a budget's bound only below it
    assert fallback_fields(asked, {"max_completion_tokens": 100}, 100) == (
        {"a": {"temperature": 0.1, "max_completion_tokens": 50}, "c": {"seed": 1}}, ())
    assert fallback_fields(asked, {"max_completion_tokens": 20}, 20) == (
        {"a": {"temperature": 0.1}, "c": {"seed": 1}}, ("fallbacks[0].max_tokens",))
