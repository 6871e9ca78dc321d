"""What OpenAI itself and Azure OpenAI are sent of LiteLLM's `top_k` and `thinking` (pure)."""

from __future__ import annotations

from typing import Any

from shieldes.providers.openai_strict import ABSENT, openai_itself, refit


def _of(body: dict[str, Any]) -> Any:
    return lambda name: body.get(name, ABSENT)


def test_what_openai_itself_is_sent() -> None:
    assert openai_itself("https://api.openai.com/v1") and openai_itself("https://x.openai.azure.com/openai")
    assert not openai_itself("http://localhost:11434") and not openai_itself("https://openrouter.ai/api/v1")
    assert refit("gpt-4o", _of({"temperature": 1})) is None  # nothing to fit: as sent
    fit = refit("gpt-4o", _of({"top_k": 40}))
    assert fit is not None and fit.drop == {"top_k"} and fit.named == ("top_k",) and not fit.changes
    fit = refit("o3", _of({"thinking": {"type": "enabled", "budget_tokens": 4096}, "top_k": 1}))
    assert fit is not None and fit.changes == {"reasoning_effort": "medium"} and fit.named == ("top_k",)
    assert fit.drop == {"top_k", "thinking"}
    fit = refit("gpt-5-mini", _of({"thinking": {"type": "adaptive"}}))  # no budget: the middle effort
    assert fit is not None and fit.changes == {"reasoning_effort": "medium"}
    fit = refit("gpt-4.1", _of({"thinking": {"type": "enabled", "budget_tokens": 4096}}))
    assert fit is not None and fit.named == ("thinking",) and not fit.changes
    fit = refit("gpt-4.1", _of({"thinking": None}))  # asks nothing: left out, unnamed
    assert fit is not None and fit.drop == {"thinking"} and not fit.named
    fit = refit("o3", _of({"thinking": {"type": "enabled", "budget_tokens": 30000}, "reasoning_effort": "low"}))
    assert fit is not None and not fit.changes and not fit.named and fit.drop == {"thinking"}
