"""What OpenAI itself and Azure OpenAI are sent of LiteLLM's `top_k` and `thinking` (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from shieldes.gateway.top_level import Outgoing, read_chat
from shieldes.gateway.upstream_send import fitted
from shieldes.providers.base import Target
from shieldes.providers.openai import OpenAIProvider
from shieldes.providers.openai_strict import ABSENT, openai_itself, refit
from shieldes.providers.transport import UpstreamClient
from shieldes.settings import Settings


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


class _NoScan(bytes):
    """A body whose bytes must not be searched (`in`): a chat read in its typed pass has its
    `top_k` and `thinking` decoded already."""

    def __contains__(self, part: object) -> bool:
        raise AssertionError(f"the body was searched for {part!r}")


def test_a_chat_body_is_fitted_for_openai_itself_from_its_typed_read_not_a_search_of_its_bytes() -> None:
    """Two searches of a coding agent's 73 kB turn for `"top_k"` and `"thinking"` cost 180k
    instructions, more than the rest of its read: the typed pass decodes both fields. It also
    finds a name written with an escape, which a search of the bytes missed (sent on, refused)."""
    provider = OpenAIProvider(UpstreamClient(), Settings(database_url="postgresql://x/y"))
    target = Target("openai", "https://api.openai.com/v1", "o3", "sk-x")
    history = [{"role": "user", "content": "Say top_k and thinking, please " * 2000}]
    plain = {"model": "o3", "messages": history}
    raw = _NoScan(orjson.dumps(plain))
    assert fitted(provider, "chat", target, Outgoing(read_chat(raw), {})) is None
    thinking = {"type": "enabled", "budget_tokens": 4096}
    for body in ({**plain, "top_k": 5, "thinking": thinking}, {"thinking": thinking, **plain, "top_k": 5}):
        fit = fitted(provider, "chat", target, Outgoing(read_chat(_NoScan(orjson.dumps(body))), {}))
        assert fit is not None and fit.drop == {"top_k", "thinking"} and fit.named == ("top_k",)
        assert fit.changes == {"reasoning_effort": "medium"}
    escaped = orjson.dumps(plain)[:-1] + b', "thin\\u006bing": {"type": "enabled", "budget_tokens": 4096}}'
    fit = fitted(provider, "chat", target, Outgoing(read_chat(escaped), {}))
    assert fit is not None and fit.drop == {"thinking"} and fit.changes == {"reasoning_effort": "medium"}
